"""Linux key locks: one lock file per store, one byte of it per key.

Open-file-description "OFD" record locks (fcntl(2) F_OFD_SETLK), the
default where the kernel has them. Why this mechanism:

- OFD locks belong to the open file description, not to the process (unlike
  classic POSIX record locks), so two threads of one process that use their
  own descriptors exclude each other; each thread keeps its own descriptor.
- The kernel drops them when the holder dies: no stale locks after SIGKILL.
- One lock file per store: no pile of lock files, and nothing is ever
  unlinked, so nobody can lock an orphaned inode.
- persidict itself never holds two key locks at once (only a transform_item
  transformer that writes other keys does: see its docstring); every wait is
  bounded by a timeout that raises LockTimeoutError (a TimeoutError).

Two keys whose hashes share a byte merely serialize; 2**62 offsets make
that negligible. Which lock file guards a file is decided in ``marker.py``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import weakref

from .locks_common import (
    DEFAULT_LOCK_TIMEOUT,
    NO_LOCKS,
    Descriptor,
    KeyLocksBase,
    fork_generation,
    no_locks,
    shared,
)

# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
# padded to its 32-byte size; l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("hhqqi4x")
_BUSY = (errno.EAGAIN, errno.EACCES)
MECHANISM = "fcntl(2) OFD record locks"


class _LockFile:
    """The descriptors of one lock file, one per thread (a thread-local)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()


# Lock path -> its _LockFile while some KeyLocks uses it; dropping the last
# KeyLocks drops the thread-locals, whose descriptors then close.
_lock_files: weakref.WeakValueDictionary[str, _LockFile] = weakref.WeakValueDictionary()


class KeyLocks(KeyLocksBase):
    """Byte-range locks on ``lock_path``, one byte per key name.

    ``whole_file`` (a lock file of its own, e.g. a marker's decision lock)
    changes nothing here: such callers only use offset 0.
    """

    def __init__(
        self, lock_path: str, timeout: float = DEFAULT_LOCK_TIMEOUT, whole_file: bool = False
    ) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        self._file: _LockFile = shared(_lock_files, lock_path, lambda: _LockFile(lock_path))

    def descriptor(self, offset: int) -> Descriptor:
        # docstring inherited: one descriptor per thread, whatever the offset
        file = self._file
        d: Descriptor | None = getattr(file.local, "descriptor", None)
        if d is None or d.generation != fork_generation():
            d = file.local.descriptor = Descriptor.open(file.path)
        return d

    def _setlk(self, fd: int, lock: bytes) -> bool:
        """One F_OFD_SETLK; False if another holder has the byte."""
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
        except OSError as exc:
            if exc.errno in _BUSY:
                return False
            if exc.errno in NO_LOCKS:
                raise no_locks(exc, self.lock_path, MECHANISM) from exc
            raise
        return True

    def acquire_on(self, d: Descriptor, offset: int, key: object) -> None:
        # docstring inherited. Marked before the take, cleared by release_on()
        # only: a handler that runs anywhere in between is refused.
        d.held.add(offset)
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(d.fd, fcntl.F_OFD_SETLK, lock)  # the uncontended case, inline
        except OSError:
            if not self._setlk(d.fd, lock):
                self.wait(lambda: self._setlk(d.fd, lock), key)

    def release_on(self, d: Descriptor, offset: int) -> None:
        # docstring inherited
        unlock = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(d.fd, fcntl.F_OFD_SETLK, unlock)  # the common case, inline
        except OSError:
            self._setlk(d.fd, unlock)  # again, to map the error
        d.held.discard(offset)
