"""Helpers of the walk_memo tests (test_listing_memo*.py): a self-checking memo,
a tmpfs directory, a counter of checked names, a listing without the memo."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.backends import file_walk, walk_memo
from persidict.backends.walk_memo import Entry, Key, ListingMemo
from persidict.concurrency import listing
from persidict.engine.names import unsign_runs


class Checked(ListingMemo):
    """A memo that re-parses the bytes of every hit and asserts the entry is that parse."""

    def __init__(self, budget: int = walk_memo.BUDGET) -> None:
        super().__init__(budget)
        self.hits = 0

    def get(self, key: Key, raw: bytes) -> Entry | None:
        entry = super().get(key, raw)
        if entry is not None:
            self.hits += 1
            directory, suffix, digest_len, _ = key
            parsed = listing._parse(raw, directory)
            assert parsed is not None
            files, dirs = parsed
            assert entry.found == unsign_runs(files, [(None, len(files))], digest_len, suffix)
            assert entry.subdirs == list(file_walk._subdirs(directory, dirs, digest_len, None))
        return entry


def scratch() -> Iterator[str]:
    """A fresh directory on tmpfs (where there is one), removed afterwards."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(dir=parent, prefix="persidict-memo-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many names were checked (unsign_runs) since the list was last cleared."""
    counted: list[int] = []

    def counting(names: list[bytes], *args: Any) -> list[bytes]:
        counted.append(len(names))
        return unsign_runs(names, *args)

    monkeypatch.setattr(file_walk, "unsign_runs", counting)
    return counted


def fresh(d: FileDirDict[Any]) -> list[Any]:
    """The keys of ``d`` as a listing without the memo finds them."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(file_walk, "MEMO", ListingMemo(0))
        return sorted(d)


def mutator(base: str, worker: int, rounds: int) -> None:
    """Create, replace and delete keys k500.. (k0..k499 and the 'g' level stay)."""
    d = FileDirDict(base_dir=base, durable=False)
    for r in range(rounds):
        i = 500 + (worker * 7919 + r * 31) % 1000
        d[f"k{i}"] = r  # a replace (new inode) or a create
        d.pop(f"k{(i + 500) % 1000 + 500}", None)
        d[f"n{worker}_{r}"] = r


# Fixtures of the memo tests (a plugin of tests/conftest.py).
@pytest.fixture
def shm() -> Iterator[str]:
    """A fresh directory on tmpfs, removed afterwards."""
    yield from scratch()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The names each fresh parse checks (count_parses)."""
    return count_parses(monkeypatch)


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> Checked:
    """A self-checking memo table in place of the process's own."""
    table = Checked()
    monkeypatch.setattr(file_walk, "MEMO", table)
    return table
