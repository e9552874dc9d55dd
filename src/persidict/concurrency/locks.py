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

if not hasattr(fcntl, "F_OFD_SETLK"):  # pragma: no cover - non-Linux
    raise ImportError("persidict's FileDirDict needs Linux OFD locks (fcntl.F_OFD_SETLK)")

DEFAULT_LOCK_TIMEOUT = 60.0

# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
# padded to its 32-byte size; l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("hhqqi4x")
_BUSY = (errno.EAGAIN, errno.EACCES)

# Descriptors inherited through fork() share the parent's open file
# description, hence its locks: after a fork every descriptor is reopened.
_fork_generation = 0


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class _ThreadFd(threading.local):
    fd: int = -1
    generation: int = -1


def _offset(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big") >> 2


class KeyLocks:
    """Byte-range locks on ``lock_path``, one byte per key name."""

    def __init__(self, lock_path: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        self._local = _ThreadFd()

    def _fd(self) -> int:
        local = self._local
        if local.generation != _fork_generation:
            # A descriptor from before a fork must not be reused (see above);
            # closing the child's copy does not release the parent's locks.
            if local.fd >= 0:
                os.close(local.fd)
            local.fd = -1
        if local.fd < 0:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            local.fd = fd
            local.generation = _fork_generation
        return local.fd

    @contextmanager
    def hold(self, name: str, key: object = None) -> Iterator[None]:
        """Hold the exclusive lock of ``name`` for the duration of the block."""
        fd = self._fd()
        offset = _offset(name)
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            self._wait(fd, lock, key if key is not None else name)
        try:
            yield
        finally:
            unlock = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, unlock)

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
