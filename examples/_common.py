"""What the four example scripts share: options, the paper's data, the fit, the summary.

Not part of the package: the examples import it from their own folder (``python examples/x.py``
puts ``examples/`` first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Quiet TensorFlow's C++ start-up messages; set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import xarray as xr

from bluesky_digitwin import (
    DigitalTwin,
    EnsembleRecipe,
    TrainConfig,
    TwinNotBetterWarning,
    UnresolvedStepWarning,
)
from bluesky_digitwin.cli import ProgressLine
from bluesky_digitwin.resolution import unresolved_steps_message

#: The paper's published data (no licence: read in place, never copied into the repository).
SHARED_DATA = Path(
    os.environ.get(
        "DIGITWIN_SHARED_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mat_interp",
    )
)
#: Trials of the search: the paper's 30, or a tiny search with --fast.
TRIALS, FAST_TRIALS = 30, 3
#: Epochs per trial with --fast (the paper: at most 500).
FAST_EPOCHS = 30
#: Points of each simulated sweep (the suggestion's sweep grid); fewer with --fast.
SWEEP_POINTS, FAST_SWEEP_POINTS = 201, 101


def parse_args(
    name: str, doc: str | None, extra: Callable[[argparse.ArgumentParser], Any] | None = None
) -> argparse.Namespace:
    """The options every example takes, plus those ``extra`` adds; ``args.out`` is created."""
    lines = (doc or name).strip().splitlines()
    parser = argparse.ArgumentParser(
        description=lines[0], epilog="\n".join(lines[1:]).strip() or None
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("example-output") / name,
        help="folder for the figures and summary.txt (default: %(default)s)",
    )
    parser.add_argument(
        "--fast", action="store_true", help="a tiny search (few trials and epochs), for CI"
    )
    parser.add_argument(
        "--data",
        type=Path,
        nargs="?",
        const=SHARED_DATA,
        default=None,
        help="use the paper's measured data instead of the simulated material: the mat_interp "
        "folder or the case's CSV file (without a value: %(const)s)",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help=f"search trials (default {TRIALS}, --fast 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data noise and search")
    parser.add_argument(
        "--workers", type=int, default=None, help="search workers (default one per core; --fast 1)"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors (the figures and summary.txt are written all the same)",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the examples report the search themselves."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def sweep_points(args: argparse.Namespace) -> int:
    return FAST_SWEEP_POINTS if args.fast else SWEEP_POINTS


def read_case(
    path: Path,
    file_name: str,
    names: Sequence[str],
    units: Mapping[str, str],
    long_names: Mapping[str, str],
) -> xr.Dataset:
    """One of the paper's CSV files as a Dataset along ``point`` with names and units.

    ``path`` is the mat_interp folder (``file_name`` is read from it) or a CSV file. The first
    three columns are renamed to ``names`` (SOURCE.md: X1, X2, Y), except the fine-step file,
    whose columns are named t, m, h.
    """
    file = path / file_name if path.is_dir() else path
    if not file.is_file():
        raise SystemExit(f"--data: no file {file}; give the mat_interp folder or the CSV file")
    frame = pd.read_csv(file)
    if {"t", "m", "h"} <= set(frame.columns):
        frame = frame.rename(columns={"t": "T", "h": "H", "m": "M"})[["T", "H", "M"]]
    else:
        frame = frame.iloc[:, :3].set_axis(list(names), axis=1)
    ds = xr.Dataset(
        {
            n: ("point", frame[n].to_numpy(float), {"units": units[n], "long_name": long_names[n]})
            for n in names
        },
        attrs={"source": str(file), "data_origin": "measured"},
    )
    for n in names:
        if not units[n]:
            del ds[n].attrs["units"]  # unknown units stay unknown
    return ds


def fit_twin(
    data: xr.Dataset,
    features: Sequence[str],
    target: str,
    args: argparse.Namespace,
    say: Summary,
    monotonic: dict[str, str] | None = None,
) -> DigitalTwin:
    """The twin, from the paper's search or, with ``--fast``, a tiny one on one worker; the
    search's progress on stderr, as ``digitwin fit`` shows it."""
    quiet_optuna()
    trials = args.trials or (FAST_TRIALS if args.fast else TRIALS)
    start = time.perf_counter()
    # TensorFlow first, while this is the only thread: its C++ start-up lines are then kept
    # off the terminal (bluesky_digitwin.tensorflow_runtime), which the search's progress
    # thread would prevent.
    import bluesky_digitwin.tensorflow_runtime  # noqa: F401

    progress = ProgressLine("search", quiet=args.quiet)
    with warnings.catch_warnings():
        # Said in the summary below, with the numbers, rather than as bare warnings.
        warnings.simplefilter("ignore", TwinNotBetterWarning)
        warnings.simplefilter("ignore", UnresolvedStepWarning)
        twin = DigitalTwin.fit(
            data,
            features,
            target,
            n_trials=trials,
            n_workers=1 if args.fast and args.workers is None else args.workers,
            ensemble=EnsembleRecipe(size=3, refit_epochs=10)
            if args.fast
            else EnsembleRecipe(size=5),
            seed=args.seed,
            train_config=TrainConfig(max_epochs=FAST_EPOCHS) if args.fast else TrainConfig(),
            provenance={"source": data.attrs.get("source"), "example": Path(args.out).name},
            progress=progress,
            monotonic=monotonic,
        )
    progress.done()
    search = twin.metadata["search"]
    unit = twin.units.get(target, "")
    say(
        f"twin {twin.id[:8]}: {twin.ensemble_size} networks from {search['n_complete']} "
        f"complete of {search['n_trials']} trials, validation RMSE {twin.validation_rmse:.3g}"
        f"{' ' + unit if unit else ''} (R^2 {twin.metadata['members'][0]['validation_r2']:.4f}), "
        f"fitted in {time.perf_counter() - start:.0f} s"
        + (" [--fast: a tiny search; expect a rough twin]" if args.fast else "")
    )
    if twin.holdout is not None:
        say(twin.holdout.summary(unit))
    steps = twin.unresolved_steps
    if steps:
        say(unresolved_steps_message(steps, target, twin.units))
    return twin


def describe_scan(ds: xr.Dataset, fast: str, slow: str, target: str) -> str:
    """ "808 points: T 10-60 K at 8 values of H (100-50000 Oe)"."""
    lines = np.unique(ds[slow].values)

    def unit(name: str) -> str:
        return f" {ds[name].attrs['units']}" if ds[name].attrs.get("units") else ""

    return (
        f"{ds.sizes['point']} points of {target}: {fast} {float(ds[fast].min()):.4g}-"
        f"{float(ds[fast].max()):.4g}{unit(fast)} at {lines.size} values of {slow} "
        f"({lines.min():g}-{lines.max():g}{unit(slow)})"
    )


def lines_figure(
    coarse: xr.Dataset,
    twin: DigitalTwin,
    baseline: Any,
    *,
    fast: str,
    slow: str,
    sweep: np.ndarray,
    mask: Any = None,
) -> Any:
    """Two panels: the coarse lines with the twin's at the same values of ``slow``; then the
    twin and the baseline half-way between them, where the twin has to interpolate.

    ``mask(prediction)`` may blank simulated points where the coarse data does not reach.
    """
    from matplotlib.figure import Figure

    from bluesky_digitwin import make_grid
    from bluesky_digitwin.plot import plot_lines

    target = twin.target
    lines = np.unique(coarse[slow].values)
    between = 0.5 * (lines[1:] + lines[:-1])
    mask = mask or (lambda ds: ds)
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    on_lines = mask(twin.predict(make_grid(**{fast: sweep, slow: lines})))
    plot_lines(coarse, on_lines, fast=fast, slow=slow, target=target, ax=left)
    left.set_title(f"at the coarse {slow} values: does the twin reproduce the data?")
    mid_twin = mask(twin.predict(make_grid(**{fast: sweep, slow: between})))
    mid_base = mask(baseline.predict(make_grid(**{fast: sweep, slow: between})))
    plot_lines(simulated=mid_twin, baseline=mid_base, fast=fast, slow=slow, target=target, ax=right)
    right.set_title(f"half-way between them: twin against {baseline.method} interpolation")
    right.set_ylabel("")  # shared with the left panel
    return fig


def field_step_study(
    twin: DigitalTwin,
    coarse: xr.Dataset,
    linear: Any,
    args: argparse.Namespace,
    say: Callable[..., None],
    *,
    mass: float,
    mass_units: str,
) -> tuple[Any, np.ndarray, np.ndarray, xr.DataArray, xr.DataArray]:
    """Cases (a) and (b): the field step for |ΔS_M|, and linear interpolation to compare.

    Simulates the measurement at each candidate field step with the twin (|ΔS_M| at the top
    field from each), timed as sweeps of as many temperatures as the coarse scan took per
    field, and interpolates the coarse data linearly at the reference step.

    Returns
    -------
    suggestion, temperatures, fields at the reference step, the twin's |ΔS_M| at the top
    field at that step, linear interpolation's.
    """
    from bluesky_digitwin.analysis import TimeModel, entropy_change, suggest_step
    from bluesky_digitwin.data import make_grid

    t_lo, t_hi = twin.ranges["T"]
    temperatures = np.linspace(t_lo, t_hi, sweep_points(args))
    per_line = round(coarse.sizes["point"] / np.unique(coarse["H"].values).size)
    time_model = TimeModel(points_per_line=per_line)
    say(
        f"time estimate: {per_line} settled points per field at {time_model.seconds_per_point:g}"
        f" s each, {time_model.seconds_per_step_change / 60:g} min between fields (an MPMS run)"
    )
    say.status("simulating the measurement at each candidate field step ...")
    suggestion = suggest_step(
        twin,
        "H",
        quantity="magnetocaloric",
        over=temperatures,
        time_model=time_model,
        mass=mass,
        mass_units=mass_units,
    )
    say()
    say(str(suggestion))
    say()

    # The finest simulation (the reference step) against linear interpolation at the same step.
    h_lo, h_hi = twin.ranges["H"]
    # H is in Oe (1e4 Oe per tesla of μ0H), the steps in T.
    n_fine = round((h_hi - h_lo) / (suggestion.reference_step * 1e4)) + 1
    fine_fields = np.linspace(h_lo, h_hi, n_fine)
    interpolated = linear.predict(make_grid(H=fine_fields, T=temperatures))["M"]
    linear_dsm = entropy_change(interpolated, mass=mass, mass_units=mass_units, absolute=True).isel(
        H=-1
    )
    return suggestion, temperatures, fine_fields, suggestion.curves.isel(step=0), linear_dsm


def rmse(a: Any, b: Any) -> float:
    """RMS difference over the points where both are finite."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = diff[np.isfinite(diff)]
    return float(np.sqrt(np.mean(diff**2))) if diff.size else float("nan")


class Summary:
    """Lines printed as they come (unless ``quiet``) and written to ``summary.txt`` at the end."""

    def __init__(self, out: Path, title: str, *, fast: bool = False, quiet: bool = False):
        self.out = Path(out)
        self.fast = fast
        self.quiet = quiet
        self.lines: list[str] = []
        self.figures: list[str] = []
        self.start = time.perf_counter()
        self(title)

    def __call__(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)
        self.lines.append(text)

    def status(self, text: str) -> None:
        """What the script is waiting for: on stderr, not part of the summary."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def save(self, fig: Any, name: str) -> Path:
        """Write ``fig`` as ``<out>/<name>.png``."""
        path = self.out / f"{name}.png"
        if self.fast:
            # A --fast twin is rough; its figures must not pass for the method's result.
            fig.text(
                0.995,
                0.005,
                "--fast: tiny search, rough twin",
                ha="right",
                va="bottom",
                fontsize="x-small",
                color="tab:red",
            )
        fig.savefig(path, dpi=110)
        self.figures.append(path.name)
        return path

    def write(self) -> Path:
        self(f"figures: {', '.join(self.figures)} in {self.out}")
        self(f"done in {time.perf_counter() - self.start:.0f} s")
        path = self.out / "summary.txt"
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        return path
