"""A cache's failure after main committed never turns the success into an error.

Issue 9.1 (cache mirroring): the cached wrappers write main first and mirror
into their caches after. A cache that raises there (full disk, a lock
timeout, a key it cannot hold) used to fail a call whose write had already
taken effect, so the caller was told "not done" about a done write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persidict import (
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    AppendOnlyDictCached,
    FileDirDict,
    LocalDict,
    MutableDictCached,
)
from test_cache_records import FlakyCache, cached_entry


def test_append_only_write_succeeds_when_cache_fails(tmp_path: Path) -> None:
    main = FileDirDict(base_dir=tmp_path / "main", append_only=True)
    cache = FlakyCache(append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=cache)
    cache.broken = True
    d["k"] = "v"  # committed to main: must not raise
    r = d.setdefault_if("k2", default_value="w", condition=ETAG_IS_THE_SAME,
                        expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied
    assert main["k"] == "v" and main["k2"] == "w"
    assert d["k"] == "v"  # a read falls back to main
    cache.broken = False
    assert d["k"] == "v" and cached_entry(cache, "k") == (main.etag("k"), "v")  # filled


def test_mutable_writes_and_deletes_succeed_when_caches_fail(tmp_path: Path) -> None:
    main = FileDirDict(base_dir=tmp_path / "main")
    cache, etags = FlakyCache(), FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=etags)
    d["k"] = 1
    assert d["k"] == 1
    cache.broken = etags.broken = True
    d["k"] = 2
    assert d.transform_item("k", transformer=lambda v: v + 1).new_value == 3
    assert main["k"] == 3 and d["k"] == 3
    del d["k"]  # the cache cannot forget it: the delete still happened
    assert "k" not in main
    assert d.get("k") is None and "k" not in d
    cache.broken = etags.broken = False
    assert d.get("k") is None


def test_failed_mirror_never_serves_a_stale_value(tmp_path: Path) -> None:
    """A mirror that failed must not leave a value to be served for another version.

    Etags of FileDirDict are content hashes: once main's content returns to
    an older one, an entry left pairing that older etag with a newer value
    would match again and the newer value would be served for it.
    """
    main = FileDirDict(base_dir=tmp_path / "main")
    cache = FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = "A"
    assert d["k"] == "A"  # the cache holds A and its etag
    cache.broken = True
    d["k"] = "B"  # committed to main; the cache write fails
    cache.broken = False
    main["k"] = "A"  # behind the wrapper: main's etag is A's again
    assert d["k"] == "A"
    main["k"] = "C"
    assert d["k"] == "C"


@pytest.mark.parametrize("op", ["get", "in"])
def test_reads_survive_a_failing_cache(tmp_path: Path, op: str) -> None:
    main = FileDirDict(base_dir=tmp_path / "main", append_only=True)
    main["k"] = "v"
    cache = FlakyCache(append_only=True)
    cache.broken = True
    d = AppendOnlyDictCached(main_dict=main, data_cache=cache)
    assert (d["k"] == "v") if op == "get" else ("k" in d)
