"""Lost races and the retrieve_value rule, shared by the etag-guarded operations."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from .flags import (
    ALWAYS_RETRIEVE,
    ITEM_NOT_AVAILABLE,
    NEVER_RETRIEVE,
    ETagValue,
    ItemNotAvailableFlag,
    RetrieveValueFlag,
)

# Re-reads after lost commits are progress made by others, so they are not
# "retries" in the transform_item sense; this only bounds pathological cases.
MAX_RACES = 10_000


def backoff(attempt: int) -> None:
    """Sleep a jittered, exponentially growing time after a lost race."""
    if attempt > 1:
        time.sleep(random.uniform(0, min(0.05, 0.0002 * 2**attempt)))


def races() -> Iterator[int]:
    """Count the attempts of a snapshot-and-commit loop, backing off after each lost one."""
    for attempt in range(MAX_RACES):
        backoff(attempt)
        yield attempt


def absent(etag: object) -> bool:
    """Whether a snapshot's etag says the key is absent."""
    return isinstance(etag, ItemNotAvailableFlag)


def wants_value(
    retrieve_value: RetrieveValueFlag,
    expected: ETagValue | ItemNotAvailableFlag,
    actual: ETagValue | ItemNotAvailableFlag,
) -> bool:
    """The retrieve_value rule: whether a present value is reported."""
    if retrieve_value is ALWAYS_RETRIEVE:
        return True
    if retrieve_value is NEVER_RETRIEVE:
        return False
    return expected != actual


def kept(etag: ETagValue | ItemNotAvailableFlag, value: Any) -> Any:
    """What a key holds after a write: ``value``, or nothing if the store discards writes."""
    return ITEM_NOT_AVAILABLE if absent(etag) else value


def check_non_negative(label: str, value: object, *, integer: bool = False) -> None:
    """TypeError unless ``value`` is None or a number (an int if ``integer``); ValueError if < 0."""
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{label} must be {kind} or None, got {value!r}")
    if not value >= 0:  # NaN too: it compares false
        raise ValueError(f"{label} must be >= 0 or None, got {value!r}")


def check_n_retries(n_retries: object) -> None:
    """TypeError unless ``n_retries`` is an int or None; ValueError if negative."""
    if type(n_retries) is not int or n_retries < 0:  # the common case costs one test
        check_non_negative("n_retries", n_retries, integer=True)
