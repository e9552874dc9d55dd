"""Walking a FileDirDict tree: the keys and their count.

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
from collections.abc import Iterator

from ..concurrency.listing import list_dir
from ..engine.keys import NonEmptySafeStrTuple, unsign_component

__all__ = ["count_keys", "walk_keys"]

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
    trusted = NonEmptySafeStrTuple._trusted
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
