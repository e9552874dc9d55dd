"""Walking a FileDirDict tree: the keys, their count, planted symlinks.

Each directory is read whole with ``concurrency.listing.list_dir`` (a
snapshot on Linux), so a key present for the whole walk is found exactly
once and a key added or removed during it at most once, also on tmpfs where
a rename over a file moves its entry in readdir order. Memory: the listing
of each directory on the path from the base to the current one.

Names starting with '@' are ours (temp files, metadata); names that do not
unsign are junk left by others; symlinks are never keys and never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from ..concurrency.listing import list_dir
from ..engine.keys import NonEmptySafeStrTuple, trusted_key, unsign_component

__all__ = ["count_keys", "planted_link", "walk_keys"]

Listed = Iterator[tuple[NonEmptySafeStrTuple, float | None]]


def count_keys(directory: str, suffix: str, digest_len: int) -> int:
    """The number of keys stored under ``directory``."""
    listing = list_dir(directory)
    if listing is None:
        return 0
    files, dirs = listing
    cut = -len(suffix)
    n = 0
    for name in files:
        if (
            name[0] != "@"
            and name.endswith(suffix)
            and unsign_component(name[:cut], digest_len) is not None
        ):
            n += 1
    for name in dirs:
        if name[0] != "@" and unsign_component(name, digest_len) is not None:
            n += count_keys(f"{directory}/{name}", suffix, digest_len)
    return n


def walk_keys(
    directory: str,
    prefix: tuple[str, ...],
    suffix: str,
    digest_len: int,
    with_timestamps: bool,
) -> Listed:
    """(key, mtime or None) of every key under ``directory``, keys prefixed by ``prefix``."""
    listing = list_dir(directory)
    if listing is None:
        return
    files, dirs = listing
    del listing
    cut = -len(suffix)
    trusted = trusted_key
    for name in files:
        if name[0] == "@" or not name.endswith(suffix):
            continue
        component = unsign_component(name[:cut], digest_len)
        if component is None:
            continue
        ts: float | None = None
        if with_timestamps:
            try:
                ts = os.lstat(f"{directory}/{name}").st_mtime
            except FileNotFoundError:
                continue  # deleted since the listing
        yield trusted((*prefix, component)), ts
    del files
    for name in dirs:
        if name[0] == "@":
            continue
        component = unsign_component(name, digest_len)
        if component is not None:
            yield from walk_keys(
                f"{directory}/{name}", (*prefix, component), suffix, digest_len, with_timestamps
            )


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
