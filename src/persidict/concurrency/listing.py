"""Directory listings that are snapshots: one directory read in one system call.

Why: on tmpfs (and any filesystem whose directory positions are not stable
under rename), renaming a file over an existing name moves its entry in the
listing order. A listing read in several chunks, as glibc's readdir (behind
``os.scandir``/``os.listdir``) does in 32 KiB steps, then misses entries
that existed throughout and returns others twice, whenever a writer
replaces files between two chunks.

On Linux one ``getdents64`` call holds the directory's inode lock shared
for its whole length (``iterate_dir``), while rename and unlink hold it
exclusively: a directory read in ONE call is an atomic snapshot. So
``list_dir`` reads the directory into a buffer of 32 to 128 KiB (then one
sized from ``st_size``) and, until a call returns all of it (the next call
returns 0), retries from offset 0 with twice the buffer. Memory: one
directory's entries.

Fallback (not Linux, no ``getdents64`` in libc and no known syscall
number, or the call fails): ``os.scandir`` into a list, names deduplicated.
Then each name is returned at most once, but on a filesystem that moves
entries on rename, one that existed throughout may be missed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from types import EllipsisType

__all__ = ["SNAPSHOTS", "list_chunks", "list_dir", "list_raw", "snapshot_chunks"]

_DT_DIR = 4
_DT_REG = 8
_DT_UNKNOWN = 0
_NAME_AT = 19  # offset of d_name in struct linux_dirent64
# A first call that fills the buffer is wasted (read again, bigger): it reads
# _FIRST_READ, or as much as the thread's last directory needed if that was
# more and at most _MIN_BUF (128 KiB, ~3000 names), so the like-sized buckets
# of a hashed store of millions of keys are read once, and a big directory
# wastes only _FIRST_READ.
_MIN_BUF = 128 * 1024
_FIRST_READ = 32 * 1024
_CHUNK_BYTES = 128 * 1024  # records parsed at a time by list_chunks
_MAX_RECLEN = 280  # 19 header bytes + 255 name bytes + NUL, 8-aligned
_SHORT_TRIES = 4
_FS_ENCODING = sys.getfilesystemencoding()
_MAX_BUF = 1 << 30
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DOTS = [b".", b".."]
# Syscall numbers of getdents64 where glibc < 2.30 lacks the wrapper.
_SYSCALL_NR = {"x86_64": 217, "aarch64": 61, "riscv64": 61, "ppc64le": 202, "s390x": 220}

Getdents = Callable[[int, ctypes.Array[ctypes.c_char], int], int]


def _load_getdents() -> Getdents | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    func = getattr(libc, "getdents64", None)
    if func is not None:
        func.restype = ctypes.c_ssize_t
        size_t = ctypes.c_size_t

        # No argtypes: converting by them costs more than the call on a small
        # directory; the size goes as an explicit size_t, the fd as C int.
        def call(fd: int, buf: ctypes.Array[ctypes.c_char], size: int) -> int:
            return func(fd, buf, size_t(size))  # type: ignore[no-any-return]

        return call
    number = _SYSCALL_NR.get(platform.machine())
    if number is None:
        return None
    syscall = libc.syscall
    syscall.restype = ctypes.c_long

    def getdents(fd: int, buf: ctypes.Array[ctypes.c_char], size: int) -> int:
        return int(syscall(number, ctypes.c_int(fd), buf, ctypes.c_size_t(size)))

    return getdents


_getdents = _load_getdents()

SNAPSHOTS = _getdents is not None
"""Whether ``list_dir`` reads each directory as one atomic snapshot."""


def list_dir(path: str) -> tuple[list[str], list[str]] | None:
    """(regular file names, directory names) of ``path``; None if it is gone.

    Symlinks and other file types are in neither list. Each name appears
    once. With ``SNAPSHOTS`` the lists are the directory's content at one
    instant; otherwise see the module docstring.
    """
    listing = list_raw(path)
    return None if listing is None else (_decoded(listing[0]), listing[1])


def list_raw(path: str) -> tuple[list[bytes], list[str]] | None:
    """list_dir with the file names as the filesystem holds them (bytes, undecoded):
    a listing that checks them as bytes saves decoding every name."""
    raw = _snapshot(path)
    return None if raw is ... else _parsed(raw, path)


def _snapshot(path: str, hint: int = 0) -> bytes | EllipsisType | None:
    """The records of ``path`` from one getdents64 snapshot; None: use the fallback; ...: gone.

    ``hint``: about how many bytes of records it had last time; one bigger
    than the spare buffer is read into a buffer of that size first.
    """
    try:
        fd = os.open(path, _OPEN_DIR)
    except (FileNotFoundError, NotADirectoryError):
        return ...
    try:
        if _getdents is None:
            return None
        return _read_sized(fd, hint) if hint > _MIN_BUF else _read_whole(fd)
    finally:
        os.close(fd)


def _parsed(raw: bytes | None, path: str) -> tuple[list[bytes], list[str]] | None:
    """The names in ``raw`` (records read from ``path``); the fallback's without them."""
    listing = None if raw is None else _parse(raw, path)
    if listing is not None:
        return listing
    fallback = _list_scandir(path)
    return None if fallback is None else (_encoded(fallback[0]), fallback[1])


Chunked = tuple[bytes | None, Iterator[list[bytes]], list[str], list[bytes]]


def list_chunks(path: str) -> tuple[Iterator[list[bytes]], list[str]] | None:
    """list_raw with the file names in chunks, parsed as they are wanted.

    One snapshot as ever; a big directory's names are then split off
    _CHUNK_BYTES of records at a time, so the caller checks each chunk while
    it is still in the CPU's caches (1M names: 0.1 us/key less than parsing
    them all first). The directory names are in the list once the chunks
    are exhausted. Names repeated by several calls are dropped; records that
    turn out not to be the kernel's raise OSError(EIO): chunks are out by then.
    """
    listed = snapshot_chunks(path)
    return None if listed is None else (listed[1], listed[2])


def snapshot_chunks(path: str, hint: int = 0) -> Chunked | None:
    """list_chunks, with the records and the names that were judged by lstat.

    (records, file name chunks, dir names, lstat-judged names): the records
    of the one getdents64 call the names were parsed from, None when the
    names are not a function of those bytes alone (the scandir fallback, or
    records of several calls); the names of DT_UNKNOWN records, classified
    by lstat, filled in as the chunks are consumed. ``hint``: see _snapshot.
    """
    raw = _snapshot(path, hint)
    if raw is ...:
        return None
    unknown: list[bytes] = []
    pure = raw if type(raw) is bytes else None  # not a _Pieced
    if raw is None or len(raw) <= _CHUNK_BYTES:
        listing = None if raw is None else _parse(raw, path, unknown)
        if listing is None:  # no records, or malformed ones: the fallback's names
            pure, listing = None, _parsed(None, path)
            if listing is None:
                return None
        return pure, iter((listing[0],)), listing[1], unknown
    dirs: list[str] = []
    return pure, _chunks(raw, path, dirs, unknown), dirs, unknown


def _chunks(data: bytes, path: str, dirs_out: list[str], unknown: list[bytes]
            ) -> Iterator[list[bytes]]:
    """The file names of ``data`` a chunk at a time (see list_chunks); then its dirs."""
    seen: set[bytes] | None = set() if isinstance(data, _Pieced) else None
    dirs: list[bytes] = []
    at, end = _NAME_AT, len(data) + _NAME_AT
    while at < end:
        files: list[bytes] = []
        at = _records(data, path, at, min(end, at + _CHUNK_BYTES), files, dirs, unknown)
        if at > end or at < 0:
            raise OSError(errno.EIO, f"getdents64 records of {path} are malformed")
        if seen is not None:  # records of several calls may repeat a name
            fresh = set(files)
            if len(fresh) != len(files) or not seen.isdisjoint(fresh):
                files = [f for f in dict.fromkeys(files) if f not in seen]
            seen |= fresh
        yield files
    dirs = [d for d in dict.fromkeys(dirs) if d != b"." and d != b".."]
    dirs_out += _decoded(dirs)


# Per thread: a _MIN_BUF buffer and a probe buffer, reused by every small
# directory (allocating them cost more than listing a 10-entry directory).
# Lent out while in use, so a signal handler that lists meanwhile makes its own.
_spare = threading.local()


def _read_whole(fd: int) -> bytes | None:
    """The directory's records, read by one getdents64 call.

    A call that stopped with room left for the largest record stopped at the
    end; a probe call then returning 0 confirms it. A probe that finds more
    means entries were added meanwhile (or a filesystem that returns short
    reads): read again from offset 0, and after ``_SHORT_TRIES`` such reads
    take the rest in further calls (a ``_Pieced`` result, no snapshot; names
    are deduplicated later). None: use the fallback.
    """
    pair = getattr(_spare, "pair", None)
    _spare.pair = None
    if pair is None:
        pair = (ctypes.create_string_buffer(_MIN_BUF), ctypes.create_string_buffer(_MAX_RECLEN))
    first = min(_MIN_BUF, getattr(_spare, "first", _FIRST_READ))
    try:
        data = _read_into(fd, pair[0], pair[1], first)
    finally:
        _spare.pair = pair
    if data is not None:
        want = len(data) + len(data) // 4 + _MAX_RECLEN  # room to grow a little
        _spare.first = max(_FIRST_READ, want) if want <= _MIN_BUF else _FIRST_READ
    return data


def _read_sized(fd: int, size: int) -> bytes | None:
    """_read_whole with a first call of ``size`` bytes (room to grow included): a
    big directory of known size is read in one call, not one too small first."""
    size = min(_MAX_BUF, size + size // 4 + _MAX_RECLEN)
    buf, probe = ctypes.create_string_buffer(size), ctypes.create_string_buffer(_MAX_RECLEN)
    return _read_into(fd, buf, probe, size)


def _read_into(
    fd: int, buf: ctypes.Array[ctypes.c_char], probe: ctypes.Array[ctypes.c_char],
    first: int = _FIRST_READ,
) -> bytes | None:
    """_read_whole with the buffers to use: ``buf`` first, ``first`` bytes of it (a
    bigger one is made, sized from ``st_size``, when a directory does not fit)."""
    assert _getdents is not None
    # Never more than buf holds: the kernel writes it.
    size, short = min(first, len(buf)), 0
    while True:
        n = _getdents(fd, buf, size)
        if n < 0:
            if ctypes.get_errno() != errno.EINTR:
                return None
            os.lseek(fd, 0, os.SEEK_SET)
            continue
        if n == 0:
            return b""
        if size - n < _MAX_RECLEN:  # maybe stopped for lack of room
            if size >= _MAX_BUF:
                return None
            size = min(_MAX_BUF, max(2 * size, 4 * os.fstat(fd).st_size))
            buf = ctypes.create_string_buffer(size)
            os.lseek(fd, 0, os.SEEK_SET)
            continue
        more = _getdents(fd, probe, _MAX_RECLEN)
        # A c_char array's slice is bytes (typeshed says list); cheaper than string_at.
        data: bytes = buf[:n]  # type: ignore[assignment]
        if more == 0:
            return data
        short += 1
        if short >= _SHORT_TRIES:
            return _read_rest(fd, data, probe, more, buf, size)
        os.lseek(fd, 0, os.SEEK_SET)


class _Pieced(bytes):
    """Records of several getdents64 calls: no snapshot, so names may repeat.

    One call lists each entry once (the kernel walks the directory once,
    holding its lock); only these records are deduplicated.
    """


def _read_rest(
    fd: int, data: bytes, probe: ctypes.Array[ctypes.c_char], more: int,
    buf: ctypes.Array[ctypes.c_char], size: int,
) -> bytes | None:
    """Not a snapshot: ``data``, the probe's records and every further chunk."""
    assert _getdents is not None
    chunks: list[bytes] = [data, probe[:more]] if more > 0 else [data]  # type: ignore[list-item]
    while True:
        n = _getdents(fd, buf, size)
        if n < 0:
            return None
        if n == 0:
            return _Pieced(b"".join(chunks))
        chunks.append(buf[:n])  # type: ignore[arg-type]


def _parse(data: bytes, path: str, unknown: list[bytes] | None = None
           ) -> tuple[list[bytes], list[str]] | None:
    """Split linux_dirent64 records into file and directory names; None if malformed.

    A record is 19 header bytes (d_type at 18), the name and its NUL, padded
    to 8 bytes (d_reclen = ALIGN(19 + len + 1, 8), fs/readdir.c filldir64,
    the same for every filesystem): the next record starts at the 8-aligned
    position after the NUL, so d_reclen need not be read. This loop runs once
    per listed name; a listing that does not end on a record boundary is
    not one the kernel made (None: the caller falls back to scandir).
    ``unknown`` gets the names of DT_UNKNOWN records (judged by lstat).
    """
    files: list[bytes] = []
    dirs: list[bytes] = []
    end = len(data) + _NAME_AT
    if _records(data, path, _NAME_AT, end, files, dirs, unknown) != end:
        return None
    if dirs[:2] == _DOTS:  # where tmpfs and ext4 put them
        del dirs[:2]
    else:
        dirs = [d for d in dirs if d != b"." and d != b".."]
    if isinstance(data, _Pieced):  # records of several calls may repeat a name
        files, dirs = list(dict.fromkeys(files)), list(dict.fromkeys(dirs))
    return files, _decoded(dirs)


def _records(data: bytes, path: str, at: int, stop: int, files: list[bytes],
             dirs: list[bytes], unknown: list[bytes] | None) -> int:
    """Append the names of the records whose names start at ``at`` .. before ``stop``.

    ``at`` is where a record's name starts (19 bytes into it). Returns where
    the next one's would start, or -1 if a record has no NUL (malformed).
    DT_UNKNOWN records are classified by lstat; their names go to ``unknown`` too.
    """
    add_file, add_dir, index = files.append, dirs.append, data.index
    try:
        while at < stop:
            nul = index(0, at)
            kind = data[at - 1]  # d_type
            if kind == _DT_REG:
                add_file(data[at:nul])
            elif kind == _DT_DIR:
                add_dir(data[at:nul])
            elif kind == _DT_UNKNOWN:
                _classify(path, data[at:nul], files, dirs)
                if unknown is not None:
                    unknown.append(data[at:nul])
            at = ((nul + 8) & -8) + _NAME_AT
    except ValueError:  # no NUL after a record's header
        return -1
    return at


def _decoded(raw: list[bytes]) -> list[str]:
    """Decoded like os.fsdecode, in one pass."""
    if not raw:
        return []
    return b"\0".join(raw).decode(_FS_ENCODING, "surrogateescape").split("\0")


def _encoded(names: list[str]) -> list[bytes]:
    """Encoded like os.fsencode, in one pass."""
    if not names:
        return []
    return "\0".join(names).encode(_FS_ENCODING, "surrogateescape").split(b"\0")


def _classify(path: str, name: bytes, files: list[bytes], dirs: list[bytes]) -> None:
    """File or directory by lstat, for filesystems that report DT_UNKNOWN."""
    if name in (b".", b".."):
        return
    try:
        mode = os.lstat(os.path.join(os.fsencode(path), name)).st_mode
    except OSError:
        return  # gone meanwhile
    if stat.S_ISREG(mode):
        files.append(name)
    elif stat.S_ISDIR(mode):
        dirs.append(name)


def _list_scandir(path: str) -> tuple[list[str], list[str]] | None:
    files: list[str] = []
    dirs: list[str] = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    files.append(entry.name)
                elif entry.is_dir(follow_symlinks=False):
                    dirs.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return list(dict.fromkeys(files)), list(dict.fromkeys(dirs))
