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
from contextlib import contextmanager

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
_fork_generation = 0
_open_fds: set[int] = set()
_open_fds_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _fork_generation, _open_fds_lock
    _fork_generation += 1
    _open_fds_lock = threading.Lock()  # may have been held by a vanished thread
    for fd in _open_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_fds.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Descriptor:
    """One thread's descriptor of a lock file; closed when the thread ends."""

    def __init__(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self.fd = fd
        self.generation = _fork_generation
        with _open_fds_lock:
            _open_fds.add(fd)

    def __del__(self) -> None:
        # After a fork the number was closed already and may name another file.
        if self.generation == _fork_generation:
            with _open_fds_lock:
                _open_fds.discard(self.fd)
            with contextlib.suppress(OSError):
                os.close(self.fd)


class _ThreadFd(threading.local):
    descriptor: _Descriptor | None = None


META_DIR = "@persidict"
"""A store's own files live here; '@' is not a safe key character, so no key can."""


def find_lock_root(base_dir: str) -> tuple[str, str]:
    """The directory whose lock file guards ``base_dir``, and the path between.

    Every store opened on a directory inside an existing store (a subdict,
    or a store rebuilt from a subdict's get_params) must share that store's
    locks, or the two would not exclude each other. The root is the topmost
    ancestor-or-self of ``base_dir`` holding a META_DIR; if there is none,
    ``base_dir`` becomes a root. Returns (root, prefix) with ``prefix`` the
    relative path from root to ``base_dir`` ending in '/' (or '').
    """
    real = os.path.realpath(base_dir)
    root = real
    candidate = real
    while True:
        if os.path.isdir(os.path.join(candidate, META_DIR)):
            root = candidate
        parent = os.path.dirname(candidate)
        if parent == candidate:
            break
        candidate = parent
    prefix = real[len(root) :].lstrip("/")
    return root, prefix + "/" if prefix else ""


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

    def acquire(self, offset: int, key: object) -> int:
        """Take the lock at ``offset`` (see lock_offset); return the fd for release().

        Waits at most ``timeout`` seconds, then raises LockTimeoutError.
        """
        fd = self._fd()
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            self._wait(fd, lock, key)
        return fd

    @staticmethod
    def release(fd: int, offset: int) -> None:
        """Release what acquire() took."""
        unlock = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, unlock)

    @contextmanager
    def hold(self, name: str, key: object = None) -> Iterator[None]:
        """Hold the exclusive lock of ``name`` for the duration of the block."""
        offset = lock_offset(name)
        fd = self.acquire(offset, key if key is not None else name)
        try:
            yield
        finally:
            self.release(fd, offset)

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
