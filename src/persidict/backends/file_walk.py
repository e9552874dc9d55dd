"""Walking a FileDirDict tree: the keys, their count, planted symlinks.

Each directory is read whole with ``concurrency.listing`` (``list_chunks``;
``list_dir`` for a walk with timestamps), a snapshot on Linux, so a key
present for the whole walk is found exactly once and a key added or removed
during it at most once, also on tmpfs where a rename over a file moves its
entry in readdir order. Memory: the listing of each directory on the path
from the base to the current one, and up to _CHUNK pending names per level.

Names are checked up to _CHUNK at a time, as the bytes the filesystem holds
(``unsign_runs``; in the hashed layout across the bucket directories of a
level; a walk with timestamps checks str names, within one directory): a
name is a key only if its key maps back to that very path (safe characters,
the digest suffix, and in the hashed layout the bucket). Names starting
with '@' are ours (temp files, metadata); other names are junk left by
others; symlinks are never keys and never followed.

Repeated walks (direct layout, without timestamps) reuse a directory's
checked names while its fresh snapshot is byte-identical to the one they
were checked from (``walk_memo``); its last size also sizes the first read.

Layouts: ``direct`` puts key ``(a, b)`` at ``a_<d>/b_<d>.<fmt>``; ``hashed``
at ``+xy/a_<d>/+zw/b_<d>.<fmt>``, where ``+xy`` is the bucket of the
component below it (``names.bucket_of``), so no directory grows past about
1/1024 of a level's entries.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from typing import Any, TypeVar

from ..concurrency.listing import list_chunks, list_dir, snapshot_chunks
from ..engine.keys import NonEmptySafeStrTuple, trusted_key, trusted_keys
from ..engine.names import (
    bucket_and_name,
    decoded,
    is_bucket,
    sign_component,
    unsign_names,
    unsign_runs,
)
from .walk_memo import MEMO, Entry

__all__ = ["count_keys", "iter_keys", "key_chunks", "path_parts", "planted_link", "walk_keys"]

Listed = Iterator[tuple[NonEmptySafeStrTuple, float | None]]
_NAME_MAX = 255
_F = TypeVar("_F", bound=Iterable[Any])  # the file names of a listing: a list, or chunks of names
_CHUNK = 4096  # names checked at a time: bounded scratch memory per directory
# Keys built at a time: fewer than the cyclic GC's first threshold (700 new
# objects; a key is two), so a streamed chunk is gone before a collection
# would move it to an older generation (4096 at once cost 0.1 us/key more).
_KEYS_AT_ONCE = 256


def path_parts(strings: tuple[str, ...], digest_len: int, suffix: str, hashed: bool) -> list[str]:
    """The directory and file names of the key (or prefix) ``strings``, in order.

    ``suffix`` ends the last name ('' for a prefix); ValueError if a name
    would exceed the filesystems' 255 bytes. One MD5 per component gives
    both its digest suffix and (hashed layout) its bucket.
    """
    if hashed:
        parts: list[str] = []
        for s in strings:
            parts += bucket_and_name(s, digest_len)
    else:
        parts = [sign_component(s, digest_len) for s in strings]
    parts[-1] += suffix
    if max(map(len, parts)) > _NAME_MAX // 4:  # else no name can reach 256 UTF-8 bytes
        for i, part in enumerate(parts):
            if len(part.encode("utf-8")) > _NAME_MAX:
                original = strings[i // 2 if hashed else i]
                raise ValueError(
                    f"key component {original[:40]!r}... is too long: its file name "
                    f"{part[:40]!r}... exceeds {_NAME_MAX} bytes"
                )
    return parts


def _subdirs(directory: str, dirs: list[str], digest_len: int, bucket: str | None
             ) -> Iterator[tuple[str, str]]:
    """(path, component) of each key directory among ``dirs``."""
    for name in dirs:
        if name[0] != "@":
            found = unsign_names([name], digest_len, bucket)
            if found:
                yield f"{directory}/{name}", found[0]


def _levels(
    directory: str, hashed: bool, lister: Callable[[str], tuple[_F, list[str]] | None]
) -> Iterator[tuple[str, str | None, _F, list[str]]]:
    """(path, bucket, files, dirs) of each directory holding the entries of one key level.

    One directory in the direct layout; each bucket directory in the hashed one
    (a file at the level itself is no key there, and is skipped). ``lister``:
    list_dir, or list_chunks (the file names as bytes, in chunks; the dirs
    are complete once they are consumed).
    """
    listing = lister(directory)
    if listing is None:
        return
    if not hashed:
        yield directory, None, listing[0], listing[1]
        return
    deque(listing[0], maxlen=0)  # files here are no keys; the dirs are complete after them
    buckets = [name for name in listing[1] if is_bucket(name)]
    del listing
    for bucket in buckets:
        path = f"{directory}/{bucket}"
        inner = lister(path)
        if inner is not None:
            yield path, bucket, inner[0], inner[1]


Batch = tuple[tuple[str, ...], list[bytes], Entry | None]


def _batches(
    directory: str, prefix: tuple[str, ...], suffix: str, digest_len: int, hashed: bool
) -> Iterator[Batch]:
    """(prefix, components, memo entry) of the keys under ``directory``, up to _CHUNK
    a batch; a memoized directory's in one, with its entry (``walk_memo``, direct
    layout only), else None.

    The names of one key level are checked together, also across the small
    bucket directories of the hashed layout (``unsign_runs``); pending names
    are checked before descending, so scratch memory stays one chunk a level.
    """
    if not hashed:
        yield from _direct(directory, prefix, suffix, digest_len)
        return
    names: list[bytes] = []
    runs: list[tuple[str | None, int]] = []
    for path, bucket, chunks, dirs in _levels(directory, hashed, list_chunks):
        for files in chunks:
            start, total = 0, len(files)
            if len(names) + total < _CHUNK:  # the usual case: no need to split
                names += files
                runs.append((bucket, total))
                start = total
            while start < total:
                take = min(total - start, _CHUNK - len(names))
                names += files[start : start + take]
                runs.append((bucket, take))
                start += take
                if len(names) >= _CHUNK:
                    yield prefix, unsign_runs(names, runs, digest_len, suffix), None
                    names, runs = [], []
        del chunks
        for sub, component in _subdirs(path, dirs, digest_len, bucket) if dirs else ():
            if names:
                yield prefix, unsign_runs(names, runs, digest_len, suffix), None
                names, runs = [], []
            yield from _batches(sub, (*prefix, component), suffix, digest_len, hashed)
    if names:
        yield prefix, unsign_runs(names, runs, digest_len, suffix), None


def _direct(directory: str, prefix: tuple[str, ...], suffix: str, digest_len: int
            ) -> Iterator[Batch]:
    """_batches in the direct layout: one directory per level, its listing memoized.

    A directory whose fresh snapshot is the one its memo entry was checked
    from yields the entry's names; otherwise its names are checked up to
    _CHUNK at a time, and kept for the memo if it has room for them.
    """
    key = (directory, suffix, digest_len, False)
    known = MEMO.entries.get(key)
    listed = snapshot_chunks(directory, 0 if known is None else len(known.raw))
    del known
    if listed is None:
        MEMO.forget(key)
        return
    raw, chunks, dirs, unknown = listed
    entry = None if raw is None else MEMO.get(key, raw)
    if entry is None:
        kept: list[bytes] | None = [] if raw is not None and MEMO.room(raw) else None
        names: list[bytes] = []
        for files in chunks:
            names += files
            while len(names) >= _CHUNK:
                found = unsign_runs(names[:_CHUNK], [(None, _CHUNK)], digest_len, suffix)
                del names[:_CHUNK]
                if kept is not None:
                    kept += found
                yield prefix, found, None
        if names:
            found = unsign_runs(names, [(None, len(names))], digest_len, suffix)
            if kept is not None:
                kept += found
            yield prefix, found, None
        del chunks, names
        subdirs = list(_subdirs(directory, dirs, digest_len, None)) if dirs else []
        if kept is not None and raw is not None and not unknown:
            MEMO.put(key, Entry(raw, kept, subdirs, len(prefix), directory))
    else:
        if entry.found:
            yield prefix, entry.found, entry
        subdirs = entry.subdirs
    del raw, entry
    for sub, component in subdirs:
        yield from _direct(sub, (*prefix, component), suffix, digest_len)


def count_keys(directory: str, suffix: str, digest_len: int, hashed: bool) -> int:
    """The number of keys stored under ``directory`` (no key objects are built)."""
    count = sum(len(found) for _, found, _ in _batches(directory, (), suffix, digest_len, hashed))
    MEMO.walked(directory)
    return count


def key_chunks(
    directory: str, prefix: tuple[str, ...], suffix: str, digest_len: int, hashed: bool
) -> Iterator[list[NonEmptySafeStrTuple]]:
    """Every key under ``directory``, keys prefixed by ``prefix``, a list at a time
    (a memoized directory's list is the memo's: read it, never change it)."""
    for strings, found, entry in _batches(directory, prefix, suffix, digest_len, hashed):
        if entry is not None:
            yield entry.keys(strings)
            continue
        for i in range(0, len(found), _KEYS_AT_ONCE):
            yield trusted_keys(strings, decoded(found[i : i + _KEYS_AT_ONCE]))
    MEMO.walked(directory)


def iter_keys(
    directory: str, prefix: tuple[str, ...], suffix: str, digest_len: int, hashed: bool
) -> Iterator[NonEmptySafeStrTuple]:
    """Every key under ``directory``, keys prefixed by ``prefix``."""
    return chain.from_iterable(key_chunks(directory, prefix, suffix, digest_len, hashed))


def walk_keys(
    directory: str,
    prefix: tuple[str, ...],
    suffix: str,
    digest_len: int,
    hashed: bool,
    with_timestamps: bool,
) -> Listed:
    """(key, mtime or None) of every key under ``directory``, keys prefixed by ``prefix``."""
    if not with_timestamps:
        return zip(iter_keys(directory, prefix, suffix, digest_len, hashed), repeat(None))
    return _stamped(directory, prefix, suffix, digest_len, hashed)


def _stamped(
    directory: str, prefix: tuple[str, ...], suffix: str, digest_len: int, hashed: bool
) -> Iterator[tuple[NonEmptySafeStrTuple, float]]:
    """(key, mtime) of every key under ``directory``, keys prefixed by ``prefix``."""
    trusted = trusted_key
    for path, bucket, files, dirs in _levels(directory, hashed, list_dir):
        for i in range(0, len(files), _CHUNK):
            for name, component in _named(files[i : i + _CHUNK], digest_len, bucket, suffix):
                try:
                    ts = os.lstat(f"{path}/{name}").st_mtime
                except FileNotFoundError:
                    continue  # deleted since the listing
                yield trusted((*prefix, component)), ts
        del files
        for sub, component in _subdirs(path, dirs, digest_len, bucket):
            yield from _stamped(sub, (*prefix, component), suffix, digest_len, hashed)


def _named(
    names: list[str], digest_len: int, bucket: str | None, suffix: str
) -> Iterable[tuple[str, str]]:
    """(name, component) of each of ``names`` that is a key's file, in order.

    One check of all the names when every one is a key's (the usual case);
    otherwise each name on its own, to tell which ones are.
    """
    found = unsign_names(names, digest_len, bucket, suffix)
    if len(found) == len(names):
        return zip(names, found, strict=True)
    one = [(name, unsign_names([name], digest_len, bucket, suffix)) for name in names]
    return [(name, found[0]) for name, found in one if found]


def planted_link(base: str, path: str) -> str | None:
    """The first directory on ``path`` below ``base`` that is a symlink, or None.

    No key lives under a symlink: listings never follow one, so reads take
    such a key for absent, and writes refuse it (they would land wherever
    the link points). One lstat per directory level, none for a key of one
    component. A link planted between this check and the rename is not
    caught: that takes a racing adversary, not a stray link.
    """
    cut = path.find("/", len(base) + 1)
    while cut != -1:
        try:
            mode = os.lstat(path[:cut]).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None  # nothing below exists yet
        if stat.S_ISLNK(mode):
            return path[:cut]
        cut = path.find("/", cut + 1)
    return None
