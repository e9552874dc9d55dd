"""Helpers of the listing memo adversary tests (test_adversary_memo13*.py): an oracle
that shares no code with the walk, and listings checked against it."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from typing import Any

from _listing_memo import fresh
from persidict import FileDirDict
from persidict.backends import file_walk

_SAFE = re.compile(r"[A-Za-z0-9()_\-~.=]+")
Keys = list[tuple[str, ...]]


def _component(stem: str, digest_len: int) -> str | None:
    """The key component ``stem`` names, or None (the oracle's own digest check)."""
    if digest_len:
        comp, sep, dig = stem.rpartition("_")
        want = base64.b32encode(hashlib.md5(comp.encode()).digest()).decode().lower()
        if not sep or dig != want[:digest_len]:
            return None
    else:
        comp = stem
    return comp if _SAFE.fullmatch(comp) else None


def oracle(base: str, suffix: str = ".pkl", digest_len: int = 4) -> Keys:
    """The keys under ``base``, found without file_walk, listing or the memo."""
    out: Keys = []

    def walk(path: str, prefix: tuple[str, ...]) -> None:
        try:
            names = os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            try:
                mode = os.lstat(f"{path}/{name}").st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISREG(mode) and name.endswith(suffix):
                comp = _component(name[: len(name) - len(suffix)], digest_len)
                if comp is not None:
                    out.append((*prefix, comp))
            elif stat.S_ISDIR(mode):
                comp = _component(name, digest_len)
                if comp is not None:
                    walk(f"{path}/{name}", (*prefix, comp))

    walk(base, ())
    return sorted(out)


def listed(d: FileDirDict[Any]) -> Keys:
    """The keys of ``d`` three times (miss, hit, hit): the same each time, no repeats."""
    runs = [[k.strings for k in d] for _ in range(3)]
    counts = [len(d) for _ in range(2)]
    for run in runs:
        assert len(run) == len(set(run)), "a key listed twice"
        assert sorted(run) == sorted(runs[0])
    assert counts == [len(runs[0])] * 2
    return sorted(runs[0])


def agrees(d: FileDirDict[Any], suffix: str = ".pkl", digest_len: int = 4) -> Keys:
    keys = listed(d)
    assert keys == oracle(d.base_dir, suffix, digest_len)
    assert keys == sorted(k.strings for k in fresh(d))
    return keys


def name_of(key: tuple[str, ...], suffix: str = ".pkl", digest_len: int = 4) -> str:
    return file_walk.path_parts(key, digest_len, suffix, False)[-1]
