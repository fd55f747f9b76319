"""bluesky-digitwin: a live neural-network digital twin for bluesky scanning measurements.

The core works without a RunEngine::

    from bluesky_digitwin import DigitalTwin, make_grid

    twin = DigitalTwin.fit("scans.csv", features=["T", "H"], target="M", n_trials=30)
    simulated = twin.predict(make_grid(T=np.linspace(10, 60, 501), H=[1e4, 2e4]))

TensorFlow is imported only when a twin is trained or loaded.
"""

from bluesky_digitwin.data import (
    DataWarning,
    DigitwinInputError,
    load_table,
    make_grid,
    prepare_training_data,
)
from bluesky_digitwin.errors import DigitwinError, DigitwinWarning
from bluesky_digitwin.holdout import HoldoutComparison, TwinNotBetterWarning
from bluesky_digitwin.resolution import UnresolvedStep, UnresolvedStepWarning
from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe
from bluesky_digitwin.surrogate.search_settings import RemoteWorkers, SearchStrategy
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.twin import DigitalTwin, EnsembleWarning, OutsideRangeWarning, TwinFileError

__all__ = [
    "DataWarning",
    "DigitalTwin",
    "DigitwinError",
    "DigitwinInputError",
    "DigitwinWarning",
    "EnsembleRecipe",
    "EnsembleWarning",
    "HoldoutComparison",
    "OutsideRangeWarning",
    "RemoteWorkers",
    "SearchSpace",
    "SearchStrategy",
    "TrainConfig",
    "TwinFileError",
    "TwinNotBetterWarning",
    "UnresolvedStep",
    "UnresolvedStepWarning",
    "load_table",
    "make_grid",
    "prepare_training_data",
]
