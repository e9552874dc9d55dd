"""Portable POSIX key locks: flock(2) on a fixed set of lock-stripe files.

For systems without OFD record locks (macOS, BSD), or when forced with
PERSIDICT_LOCKS=flock. Why this mechanism:

- flock(2) locks an open file description, so two threads of one process
  that use their own descriptors exclude each other; the kernel drops the
  lock when the holder dies (no stale locks after SIGKILL).
- flock locks whole files, so keys are hashed (lock_offset, as for OFD
  bytes) to STRIPES files ``lock-00`` .. ``lock-3f`` next to where the OFD
  lock file would be: the number of lock files stays fixed, none is ever
  unlinked. Two keys of one stripe merely serialize.
- A thread opens a stripe's descriptor on first use and keeps at most
  _OPEN_MAX of them per lock file (the least recently used unheld one is
  closed), so many threads never exhaust descriptors.
- Two names of one stripe held by one thread (a nested hold, or a handler
  writing another key) share the one flock: the stripe is locked while any
  of them is held. Only the same name twice is a re-entry, refused.
- A caller holds at most one key lock per lock file at a time; locks of
  other files (a marker's decision lock) have files of their own
  (``whole_file``), so stripes never nest and nothing deadlocks. Waits are
  bounded by a timeout that raises LockTimeoutError.
"""

from __future__ import annotations

import errno
import fcntl
import threading
import weakref
from collections import OrderedDict

from .locks_common import (
    DEFAULT_LOCK_TIMEOUT,
    NO_LOCKS,
    Descriptor,
    KeyLocksBase,
    fork_generation,
    no_locks,
    shared,
)

STRIPES = 64
_OPEN_MAX = 8
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
MECHANISM = "flock(2) file locks"


class _Stripes:
    """The stripe files of one lock path and each thread's open descriptors of them."""

    def __init__(self, path: str, count: int) -> None:
        self.path = path
        self.count = count
        self.local = threading.local()

    def stripe_path(self, stripe: int) -> str:
        return self.path if self.count == 1 else f"{self.path}-{stripe:02x}"

    def descriptor(self, offset: int) -> Descriptor:
        stripe = offset % self.count
        local = self.local
        if getattr(local, "generation", None) != fork_generation():
            local.generation = fork_generation()  # a forked child: the old ones are closed
            local.open = OrderedDict()
        opened: OrderedDict[int, Descriptor] = local.open
        d = opened.get(stripe)
        if d is not None:
            opened.move_to_end(stripe)
            return d
        if len(opened) >= _OPEN_MAX:
            for old, held in opened.items():
                if not held.held and held.locked is False:  # None: its flock is going
                    del opened[old]  # dropped: it closes
                    break
        d = opened[stripe] = Descriptor.open(self.stripe_path(stripe))
        return d

    def keep(self, offset: int, d: Descriptor) -> None:
        """Make ``d`` (now held) the thread's descriptor of its stripe again.

        A signal handler run between descriptor() and the take may have
        opened other stripes and evicted ``d``, still unheld then: a later
        hold of another name of the stripe would open a second descriptor
        and wait for this one's flock, i.e. for itself.
        """
        opened: OrderedDict[int, Descriptor] | None = getattr(self.local, "open", None)
        stripe = offset % self.count
        if opened is not None and opened.get(stripe) is not d and d.current():
            opened[stripe] = d


# (lock path, count) -> its _Stripes while some KeyLocks uses it.
_stripe_sets: weakref.WeakValueDictionary[str, _Stripes] = weakref.WeakValueDictionary()


class KeyLocks(KeyLocksBase):
    """flock(2) locks on the stripe files of ``lock_path``, one stripe per key name.

    ``whole_file``: lock ``lock_path`` itself (one stripe), for a lock file of
    its own such as a marker's decision lock.
    """

    def __init__(
        self, lock_path: str, timeout: float = DEFAULT_LOCK_TIMEOUT, whole_file: bool = False
    ) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        count = 1 if whole_file else STRIPES
        self._stripes: _Stripes = shared(
            _stripe_sets, f"{count}:{lock_path}", lambda: _Stripes(lock_path, count)
        )

    def stripe_path(self, offset: int) -> str:
        """The file whose flock stands for the lock at ``offset``."""
        return self._stripes.stripe_path(offset % self._stripes.count)

    def descriptor(self, offset: int) -> Descriptor:
        # docstring inherited: the descriptor of the offset's stripe file
        return self._stripes.descriptor(offset)

    def _flock(self, d: Descriptor, operation: int) -> bool:
        """One non-blocking flock(); False if another holder has the file."""
        try:
            fcntl.flock(d.fd, operation | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _BUSY:
                return False
            if exc.errno in NO_LOCKS:
                raise no_locks(exc, self.stripe_path(0), MECHANISM) from exc
            raise
        return True

    def _take(self, d: Descriptor) -> bool:
        if not self._flock(d, fcntl.LOCK_EX):
            return False
        d.locked = True
        return True

    def acquire_on(self, d: Descriptor, offset: int, key: object) -> None:
        # docstring inherited. Marked before the take, cleared by release_on()
        # only; ``locked`` is set only once the flock is ours, so a handler
        # that runs in between takes it itself (a flock taken twice through
        # one descriptor is one).
        d.held.add(offset)
        self._stripes.keep(offset, d)
        if not d.locked and not self._take(d):  # None too: take it again
            self.wait(lambda: self._take(d), key)

    def release_on(self, d: Descriptor, offset: int) -> None:
        # docstring inherited. The stripe's flock goes when no name of it is
        # held by this thread.
        d.held.discard(offset)
        if not d.held:
            # First: a handler running after it takes the flock again, and no
            # handler evicts the descriptor while it still has the flock (a
            # hold through a new one would wait for this one, i.e. for itself).
            d.locked = None
            self._flock(d, fcntl.LOCK_UN)
            d.locked = False
