"""What :meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>` takes besides the data:
its settings objects, the keywords of earlier versions and where they went, and the shape a
user can state (``monotonic=``). The TwinCallback checks its ``fit_options`` with the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe
from bluesky_digitwin.surrogate.search_settings import RemoteWorkers, SearchStrategy
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig

__all__ = [
    "MONOTONIC_DIRECTIONS",
    "MOVED_KEYWORDS",
    "SETTINGS",
    "check_moved",
    "check_settings",
    "monotonic_pairs",
]


#: The settings objects :meth:`DigitalTwin.fit` takes, by keyword: what is searched, how a
#: network trains, how the search chooses, how the ensemble is built, what workers elsewhere
#: need.
SETTINGS: dict[str, type] = {
    "space": SearchSpace,
    "train_config": TrainConfig,
    "strategy": SearchStrategy,
    "ensemble": EnsembleRecipe,
    "remote": RemoteWorkers,
}


#: Keywords ``fit`` took before its settings were grouped, and where each went.
MOVED_KEYWORDS = {
    "ensemble_size": "ensemble=EnsembleRecipe(size=...)",
    "ensemble_tolerance": "ensemble=EnsembleRecipe(tolerance=...)",
    "refit_epochs": "ensemble=EnsembleRecipe(refit_epochs=...)",
    "sampler": "strategy=SearchStrategy(sampler=...)",
    "pruner": "strategy=SearchStrategy(pruner=...)",
    "warm_start": "strategy=SearchStrategy(warm_start=...)",
    "validation_fraction": "strategy=SearchStrategy(validation_fraction=...)",
    "holdout": "strategy=SearchStrategy(holdout=...)",
    "data_source": "remote=RemoteWorkers(data_source=...)",
    "heartbeat_interval": "remote=RemoteWorkers(heartbeat_interval=...)",
    "artifact_store": "remote=RemoteWorkers(artifact_store=...)",
}


def check_moved(keywords: Mapping[str, Any]) -> None:
    """Raise :class:`DigitwinInputError` for keywords ``fit`` does not take, saying where the
    moved ones went (:data:`MOVED_KEYWORDS`)."""
    if not keywords:
        return
    moved = [f"{k} -> {MOVED_KEYWORDS[k]}" for k in sorted(keywords) if k in MOVED_KEYWORDS]
    unknown = sorted(k for k in keywords if k not in MOVED_KEYWORDS)
    parts = []
    if moved:
        # The settings classes named, in the order given: "ensemble=EnsembleRecipe(size=...)".
        classes = dict.fromkeys(
            MOVED_KEYWORDS[k].split("=", 1)[1].split("(")[0]
            for k in keywords
            if k in MOVED_KEYWORDS
        )
        parts.append(
            "these keywords moved into settings objects: "
            + "; ".join(moved)
            + f" (from bluesky_digitwin import {', '.join(classes)})"
        )
    if unknown:
        parts.append(f"DigitalTwin.fit takes no keyword {', '.join(map(repr, unknown))}")
    raise DigitwinInputError(" and ".join(parts))


def check_settings(**settings: Any) -> None:
    """Raise :class:`DigitwinInputError` unless each given setting is its settings object.

    A plain dict (``ensemble={"size": 5}``) gets a message naming the object to use instead;
    keywords of earlier versions are :func:`check_moved`'s.
    """
    for name, value in settings.items():
        kind = SETTINGS[name]
        if value is not None and not isinstance(value, kind):
            article = "an" if kind.__name__[0] in "AEIOU" else "a"
            raise DigitwinInputError(
                f"{name} must be {article} {kind.__name__}, got {type(value).__name__}; e.g. "
                f"{name}={kind.__name__}(...) (from bluesky_digitwin import {kind.__name__})"
            )


#: How a user states the direction of a monotonic feature, and its sign.
MONOTONIC_DIRECTIONS = {"increasing": 1, "decreasing": -1}


def monotonic_pairs(
    monotonic: Mapping[str, str], features: Sequence[str]
) -> tuple[tuple[int, int], ...]:
    """``{"H": "increasing"}`` as ``TrainConfig.monotonic``'s (feature index, sign) pairs.

    Raises
    ------
    DigitwinInputError
        A feature that is not one of ``features``, or a direction that is neither
        ``"increasing"`` nor ``"decreasing"``.
    """
    if not isinstance(monotonic, Mapping):
        raise DigitwinInputError(
            f"monotonic must map feature names to 'increasing' or 'decreasing', e.g. "
            f"{{'H': 'increasing'}}; got {type(monotonic).__name__}"
        )
    pairs = []
    for name, direction in monotonic.items():
        if name not in features:
            raise DigitwinInputError(
                f"monotonic names {name!r}, which is not a feature of this twin; the features "
                f"are {', '.join(map(str, features))}"
            )
        sign = MONOTONIC_DIRECTIONS.get(str(direction).strip().lower())
        if sign is None:
            raise DigitwinInputError(
                f"monotonic direction of {name!r} must be 'increasing' or 'decreasing', "
                f"got {direction!r}"
            )
        pairs.append((list(features).index(name), sign))
    return tuple(pairs)
