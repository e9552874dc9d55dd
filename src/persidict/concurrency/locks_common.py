"""What every lock backend shares: errors, fork safety, descriptors, hold_at.

Descriptors: one per (lock file, thread) per process, shared by every
KeyLocks on that file (a store and its subdicts, however many), and closed
when the last of them is gone or the thread ends. Sharing also means two
instances used by one thread never lock each other out. No fcntl here: this
module imports on every platform.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ..engine.errors import LockTimeoutError, PersiDictError

DEFAULT_LOCK_TIMEOUT = 60.0
FIRST_DELAY = 0.00002
"""The first sleep of a lock wait (seconds); later ones double up to MAX_DELAY."""
MAX_DELAY = 0.002
"""The longest sleep between two attempts of a lock wait (seconds)."""

META_DIR = "@persidict"
"""A store's own files live here; '@' is not a safe key character, so no key can."""

# What the kernel says when the filesystem offers no such locks (NFS mounted
# with nolock, some FUSE filesystems): ENOLCK, EINVAL, ENOSYS, EOPNOTSUPP.
NO_LOCKS = frozenset(
    {errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1)}
)


class LocksUnsupportedError(PersiDictError, OSError):
    """The filesystem of a store refuses the file locks FileDirDict needs.

    An OSError (with the errno the kernel reported), so callers that catch
    OSError still do; the message names the store and says what to do.
    """


def no_locks(exc: OSError, lock_path: str, mechanism: str) -> LocksUnsupportedError:
    """The LocksUnsupportedError for ``exc``, raised by ``mechanism`` on ``lock_path``."""
    store = os.path.dirname(os.path.dirname(lock_path))
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return LocksUnsupportedError(
        exc.errno,
        f"the filesystem of the store at {store} refuses file locks ({name}: "
        f"{exc.strerror}); FileDirDict needs {mechanism}: put the store on a "
        "local filesystem, or mount NFS with locking (not 'nolock'; 'local_lock=all' "
        "if only this machine uses it)",
        lock_path,
    )


# A descriptor inherited through fork() shares the parent's open file
# description, hence the parent's locks: a child that keeps it would keep a
# dead parent's locks alive. So the child closes every lock descriptor right
# after fork (its copies only; the parent's locks are unaffected) and opens
# fresh ones on first use.
# Opening and registering a descriptor happen under _open_fds_lock, which
# fork() also takes, so no fork can see a descriptor open but unregistered.
# It is reentrant: a finalizer closing a descriptor may run inside a section
# that holds it.
_fork_generation = 0
_open_fds: set[int] = set()
_open_fds_lock = threading.RLock()


def fork_generation() -> int:
    """How many forks separate this process from the one that imported us."""
    return _fork_generation


def _before_fork() -> None:
    _open_fds_lock.acquire()


def _after_fork_in_parent() -> None:
    _open_fds_lock.release()


def _after_fork_in_child() -> None:
    global _fork_generation, _open_fds_lock
    _fork_generation += 1
    _open_fds_lock = threading.RLock()  # held by the forking thread: start afresh
    for fd in _open_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_fds.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class Descriptor:
    """One thread's open descriptor of a lock file; closed when dropped."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.generation = _fork_generation
        self.pid = os.getpid()
        self.held: set[int] = set()  # offsets this thread holds through fd
        # flock backend: the whole file is locked through fd (None: being released)
        self.locked: bool | None = False

    @classmethod
    def open(cls, path: str) -> Descriptor:
        """Open ``path``; an error names the store and leaves nothing to finalize."""
        with _open_fds_lock:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                store = os.path.dirname(os.path.dirname(path))
                raise type(exc)(
                    exc.errno, f"{exc.strerror}: cannot open the lock file of the store at {store}",
                    path,
                ) from exc
            _open_fds.add(fd)
            return cls(fd)

    def current(self) -> bool:
        """False in a forked child: the descriptor was closed there."""
        return self.generation == _fork_generation

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        # At interpreter exit module globals may already be None, and the OS
        # closes the descriptor anyway. In a forked child the number was (or
        # is about to be) closed and may name another file; the pid test also
        # holds while other after-fork hooks (threading's) drop dead threads'
        # descriptors before ours runs.
        if _finalizing():
            return
        if self.pid == os.getpid() and self.generation == _fork_generation:
            with _open_fds_lock:
                _open_fds.discard(self.fd)
                with contextlib.suppress(OSError):
                    os.close(self.fd)


def shared(
    registry: weakref.WeakValueDictionary[str, Any], path: str, make: Callable[[], Any]
) -> Any:
    """The object ``registry`` holds for ``path``, made by ``make`` if none is alive."""
    with _open_fds_lock:
        found = registry.get(path)
        if found is None:
            found = registry[path] = make()
        return found


def lock_offset(name: str) -> int:
    """The lock number that stands for ``name`` (an OFD byte; a stripe modulo their count)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


class KeyLocksBase:
    """Exclusive locks, one per key name, in the lock file ``lock_path``.

    A backend gives acquire() and release() of a lock number (lock_offset);
    this gives the hold contexts and the bounded wait.
    """

    lock_path: str
    timeout: float

    def descriptor(self, offset: int) -> Descriptor:  # pragma: no cover - abstract
        """This thread's descriptor through which the lock at ``offset`` is taken."""
        raise NotImplementedError

    def acquire_on(self, d: Descriptor, offset: int, key: object) -> None:  # pragma: no cover
        """Take the lock at ``offset`` through ``d`` (not held by this thread).

        Marks ``offset`` held first; waits at most ``timeout`` seconds, then
        raises LockTimeoutError. Call it inside ``try`` with release_on() in
        ``finally``: a signal handler may raise after the take.
        """
        raise NotImplementedError

    def release_on(self, d: Descriptor, offset: int) -> None:  # pragma: no cover - abstract
        """Release the lock at ``offset`` taken through ``d``; a no-op if not held."""
        raise NotImplementedError

    def acquire(self, offset: int, key: object) -> None:
        """Take this thread's lock at ``offset`` (see lock_offset and acquire_on)."""
        d = self.descriptor(offset)
        if offset in d.held:
            raise self.reentry_error(key)
        self.acquire_on(d, offset, key)

    def release(self, offset: int) -> None:
        """Release this thread's lock at ``offset``; a no-op if it is not held."""
        self.release_on(self.descriptor(offset), offset)

    def _held(self, offset: int) -> set[int]:
        """The lock numbers this thread holds through the descriptor of ``offset``."""
        return self.descriptor(offset).held

    def reentry_error(self, key: object) -> RuntimeError:
        """The error for taking again a lock this thread holds.

        One descriptor per thread means one lock owner per thread: a second
        take would succeed at once and its release would end the first
        holder's lock early. Only re-entry can do that (a signal handler, a
        finalizer or a callback that writes while the thread is inside a
        locked section); it gets an error instead.
        """
        return RuntimeError(
            f"the lock of {key!r} in {self.lock_path} is already held by this thread "
            "(re-entered from a signal handler, a finalizer or a callback); taking it "
            "again would end that hold early"
        )

    def hold(self, name: str, key: object = None) -> AbstractContextManager[None]:
        """Hold the exclusive lock of ``name`` for the duration of the block."""
        return self.hold_at(lock_offset(name), key if key is not None else name)

    def hold_at(self, offset: int, key: object) -> AbstractContextManager[None]:
        """Hold the lock at ``offset`` for the duration of the block (see ``Hold``)."""
        return Hold(self, offset, key)

    def wait(self, attempt: Callable[[], bool], key: object) -> None:
        """Poll ``attempt`` with growing sleeps until it succeeds or the timeout passes.

        Neither F_OFD_SETLKW nor a blocking flock() has a timeout (only a
        signal ends them), so we poll: sleeps from FIRST_DELAY doubling to
        MAX_DELAY, the last one cut to end at the deadline, where one more
        attempt runs before LockTimeoutError. MAX_DELAY bounds how long a
        freed lock stays unclaimed (a holder that stops, a lock handed on);
        a long wait costs about 500 failed polls a second, 1-2 % of one CPU.
        Linux adds its timer slack (50 us) to every sleep. A 1 ms cap, a
        sched_yield spin before sleeping and other growths measured no
        better on 4 processes sharing one key (benchmarks/contended.py):
        there the holder keeps the lock for runs of operations, and goodput
        is bounded by the work done under it.
        """
        deadline = time.monotonic() + self.timeout
        delay = FIRST_DELAY
        while True:
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            if attempt():
                return
            if time.monotonic() >= deadline:
                raise LockTimeoutError(key, self.lock_path, self.timeout)
            delay = min(delay * 2, MAX_DELAY)


class Hold:
    """hold_at's context: the lock at ``offset`` of ``locks`` from enter to exit.

    A signal handler may raise at any bytecode (SIGALRM time limits,
    KeyboardInterrupt), also after the lock was taken or inside the
    release. The release is retried until it ran, then the handler's
    exception goes on; and if __exit__ itself is interrupted before it
    releases, the release runs when this object is dropped. A class, not a
    generator context: a generator would cost a write about 0.5 us more.
    """

    __slots__ = ("d", "key", "locks", "offset", "taken")

    def __init__(self, locks: KeyLocksBase, offset: int, key: object) -> None:
        self.locks, self.offset, self.key = locks, offset, key
        self.taken = False

    def __enter__(self) -> None:
        # A lock file that cannot be opened, or a re-entry, raises here, holding nothing.
        locks, offset = self.locks, self.offset
        d = self.d = locks.descriptor(offset)
        if offset in d.held:
            raise locks.reentry_error(self.key)
        self.taken = True  # from here on a release is owed, whatever happens
        try:
            locks.acquire_on(d, offset, self.key)
        except BaseException:
            self._release()
            raise

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._release()

    def _release(self) -> None:
        # In a child forked inside the block ``d`` is closed there and the
        # lock is the parent's: nothing to release.
        interrupted: BaseException | None = None
        while self.taken:
            try:
                if self.d.generation == _fork_generation:
                    self.locks.release_on(self.d, self.offset)
                self.taken = False
            except OSError:
                self.taken = False
                raise
            except BaseException as exc:  # only to finish the unlock; re-raised below
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        try:
            taken = self.taken
        except AttributeError:  # a signal landed in __init__ before it set anything
            return
        # __exit__ was interrupted before it released. At exit the process
        # drops its locks itself, and module globals may already be None.
        if taken and not _finalizing():
            with contextlib.suppress(BaseException):
                self._release()
