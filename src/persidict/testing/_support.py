"""Helpers shared by the conformance class and the state machine."""

from __future__ import annotations

import os
import time
from typing import Any

from hypothesis import HealthCheck, settings

from ..backends.write_once import WriteOnceDict
from ..engine.flags import ITEM_NOT_AVAILABLE, VALUE_NOT_RETRIEVED
from ..engine.persidict import PersiDict

Key = tuple[str, ...]
"""A key as the oracles hold it: a plain tuple of strings."""

SENTINELS = (ITEM_NOT_AVAILABLE, VALUE_NOT_RETRIEVED)

PROFILE_ENV = "PERSIDICT_HYPOTHESIS_PROFILE"
"""Environment variable naming the hypothesis profile: ``ci`` (default) or ``deep``."""

# "deep" multiplies the examples (and doubles the steps) for a longer local run.
_SCALE = {"ci": (1, 1), "deep": (10, 2)}


def hypothesis_settings(*, max_examples: int, stateful_step_count: int = 30) -> settings:
    """Settings for a property test, scaled by ``$PERSIDICT_HYPOTHESIS_PROFILE``.

    No deadline (stores do I/O) and no example database (nothing is written
    into the caller's tree). Without a database, one test method inherited by
    several conformance classes ("differing executors") replays nothing
    across them, so that health check does not apply.
    """
    name = os.environ.get(PROFILE_ENV, "ci")
    if name not in _SCALE:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {sorted(_SCALE)}")
    examples, steps = _SCALE[name]
    return settings(
        max_examples=max_examples * examples,
        stateful_step_count=stateful_step_count * steps,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )


def policy_of(store: PersiDict[Any]) -> str:
    """``"write_once"``, ``"append_only"`` or ``"mutable"``: what a write may change."""
    if isinstance(store, WriteOnceDict):
        return "write_once"
    return "append_only" if store.append_only else "mutable"


def same(actual: Any, expected: Any) -> bool:
    """Identity for sentinels, equality for everything else."""
    if any(expected is s for s in SENTINELS):
        return actual is expected
    if any(actual is s for s in SENTINELS):
        return False
    return bool(actual == expected)


def keyset(d: PersiDict[Any]) -> set[Key]:
    """The keys of ``d`` as plain tuples."""
    return {tuple(k) for k in d}


def snapshot(d: PersiDict[Any]) -> dict[Key, Any]:
    """Contents of ``d`` as a plain dict, read through the store."""
    return {tuple(k): v for k, v in d.items()}


def write_after(store: PersiDict[Any], key: Any, value: Any, previous_ts: float | None) -> float:
    """Write ``key`` so that its timestamp is strictly later than ``previous_ts``.

    Store clocks differ in resolution (ns for local files, 1 s for S3):
    rewrite until the store's clock has moved on, within a generous bound.
    """
    deadline = time.monotonic() + 10
    while True:
        store[key] = value
        ts = store.timestamp(key)
        if previous_ts is None or ts > previous_ts:
            return ts
        assert time.monotonic() < deadline, f"timestamp of {key} never advanced past {ts}"
        time.sleep(0.05)
