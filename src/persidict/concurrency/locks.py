"""Per-key exclusive locks shared by processes and threads on one machine.

All keys of a store share ONE lock file; each key locks one byte of it, at an
offset derived from a hash of the key's path (Linux open-file-description
"OFD" record locks, fcntl(2) F_OFD_SETLK). Why this mechanism:

- OFD locks belong to the open file description, not to the process (unlike
  classic POSIX record locks), so two threads of one process that use their
  own descriptors exclude each other; each thread keeps its own descriptor.
- The kernel drops them when the holder dies: no stale locks after SIGKILL.
- One lock file per store: no pile of lock files, and nothing is ever
  unlinked, so nobody can lock an orphaned inode.
- A caller never holds two key locks at once, so there is no deadlock; waits
  are bounded by a timeout that raises LockTimeoutError (a TimeoutError).

Two keys whose hashes share a byte merely serialize; 2**62 offsets make
that negligible.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from ..engine.errors import LockTimeoutError

# Without OFD locks (macOS, BSD) FileDirDict refuses to open rather than
# fall back to locks that do not exclude threads; the other stores still work.
HAVE_OFD_LOCKS = hasattr(fcntl, "F_OFD_SETLK")

DEFAULT_LOCK_TIMEOUT = 60.0

# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
# padded to its 32-byte size; l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("hhqqi4x")
_BUSY = (errno.EAGAIN, errno.EACCES)

# A descriptor inherited through fork() shares the parent's open file
# description, hence the parent's locks: a child that keeps it would keep a
# dead parent's locks alive. So the child closes every lock descriptor right
# after fork (its copies only; the parent's locks are unaffected) and opens
# fresh ones on first use.
# Opening and registering a descriptor happen under _open_fds_lock, which
# fork() also takes, so no fork can see a descriptor open but unregistered.
_fork_generation = 0
_open_fds: set[int] = set()
_open_fds_lock = threading.Lock()


def _before_fork() -> None:
    _open_fds_lock.acquire()


def _after_fork_in_parent() -> None:
    _open_fds_lock.release()


def _after_fork_in_child() -> None:
    global _fork_generation, _open_fds_lock
    _fork_generation += 1
    _open_fds_lock = threading.Lock()  # held by the forking thread: start afresh
    for fd in _open_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_fds.clear()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


class _Descriptor:
    """One thread's descriptor of a lock file; closed when the thread ends."""

    def __init__(self, path: str) -> None:
        with contextlib.suppress(FileExistsError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with _open_fds_lock:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self.generation = _fork_generation
            self.pid = os.getpid()
            _open_fds.add(self.fd)

    def __del__(self) -> None:
        # In a forked child the number was (or is about to be) closed and may
        # name another file; the pid test also holds while other after-fork
        # hooks (threading's) drop dead threads' descriptors before ours runs.
        if self.pid == os.getpid() and self.generation == _fork_generation:
            with _open_fds_lock:
                _open_fds.discard(self.fd)
                with contextlib.suppress(OSError):
                    os.close(self.fd)


class _ThreadFd(threading.local):
    descriptor: _Descriptor | None = None


META_DIR = "@persidict"
"""A store's own files live here; '@' is not a safe key character, so no key can."""


def find_lock_root(directory: str) -> str | None:
    """The nearest ancestor-or-self of ``directory`` holding a META_DIR, if any.

    Nearest, not topmost: a store opened later on a parent directory must not
    move the locks of stores already open below it (FileDirDict._lock_of).
    """
    candidate = os.path.realpath(directory)
    while True:
        if os.path.isdir(os.path.join(candidate, META_DIR)):
            return candidate
        parent = os.path.dirname(candidate)
        if parent == candidate:
            return None
        candidate = parent


def lock_offset(name: str) -> int:
    """The byte of the lock file that stands for ``name``."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


class KeyLocks:
    """Byte-range locks on ``lock_path``, one byte per key name."""

    def __init__(self, lock_path: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        if not HAVE_OFD_LOCKS:  # pragma: no cover - non-Linux
            raise OSError("FileDirDict needs Linux open-file-description locks (F_OFD_SETLK)")
        self.lock_path = lock_path
        self.timeout = timeout
        self._local = _ThreadFd()

    def _fd(self) -> int:
        d = self._local.descriptor
        if d is None or d.generation != _fork_generation:
            d = self._local.descriptor = _Descriptor(self.lock_path)
        return d.fd

    def acquire(self, offset: int, key: object) -> None:
        """Take this thread's lock at ``offset`` (see lock_offset).

        Waits at most ``timeout`` seconds, then raises LockTimeoutError.
        Call it inside ``try`` with release() in ``finally``: a signal handler
        may raise after the lock was taken but before this returns.
        """
        fd = self._fd()
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            self._wait(fd, lock, key)

    def release(self, offset: int) -> None:
        """Release this thread's lock at ``offset``; a no-op if it is not held."""
        unlock = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
        fcntl.fcntl(self._fd(), fcntl.F_OFD_SETLK, unlock)

    def hold(self, name: str, key: object = None) -> AbstractContextManager[None]:
        """Hold the exclusive lock of ``name`` for the duration of the block."""
        return self.hold_at(lock_offset(name), key if key is not None else name)

    @contextmanager
    def hold_at(self, offset: int, key: object) -> Iterator[None]:
        """Hold the lock at ``offset`` for the duration of the block.

        A signal handler may raise at any bytecode (SIGALRM time limits,
        KeyboardInterrupt), also after the lock was taken or inside the
        release. The release is retried until it ran, then the handler's
        exception goes on; and if __exit__ itself is interrupted, closing
        this generator (when it is collected) still runs the release.
        """
        interrupted: BaseException | None = None
        try:
            self.acquire(offset, key)
            yield
        finally:
            while True:
                try:
                    self.release(offset)
                    break
                except OSError:
                    raise
                except BaseException as exc:  # only to finish the unlock; re-raised below
                    interrupted = interrupted or exc
            if interrupted is not None:
                raise interrupted

    def _wait(self, fd: int, lock: bytes, key: object) -> None:
        """Poll with growing sleeps until the lock is free or the timeout passes.

        F_OFD_SETLKW would block without a timeout, so we poll instead.
        """
        deadline = time.monotonic() + self.timeout
        delay = 0.00002
        while True:
            time.sleep(delay)
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
                return
            except OSError as exc:
                if exc.errno not in _BUSY:
                    raise
            if time.monotonic() > deadline:
                raise LockTimeoutError(key, self.lock_path, self.timeout)
            delay = min(delay * 2, 0.002)


class LockTree:
    """Which lock file, and which name in it, guards each file of a store.

    A file is locked in the lock file of the nearest directory above it that
    holds a META_DIR, under its path relative to that directory. A store
    creates a META_DIR only where there is none above, so every store opened
    inside a tree (subdicts, stores rebuilt from a subdict's get_params, a
    parent opened later) finds the same lock for the same file, whatever the
    order they were opened in. A META_DIR below a store's base exists only if
    that directory was a store's root first; answers are cached per directory.
    """

    _CACHE_MAX = 4096

    def __init__(self, real_base: str, home_root: str) -> None:
        self.real_base = real_base
        self.home_root = home_root
        self._timeout = DEFAULT_LOCK_TIMEOUT
        self._roots: dict[tuple[str, ...], str] = {}
        self._files: dict[str, KeyLocks] = {}

    @property
    def timeout(self) -> float:
        """Seconds a lock wait may last before LockTimeoutError."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = seconds
        for locks in self._files.values():
            locks.timeout = seconds

    def locate(self, dirs: tuple[str, ...], rel: str) -> tuple[KeyLocks, str]:
        """(lock file, name) of the file ``rel`` (below real_base) in directory ``dirs``."""
        root = self._roots.get(dirs)
        if root is None:
            root = self.home_root
            for depth in range(len(dirs), 0, -1):
                candidate = "/".join((self.real_base, *dirs[:depth]))
                if os.path.isdir(f"{candidate}/{META_DIR}"):
                    root = candidate
                    break
            if len(self._roots) >= self._CACHE_MAX:
                self._roots.clear()
            self._roots[dirs] = root
        locks = self._files.get(root)
        if locks is None:
            locks = self._files[root] = KeyLocks(f"{root}/{META_DIR}/lock", self._timeout)
        return locks, f"{self.real_base}/{rel}"[len(root) + 1 :]

    def hold(self, rel: str) -> AbstractContextManager[None]:
        """Hold the lock of the file ``rel`` (a '/'-separated path below real_base)."""
        locks, name = self.locate(tuple(rel.split("/")[:-1]), rel)
        return locks.hold(name)
