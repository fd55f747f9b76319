"""Analysis of measured and simulated scans: derived quantities, step suggestion, baselines."""

from .baselines import (
    LinearInterpolator,
    RBFBaseline,
    SplineInterpolator,
    rbf_kfold_rmse,
)
from .magnetocaloric import (
    EntropyPeak,
    entropy_change,
    entropy_change_isothermal,
    peak_entropy_change,
)

__all__ = [
    "EntropyPeak",
    "LinearInterpolator",
    "RBFBaseline",
    "SplineInterpolator",
    "entropy_change",
    "entropy_change_isothermal",
    "peak_entropy_change",
    "rbf_kfold_rmse",
]
from .steps import (
    StepSuggestion,
    TimeModel,
    format_duration,
    suggest_step,
)

__all__ += ["StepSuggestion", "TimeModel", "format_duration", "suggest_step"]
