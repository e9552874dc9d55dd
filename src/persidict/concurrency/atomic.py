"""The one atomic-write primitive: a journaled temp file renamed over the target.

The temp file is created in the journal directory (see ``journal.py``: its
name records the owner, so recovery can reclaim it after a crash) and
renamed over the target, which is atomic within one filesystem: readers see
the old or the new bytes, whole. Durable writes follow the order that makes
a rename survive power loss (fsync(2), rename(2), and ext4's
``auto_da_alloc`` notes): fsync(temp) -> rename -> fsync(target directory),
all before returning; directories created on the way are fsynced into
their parents. Non-durable writes skip every fsync (a power loss may then
lose recent writes, never tear them).

The rename is the commit point: nothing after it raises (see
``sync_after_commit``), so a caller never sees an error for a write that
took effect.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import logging
import os
import platform
import stat
import struct
import sys
from collections.abc import Callable
from typing import overload

from .journal import TEMP_PREFIX, temp_name

__all__ = [
    "SPARE_MAX",
    "TEMP_PREFIX",
    "Spare",
    "fsync_dir",
    "make_dirs",
    "open_no_symlinks",
    "parent_dir",
    "read_file",
    "sync_after_commit",
    "temp_name",
    "write_atomic",
]

_log = logging.getLogger("persidict")

_MAX_DIR_RACES = 100

# Key directories found on another filesystem than their journal directory
# (a mount point inside the store): they get same-directory temp files.
_cross_device: set[str] = set()
_MAX_CROSS_DEVICE = 4096


_READ_CHUNK = 1 << 16
# What open(O_NOFOLLOW) of a symlink fails with: ELOOP (Linux, POSIX), EMLINK (FreeBSD).
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)


_RESOLVE_NO_SYMLINKS = 0x04
# O_NONBLOCK: a FIFO planted at a key's path must not block the open (it waits
# for a writer otherwise); on a regular file it changes nothing.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_AT_FDCWD = -100
_OPENAT2_NR = {"x86_64": 437, "aarch64": 437, "riscv64": 437, "ppc64le": 437, "s390x": 437}


def _load_openat2() -> Callable[[str], int] | None:
    """openat2(2) with RESOLVE_NO_SYMLINKS (Linux >= 5.6), or None."""
    number = _OPENAT2_NR.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_size_t]
    how = struct.pack("=QQQ", _READ_FLAGS, 0, _RESOLVE_NO_SYMLINKS)
    size = len(how)
    # What os.fsencode does for a str, without its Python-level checks (a get's hot path).
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()

    def openat2(path: str) -> int:
        fd: int = syscall(number, _AT_FDCWD, path.encode(encoding, errors), how, size)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return fd

    try:  # ENOSYS on old kernels, EPERM under some seccomp filters
        os.close(openat2("/"))
    except OSError:
        return None
    return openat2


open_no_symlinks = _load_openat2()
"""Open for reading, refusing a symlink anywhere in the path (ELOOP); None if unsupported."""


class Spare:
    """A reusable read buffer: a big value read into it is decoded without a copy.

    Decoding bytes read fresh makes two big allocations per read (the bytes,
    then the decoded value); glibc hands both back to the kernel when freed,
    so each read pays page faults on 2 MiB for a 1 MiB value (~10x the read).
    One owner at a time (see FileBytes.decoded); at most SPARE_MAX bytes.
    """

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def sized(self, n: int, keep: int = 0) -> bytearray:
        """The buffer, at least ``n`` bytes long, its first ``keep`` bytes kept."""
        if len(self.buf) < n:
            old, self.buf = self.buf, bytearray(-(-n // _READ_CHUNK) * _READ_CHUNK)
            self.buf[:keep] = memoryview(old)[:keep]
        return self.buf


SPARE_MAX = 4 << 20


def _read_spare(fd: int, spare: Spare, head: bytes) -> memoryview | None:
    """The file, whose first bytes ``head`` were read, as a view of ``spare``.

    None if it is SPARE_MAX or more. The rest is read into the buffer sized
    by fstat (+1 to see EOF); a short read ends only at a read of 0 bytes.
    """
    size = os.fstat(fd).st_size
    if size >= SPARE_MAX:
        return None
    n = len(head)
    view = memoryview(spare.sized(max(size + 1, n + _READ_CHUNK)))
    view[:n] = head
    while True:
        if n == len(view):  # grew since fstat
            view.release()
            view = memoryview(spare.sized(n + _READ_CHUNK, keep=n))
        got = os.readv(fd, [view[n:]])
        if not got:
            return view[:n]
        n += got


@overload
def read_file(path: str, *, no_symlinks: bool = False, spare: None = None) -> bytes | None: ...
@overload
def read_file(
    path: str, *, no_symlinks: bool = False, spare: Spare
) -> bytes | memoryview | None: ...
def read_file(
    path: str, *, no_symlinks: bool = False, spare: Spare | None = None
) -> bytes | memoryview | None:
    """The whole file, or None if there is no such regular file.

    Lock-free: a file replaced by write_atomic is read whole, old or new,
    because the open descriptor pins one inode. A symlink is not followed
    (O_NOFOLLOW): it is not a value, wherever it points. ``no_symlinks``
    (only when ``open_no_symlinks`` is not None): a symlink anywhere in the
    path raises OSError(ELOOP), for the caller to judge where it is.
    ``spare``: a file over 64 KiB (below SPARE_MAX) comes back as a
    memoryview of it, valid until the buffer is reused.

    open/read/close by hand: FileIO.readall() adds two fstat calls and an
    lseek to every read, which is most of a small value's cost.
    """
    try:
        if no_symlinks and open_no_symlinks is not None:
            fd = open_no_symlinks(path)
        else:
            fd = os.open(path, _READ_FLAGS | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if (exc.errno in _SYMLINK_ERRNOS and not no_symlinks) or exc.errno == errno.ENXIO:
            return None  # ENXIO: a socket planted from outside, no value
        raise
    try:
        data = os.read(fd, _READ_CHUNK)
        if not data and not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a FIFO or device planted from outside: not a value
        # A short read means EOF on local files, but not on every mount: make
        # sure. Large files go to FileIO.readall, which reads into one buffer
        # sized by fstat (growing bytes by hand costs ~10x on 1 MiB).
        if len(data) == _READ_CHUNK and spare is not None:
            view = _read_spare(fd, spare, data)
            if view is not None:
                return view
        if len(data) == _READ_CHUNK or os.read(fd, _READ_CHUNK):
            os.lseek(fd, 0, os.SEEK_SET)
            with io.FileIO(fd, closefd=False) as f:
                return f.readall()
        return data
    except OSError:
        # A directory (EISDIR), or a FIFO whose writer is attached (EAGAIN, or
        # ESPIPE on the rewind), planted from outside: not a value. Only a
        # regular file's error goes on.
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise
        return None
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename, unlink or mkdir in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_after_commit(directory: str) -> None:
    """fsync ``directory`` after a rename or unlink in it committed; never raises.

    The change already took effect, so no failure here may turn it into an
    exception. If ``directory`` is gone, a concurrent delete emptied it and a
    pruner removed it: our entry went with it, and what must reach the disk
    is that removal, an entry of the parent, so the nearest existing
    ancestor is fsynced instead. Any other failure (EIO, ...) means the
    change happened but its durability is unconfirmed: it is logged as a
    warning on the ``persidict`` logger, not raised (a warning could be
    turned into an exception by ``-W error``).
    """
    path = directory
    for _ in range(4096):  # bounded by the path depth
        try:
            fsync_dir(path)
            return
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        except OSError as exc:
            _log.warning("committed, but fsync of directory %s failed: %s", path, exc)
            return
    _log.warning("committed, but no existing directory above %s to fsync", directory)


def make_dirs(directory: str, *, durable: bool) -> None:
    """``mkdir -p directory``; durable: fsync each parent that gained an entry.

    May raise FileNotFoundError when a concurrent pruner removes a parent
    between two mkdirs; callers retry (bounded).
    """
    missing = []
    current = directory
    for _ in range(4096):  # bounded by the path depth
        if os.path.isdir(current) or os.path.dirname(current) == current:
            break
        missing.append(current)
        current = os.path.dirname(current)
    for path in reversed(missing):
        # If a concurrent writer made it, it may not have fsynced the parent
        # yet: our rename into it is durable only once that entry is.
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        if durable:
            fsync_dir(os.path.dirname(path))


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def parent_dir(path: str) -> str:
    """``os.path.dirname(path)`` of a str path, at a third of its cost."""
    head = path[: path.rfind("/") + 1]
    return head.rstrip("/") or head


def _create_temp(directory: str, durable: bool) -> tuple[str, int]:
    """Create a fresh temp file in ``directory``, creating the directory if needed."""
    for _ in range(_MAX_DIR_RACES):
        tmp = f"{directory}/{temp_name()}" if directory else temp_name()  # os.path.join, 4x faster
        try:
            return tmp, os.open(tmp, _CREATE, 0o666)
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                make_dirs(directory, durable=durable)
    raise FileNotFoundError(errno.ENOENT, "directory keeps disappearing", directory)


def _commit(tmp: str, path: str, directory: str, durable: bool) -> bool:
    """rename(tmp, path); False if they are on different filesystems (EXDEV).

    A deleter may prune the target's directory at any moment before the
    rename; the rename then fails with ENOENT and we re-create it (bounded).
    """
    for _ in range(_MAX_DIR_RACES):
        try:
            os.replace(tmp, path)
            return True
        except FileNotFoundError:
            if not os.path.lexists(tmp):
                raise  # our temp is gone: never commit something else
            with contextlib.suppress(FileNotFoundError):
                make_dirs(directory, durable=durable)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return False
            raise
    raise FileNotFoundError(errno.ENOENT, "directory keeps disappearing", directory)


def write_atomic(path: str, data: bytes, *, durable: bool, tmp_dir: str | None = None) -> None:
    """Replace ``path`` with ``data`` so readers see the old or new bytes, whole.

    ``tmp_dir`` is the journal directory (default: the target's directory).
    Durable: fsync the temp file before the rename and the directory after
    it. On failure the temp file is removed and the target is untouched;
    after the rename nothing raises. The common case (directories present,
    one write(2) takes all) runs inline; _create_temp and _commit handle
    the races.
    """
    if tmp_dir is None or (_cross_device and parent_dir(path) in _cross_device):
        tmp_dir = parent_dir(path)
    tmp = f"{tmp_dir}/{temp_name()}" if tmp_dir else temp_name()  # os.path.join, 4x faster
    try:
        fd = os.open(tmp, _CREATE, 0o666)
    except FileNotFoundError:
        tmp, fd = _create_temp(tmp_dir, durable)
    try:
        try:
            written = os.write(fd, data)
            if written < len(data):
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
            committed = True
        except FileNotFoundError:  # the directory pruned meanwhile: re-create it
            committed = _commit(tmp, path, parent_dir(path), durable)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            committed = False
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not committed:
        os.unlink(tmp)
        if len(_cross_device) >= _MAX_CROSS_DEVICE:
            _cross_device.clear()
        _cross_device.add(parent_dir(path))
        write_atomic(path, data, durable=durable, tmp_dir=parent_dir(path))
        return
    if durable:
        sync_after_commit(parent_dir(path))
