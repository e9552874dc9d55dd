"""``evict(store, ...)``: keep a cache bounded, oldest entries first.

Safe while other processes read and write: an entry is deleted only with
``discard_if(ETAG_IS_THE_SAME)`` against the etag read after the listing,
and only if its timestamp, read after that etag, shows no write since the
listing: not newer than the listed one, and not within a second of the
listing's start (S3 reports an object's time to the second). A write after
the etag read changes the etag (the delete is refused); a write between the
listing and the etag read shows in the timestamp (the entry is skipped). So
eviction never undoes a concurrent write. (On S3 this compares the server's
clock with ours: they must agree within a second.)

Memoize leases are no cache entries: never counted, and removed only when
dead, unrenewed for longer than the lease timeout they record (a computer
killed after its store write leaves one that no waiter takes over).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .engine.errors import MutationPolicyError
from .engine.flags import ANY_ETAG, ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, NEVER_RETRIEVE
from .engine.keys import NonEmptySafeStrTuple
from .engine.persidict import PersiDict
from .engine.races import check_non_negative
from .memoize_claims import LEASE_PREFIX, lease_timeout_of


@dataclass
class EvictReport:
    """What one eviction did: keys ``removed``, and ``kept`` (rewritten or removed meanwhile)."""

    removed: list[NonEmptySafeStrTuple] = field(default_factory=list)
    kept: list[NonEmptySafeStrTuple] = field(default_factory=list)
    examined: int = 0

    def __str__(self) -> str:
        return (
            f"examined {self.examined}, removed {len(self.removed)}, "
            f"kept {len(self.kept)} (rewritten or removed meanwhile)"
        )


def evict(
    store: PersiDict[Any],
    *,
    older_than: float | None = None,
    max_items: int | None = None,
    now: float | None = None,
) -> EvictReport:
    """Remove a store's entries older than ``older_than`` and beyond ``max_items``, oldest first.

    Memoize leases (keys under ``"persidict_memo_lease"``) are not
    counted; a dead one (unrenewed for longer than its lease timeout, plus
    a second) is removed, a live one never. Entries written within
    a second of the call are kept (a write then cannot be told from one
    racing with the eviction). See the module doc for why a concurrent
    write is never undone.

    Parameters
    ----------
    store : PersiDict
        Any store (FileDirDict, LocalDict, BasicS3Dict, S3Dict, wrappers)
        that allows deletes.
    older_than : float, optional
        Remove entries whose last write is more than this many seconds
        before ``now``. None: no age limit.
    max_items : int, optional
        Then remove the oldest of the rest until at most this many remain
        (as listed; entries written meanwhile are not counted). None: no limit.
    now : float, optional
        POSIX time ages are measured from (default: ``time.time()``).

    Returns
    -------
    EvictReport
        The keys removed, and those skipped because they were rewritten
        after the listing.

    Raises
    ------
    TypeError, ValueError
        If a limit is not a non-negative number (``max_items``: an int).
    MutationPolicyError
        If the store is append-only.
    """
    check_non_negative("older_than", older_than)  # NaN refused too: it would evict nothing
    check_non_negative("max_items", max_items, integer=True)
    check_non_negative("now", now)
    if store.append_only:  # refused whatever the ages, not only when something is old
        raise MutationPolicyError("append-only")
    listed_at = time.time()
    listed: list[tuple[float, NonEmptySafeStrTuple]] = []
    leases: list[tuple[float, NonEmptySafeStrTuple]] = []
    for key, ts in store.keys_and_timestamps():
        (leases if key.strings[0] == LEASE_PREFIX else listed).append((ts, key))
    listed.sort(key=lambda pair: pair[0])
    report = EvictReport(examined=len(listed))
    report.removed.extend(key for _, key in leases if _discard_dead_lease(store, key, listed_at))
    cutoff = (listed_at if now is None else now) - (older_than or 0.0)
    excess = 0 if max_items is None else max(0, len(listed) - max_items)
    for n, (ts, key) in enumerate(listed):
        if not (n < excess or (older_than is not None and ts < cutoff)):
            break  # sorted by age: the rest are younger and within the count
        if _discard_unchanged(store, key, ts, listed_at):
            report.removed.append(key)
        else:
            report.kept.append(key)
    return report


def _discard_unchanged(
    store: PersiDict[Any], key: NonEmptySafeStrTuple, listed_ts: float, listed_at: float
) -> bool:
    """Delete ``key`` if it was not written since it was listed (with ``listed_ts``)."""
    seen = store.get_item_if(
        key, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE, retrieve_value=NEVER_RETRIEVE
    ).actual_etag
    if seen is ITEM_NOT_AVAILABLE:
        return False  # deleted meanwhile
    try:
        ts = store.timestamp(key)
        if ts > listed_ts or ts >= listed_at - 1.0:
            return False  # rewritten between the listing and the etag read
    except KeyError:
        return False
    result = store.discard_if(key, condition=ETAG_IS_THE_SAME, expected_etag=seen)
    return result.condition_was_satisfied and result.actual_etag is not ITEM_NOT_AVAILABLE


def _discard_dead_lease(store: PersiDict[Any], key: NonEmptySafeStrTuple, listed_at: float) -> bool:
    """Delete the lease ``key`` if it went unrenewed past the timeout it records.

    The timestamp is read after the etag: if it is old, so is the version
    with that etag; a renewal after the etag read makes the delete refused.
    """
    seen = store.get_with_etag(key)
    timeout = lease_timeout_of(seen.new_value)
    if timeout is None:
        return False  # gone meanwhile, or not a lease this version wrote
    try:
        if listed_at - store.timestamp(key) <= timeout + 1.0:
            return False  # renewed recently: its holder may be alive
    except KeyError:
        return False
    result = store.discard_if(key, condition=ETAG_IS_THE_SAME, expected_etag=seen.actual_etag)
    return result.condition_was_satisfied and result.actual_etag is not ITEM_NOT_AVAILABLE
