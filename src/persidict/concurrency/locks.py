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

Descriptors: one per (lock file, thread) per process, shared by every
KeyLocks on that file (a store and its subdicts, however many), and closed
when the last of them is gone or the thread ends. Sharing also means two
instances used by one thread never lock each other out.

Two keys whose hashes share a byte merely serialize; 2**62 offsets make
that negligible. Which lock file guards a file is decided in ``marker.py``.
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
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from ..engine.errors import LockTimeoutError

# Without OFD locks (macOS, BSD) KeyLocks raises OSError rather than fall back
# to locks that do not exclude threads, so a FileDirDict fails at its first
# key access there (issue 12); the other stores still work.
HAVE_OFD_LOCKS = hasattr(fcntl, "F_OFD_SETLK")

DEFAULT_LOCK_TIMEOUT = 60.0

META_DIR = "@persidict"
"""A store's own files live here; '@' is not a safe key character, so no key can."""

# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
# padded to its 32-byte size; l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("hhqqi4x")
_BUSY = (errno.EAGAIN, errno.EACCES)
# What fcntl(2) says when the filesystem offers no record locks (NFS mounted
# with nolock, some FUSE filesystems): ENOLCK, EINVAL, ENOSYS, EOPNOTSUPP.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


class LocksUnsupportedError(OSError):
    """The filesystem of a store refuses the record locks FileDirDict needs.

    An OSError (with the errno fcntl reported), so callers that catch
    OSError still do; the message names the store and says what to do.
    """


def _no_locks(exc: OSError, lock_path: str) -> LocksUnsupportedError:
    store = os.path.dirname(os.path.dirname(lock_path))
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return LocksUnsupportedError(
        exc.errno,
        f"the filesystem of the store at {store} refuses record locks ({name}: "
        f"{exc.strerror}); FileDirDict needs fcntl(2) OFD locks: put the store on a "
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


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


class _Descriptor:
    """One thread's open descriptor of a lock file; closed when dropped."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.generation = _fork_generation
        self.pid = os.getpid()
        self.held: set[int] = set()  # offsets this thread holds through fd

    @classmethod
    def open(cls, path: str) -> _Descriptor:
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

    def __del__(self) -> None:
        # In a forked child the number was (or is about to be) closed and may
        # name another file; the pid test also holds while other after-fork
        # hooks (threading's) drop dead threads' descriptors before ours runs.
        if self.pid == os.getpid() and self.generation == _fork_generation:
            with _open_fds_lock:
                _open_fds.discard(self.fd)
                with contextlib.suppress(OSError):
                    os.close(self.fd)


class _LockFile:
    """The descriptors of one lock file, one per thread (a thread-local)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()

    def descriptor(self) -> _Descriptor:
        d: _Descriptor | None = getattr(self.local, "descriptor", None)
        if d is None or d.generation != _fork_generation:
            d = self.local.descriptor = _Descriptor.open(self.path)
        return d


# Lock path -> its _LockFile while some KeyLocks uses it; dropping the last
# KeyLocks drops the thread-locals, whose descriptors then close.
_lock_files: weakref.WeakValueDictionary[str, _LockFile] = weakref.WeakValueDictionary()


def _lock_file(path: str) -> _LockFile:
    with _open_fds_lock:
        found = _lock_files.get(path)
        if found is None:
            found = _lock_files[path] = _LockFile(path)
        return found


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
        self._file = _lock_file(lock_path)

    def _fd(self) -> int:
        return self._file.descriptor().fd

    def _not_held(self, d: _Descriptor, offset: int, key: object) -> None:
        """Refuse to take again a lock this thread holds through ``d``.

        One descriptor per thread means one OFD lock owner per thread: a
        second take would succeed at once and its release would end the
        first holder's lock early. Only re-entry can do that (a signal
        handler, a finalizer or a callback that writes while the thread is
        inside a locked section); it gets an error instead.
        """
        if offset in d.held:
            raise RuntimeError(
                f"the lock of {key!r} in {self.lock_path} is already held by this thread "
                "(re-entered from a signal handler, a finalizer or a callback); taking it "
                "again would end that hold early"
            )

    def _setlk(self, fd: int, lock: bytes) -> bool:
        """One F_OFD_SETLK; False if another holder has the byte."""
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
        except OSError as exc:
            if exc.errno in _BUSY:
                return False
            if exc.errno in _NO_LOCKS:
                raise _no_locks(exc, self.lock_path) from exc
            raise
        return True

    def acquire(self, offset: int, key: object) -> None:
        """Take this thread's lock at ``offset`` (see lock_offset).

        Waits at most ``timeout`` seconds, then raises LockTimeoutError.
        Call it inside ``try`` with release() in ``finally``: a signal handler
        may raise after the lock was taken but before this returns.
        """
        d = self._file.descriptor()
        self._not_held(d, offset, key)
        # Marked before the take, cleared by release() only: a handler that
        # runs anywhere in between is refused.
        d.held.add(offset)
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        if not self._setlk(d.fd, lock):
            self._wait(d.fd, lock, key)

    def release(self, offset: int) -> None:
        """Release this thread's lock at ``offset``; a no-op if it is not held."""
        d = self._file.descriptor()
        self._setlk(d.fd, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0))
        d.held.discard(offset)

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
        # A lock file that cannot be opened, or a re-entry, raises here, holding nothing.
        self._not_held(self._file.descriptor(), offset, key)
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
            if self._setlk(fd, lock):
                return
            if time.monotonic() > deadline:
                raise LockTimeoutError(key, self.lock_path, self.timeout)
            delay = min(delay * 2, 0.002)

