"""Who computes a memoized result: one claim per result key, three mechanisms.

A *claim* makes one caller (thread, process, machine) the computer of a key
while the others wait. ``claim(key, ready)`` yields a Turn: ``mine`` when
this caller must compute (then it holds the claim until the block ends),
not mine when ``ready()`` (a fresh result exists) became true while waiting.

- FileClaims (FileDirDict): an exclusive lock per result key in the file
  ``@persidict/memo-lock`` of the store's lock root, taken with the store's
  own lock machinery (``concurrency/locks.py``). The OS drops it when its
  holder dies, so a waiter takes over at once after a SIGKILL. Memo locks
  live in a file of their own: a computer holds its memo lock while it
  writes the result (which takes the key's write lock in ``lock``), always
  in that order, so writes never deadlock with computations.
- LocalClaims (LocalDict): a threading.Lock per (RAM store, key), in this
  process (a LocalDict's data lives in one process).
- LeaseClaims (any other store: BasicS3Dict, S3Dict, wrappers): a lease
  entry inserted only if absent (``set_item_if`` with ITEM_NOT_AVAILABLE,
  ``If-None-Match: *`` on S3), rewritten by a heartbeat thread every
  ``lease_timeout / 4`` seconds while computing, deleted (etag match) when
  done. A waiter that sees one lease etag unchanged for ``lease_timeout``
  seconds of its own clock (no clock skew between machines matters) takes
  it over with a write conditional on that etag: of several waiters, one
  wins. A computer stalled longer than ``lease_timeout`` loses its lease,
  and its key may then be computed twice. A lease's value carries its
  ``lease_timeout`` (``<token>~<seconds>``), so ``evict`` can tell a lease
  left by a computer killed after its store write (which no waiter ever
  takes over, the result being there) from a live one.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from .backends.files import FileDirDict
from .backends.memory import LocalDict
from .concurrency.locks import BACKEND, META_DIR, KeyLocks
from .concurrency.marker import find_markers
from .engine.errors import BackendError, LockTimeoutError, OutcomeUnknownError
from .engine.flags import ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, ETagValue, ItemNotAvailableFlag
from .engine.keys import NonEmptySafeStrTuple
from .engine.persidict import PersiDict

LEASE_PREFIX = "persidict_memo_lease"
"""First key component of every lease entry (results have two components, leases three)."""

_TIMEOUT_MARK = "~"  # between a lease's token and its lease_timeout
_TRANSIENT = (BackendError, OSError, TimeoutError)  # a store's errors that a retry may cure
_PATIENCE = 0.5  # seconds between checks of ready() while a lock is busy


@dataclass
class Turn:
    """What a claim gave: ``mine`` (compute now), whether we ``waited``, ``took_over``."""

    mine: bool
    waited: bool = False
    took_over: bool = False


class Claims(Protocol):
    """The mechanism deciding who computes each key of one store."""

    def claim(
        self, key: NonEmptySafeStrTuple, ready: Callable[[], bool]
    ) -> AbstractContextManager[Turn]:
        """Hold the claim of ``key`` for the block, or stop waiting once ``ready()``."""
        ...  # pragma: no cover


def lease_timeout_of(value: object) -> float | None:
    """The ``lease_timeout`` a lease's value records; None if ``value`` is no such lease."""
    if not isinstance(value, str):
        return None
    _, mark, tail = value.split(" ")[0].rpartition(_TIMEOUT_MARK)
    try:
        seconds = float(tail)
    except ValueError:
        return None
    return seconds if mark and math.isfinite(seconds) and seconds > 0 else None


def claims_for(store: PersiDict[Any], lease_timeout: float) -> Claims:
    """The claims of ``store``: file locks, thread locks, or leases (see module doc)."""
    if isinstance(store, FileDirDict):
        real = os.path.realpath(store.base_dir)
        root = find_markers(real)[0]
        if root is not None:
            return FileClaims(real, root, store.get_params(), lease_timeout)
    if isinstance(store, LocalDict):
        return LocalClaims(store.get_params())
    return LeaseClaims(store, lease_timeout)


def _busy_loop(
    try_take: Callable[[bool], bool], ready: Callable[[], bool], give_up: float | None = None
) -> Iterator[Turn]:
    """Take at once or wait; between waits, stop if ``ready()`` (shared by two claims).

    ``give_up``: seconds after which a waiter computes without the claim
    (FileClaims on flock stripes, see there); None: wait for as long as it takes.
    """
    if try_take(False):
        yield Turn(mine=True)
        return
    start = time.monotonic()
    while True:
        if ready():
            yield Turn(mine=False, waited=True)
            return
        if try_take(True):
            yield Turn(mine=True, waited=True, took_over=True)
            return
        if give_up is not None and time.monotonic() - start > give_up:
            yield Turn(mine=True, waited=True)
            return


_nesting = threading.local()  # how many memo locks this thread holds


class FileClaims:
    """Per-key OS locks in ``<root>/@persidict/memo-lock`` (FileDirDict).

    On the flock backend keys share 64 stripes, so a memoized function
    calling another can deadlock where the program has no cycle: thread A
    holds stripe X and waits for Y, while B holds Y and waits for X. A
    waiter that holds a memo lock itself therefore gives up after
    ``lease_timeout`` and computes without the claim: a rare duplicate
    instead of a hang. OFD locks (one per key) need no such bound.
    """

    def __init__(
        self, real_base: str, root: str, params: dict[str, Any], lease_timeout: float
    ) -> None:
        path = f"{root}/{META_DIR}/memo-lock"
        self._give_up = lease_timeout if BACKEND == "flock" else None
        self._at_once = KeyLocks(path, timeout=0.0)
        self._patient = KeyLocks(path, timeout=_PATIENCE)
        where = real_base[len(root) :]
        self._scope = f"{where}\0{params['serialization_format']}\0{params['digest_len']}"

    @contextmanager
    def claim(self, key: NonEmptySafeStrTuple, ready: Callable[[], bool]) -> Iterator[Turn]:
        # docstring in the module doc
        name = f"{self._scope}\0{'/'.join(key.strings)}"
        depth = getattr(_nesting, "depth", 0)
        with ExitStack() as stack:

            def try_take(patient: bool) -> bool:
                try:
                    stack.enter_context((self._patient if patient else self._at_once).hold(name))
                except LockTimeoutError:
                    return False
                return True

            _nesting.depth = depth + 1
            try:
                yield from _busy_loop(try_take, ready, self._give_up if depth else None)
            finally:
                _nesting.depth = depth


class _Named:
    """A threading.Lock that a weak registry can hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


_local_locks: weakref.WeakValueDictionary[tuple[Any, ...], _Named] = (
    weakref.WeakValueDictionary()
)
_local_guard = threading.Lock()

if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    # A forked child has its own copy of every LocalDict, and a lock held by
    # another thread of the parent would stay held in it forever: start afresh.
    os.register_at_fork(after_in_child=_local_locks.clear)


class LocalClaims:
    """Per-key threading locks, shared by every LocalDict on one RAM store."""

    def __init__(self, params: dict[str, Any]) -> None:
        backend = params["backend"]
        self._store = backend.store
        self._scope = (params["serialization_format"], *backend.prefix)

    @contextmanager
    def claim(self, key: NonEmptySafeStrTuple, ready: Callable[[], bool]) -> Iterator[Turn]:
        # docstring in the module doc
        name = (id(self._store), *self._scope, "\0", *key.strings)
        with _local_guard:
            named = _local_locks.get(name)
            if named is None:
                named = _local_locks[name] = _Named()
        held = False

        def try_take(patient: bool) -> bool:
            nonlocal held
            held = named.lock.acquire(timeout=_PATIENCE) if patient else named.lock.acquire(False)
            return held

        try:
            yield from _busy_loop(try_take, ready)
        finally:
            if held:
                named.lock.release()


_claim_ids = itertools.count()


class LeaseClaims:
    """Lease entries at (LEASE_PREFIX, *key) in the store itself (see module doc)."""

    def __init__(self, store: PersiDict[Any], lease_timeout: float) -> None:
        self._store = store
        self.lease_timeout = lease_timeout
        self._poll = min(max(lease_timeout / 40, 0.01), 0.25)

    def _insert(self, lease: NonEmptySafeStrTuple, mine: str, expected: Any) -> Any:
        """Write ``mine`` if the lease's etag is ``expected``: its etag, or None if refused."""
        try:
            result = self._store.set_item_if(
                lease, value=mine, condition=ETAG_IS_THE_SAME, expected_etag=expected
            )
        except OutcomeUnknownError:
            # The reply was lost: the lease is ours exactly if it holds our unique token.
            now = self._store.get_with_etag(lease)
            return now.actual_etag if now.new_value == mine else None
        return result.resulting_etag if result.condition_was_satisfied else None

    @contextmanager
    def claim(self, key: NonEmptySafeStrTuple, ready: Callable[[], bool]) -> Iterator[Turn]:
        # docstring in the module doc
        lease = NonEmptySafeStrTuple((LEASE_PREFIX, *key.strings))
        token = f"{uuid.uuid4().hex}.{os.getpid()}.{next(_claim_ids)}"
        mine = f"{token}{_TIMEOUT_MARK}{self.lease_timeout!r}"
        waited = took_over = False
        seen: ETagValue | ItemNotAvailableFlag | None = None
        seen_at = 0.0
        while True:
            current = self._store.get_with_etag(lease).actual_etag
            etag = None
            if current is ITEM_NOT_AVAILABLE:
                etag = self._insert(lease, mine, ITEM_NOT_AVAILABLE)
                took_over = waited
            elif current != seen:
                seen, seen_at, waited = current, time.monotonic(), True
            elif time.monotonic() - seen_at > self.lease_timeout:
                etag = self._insert(lease, mine, current)  # the holder stopped renewing it
                took_over = True
            if etag is not None:
                break
            time.sleep(self._poll)
            if ready():
                yield Turn(mine=False, waited=True)
                return
        beat = _Heartbeat(self._store, lease, mine, etag, self.lease_timeout / 4)
        try:
            yield Turn(mine=True, waited=waited, took_over=took_over)
        finally:
            last = beat.stop()
            if last is not None:
                # A lease left behind only delays the next caller by lease_timeout: never
                # let its removal turn the computation's outcome into another error.
                with suppress(BackendError, OSError):
                    self._store.discard_if(lease, condition=ETAG_IS_THE_SAME, expected_etag=last)


class _Heartbeat:
    """Rewrites a held lease every ``period`` seconds (etag match) until stopped."""

    def __init__(
        self, store: PersiDict[Any], lease: NonEmptySafeStrTuple, mine: str, etag: Any,
        period: float,
    ) -> None:
        self._store, self._lease, self._mine = store, lease, mine
        self.etag: Any = etag  # None once the lease is lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="persidict-lease", daemon=True)
        self._period = period
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self._period) and self.etag is not None:
            n += 1
            value = f"{self._mine} {n}"
            try:
                result = self._store.set_item_if(
                    self._lease, value=value, condition=ETAG_IS_THE_SAME, expected_etag=self.etag
                )
            except _TRANSIENT:  # the beat may have landed or not: the lease tells
                try:
                    now = self._store.get_with_etag(self._lease)
                except _TRANSIENT:
                    continue  # try again next beat
                if isinstance(now.new_value, str) and now.new_value.split(" ")[0] == self._mine:
                    self.etag = now.actual_etag
                else:
                    self.etag = None
                continue
            self.etag = result.resulting_etag if result.condition_was_satisfied else None

    def stop(self) -> Any:
        """Stop beating; the lease's last etag, or None if it was lost."""
        self._stop.set()
        self._thread.join()
        return self.etag
