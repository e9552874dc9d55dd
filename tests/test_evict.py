"""evict: oldest first, and never undoing a write that races with it.

Ages are set on disk (os.utime), read around the store; the races are
injected at the two points between the listing and the delete.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from persidict import FileDirDict, LocalDict, evict
from persidict.cli import main
from persidict.memoization import LEASE_PREFIX


def _age(store: FileDirDict, key: str, seconds_ago: float) -> None:
    """Set the mtime of ``key``'s file (found on disk, around the store)."""
    for dirpath, dirnames, filenames in os.walk(store.base_dir):
        dirnames[:] = [d for d in dirnames if d != "@persidict"]
        for name in filenames:
            if name.startswith(key + "_") or name == key + ".pkl":
                t = time.time() - seconds_ago
                os.utime(os.path.join(dirpath, name), (t, t))
                return
    raise AssertionError(f"no file for {key}")


@pytest.fixture
def store(tmp_path: pathlib.Path) -> FileDirDict:
    s = FileDirDict(base_dir=str(tmp_path / "store"))
    for i in range(10):
        s[f"k{i}"] = i
        _age(s, f"k{i}", 1000 - i)  # k0 oldest
    return s


def test_older_than_removes_only_old_entries(store: FileDirDict) -> None:
    store["fresh"] = "new"
    report = evict(store, older_than=995.5)
    assert sorted(k.strings[0] for k in report.removed) == ["k0", "k1", "k2", "k3", "k4"]
    assert sorted(k.strings[0] for k in store) == ["fresh", "k5", "k6", "k7", "k8", "k9"]


def test_max_items_removes_the_oldest(store: FileDirDict) -> None:
    report = evict(store, max_items=4)
    assert [k.strings[0] for k in report.removed] == ["k0", "k1", "k2", "k3", "k4", "k5"]
    assert sorted(k.strings[0] for k in store) == ["k6", "k7", "k8", "k9"]
    assert evict(store, max_items=0, older_than=None).removed  # the rest, all old


def test_a_rewrite_after_the_listing_survives(
    store: FileDirDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = store.keys_and_timestamps

    def list_then_rewrite() -> Iterator[Any]:
        listed = list(listing())
        # Another process rewrites k2 after the listing, before any delete.
        code = (f"from persidict import FileDirDict; "
                f"FileDirDict(base_dir={store.base_dir!r})['k2'] = 'rewritten'")
        subprocess.run([sys.executable, "-c", code], check=True)
        return iter(listed)

    monkeypatch.setattr(store, "keys_and_timestamps", list_then_rewrite)
    report = evict(store, older_than=0.0)
    assert store["k2"] == "rewritten"
    assert [k.strings[0] for k in report.kept] == ["k2"]
    assert sorted(k.strings[0] for k in store) == ["k2"]


def test_a_rewrite_after_the_etag_read_survives(
    store: FileDirDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = store.timestamp
    other = FileDirDict(base_dir=store.base_dir)

    def stamp_then_rewrite(key: Any) -> float:
        ts = stamp(key)  # the old version's time: the delete goes ahead, against its etag
        if key == ("k7",):
            other["k7"] = "rewritten"
        return ts

    monkeypatch.setattr(store, "timestamp", stamp_then_rewrite)
    report = evict(store, max_items=0)
    assert other["k7"] == "rewritten"
    assert [k.strings[0] for k in report.kept] == ["k7"]
    assert len(report.removed) == 9


def test_leases_are_neither_removed_nor_counted() -> None:
    s = LocalDict()
    s[(LEASE_PREFIX, "f", "d")] = "held"
    s["x"] = 1
    report = evict(s, max_items=0, now=time.time() + 10)
    assert report.examined == 1
    assert (LEASE_PREFIX, "f", "d") in s


def test_fresh_entries_are_kept_even_beyond_max_items() -> None:
    s = LocalDict()
    s["x"] = 1
    assert evict(s, max_items=0).removed == [] and "x" in s


def test_cli_evict(store: FileDirDict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evict", store.base_dir, "--older-than", "997.5", "--max-items", "5"]) == 0
    out = capsys.readouterr().out
    assert "removed 5" in out, out
    assert sorted(k.strings[0] for k in store) == ["k5", "k6", "k7", "k8", "k9"]
    assert main(["evict", store.base_dir, "--older-than", "-1"]) == 2


def test_bad_limits_are_refused(store: FileDirDict) -> None:
    with pytest.raises(TypeError):
        evict(store, max_items=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        evict(store, older_than=-1)
    assert len(store) == 10


def test_s3_evicts_the_oldest_and_keeps_a_rewrite(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 reports an object's time to the second in HEAD, to the millisecond in listings.
    from _s3_plugin import BUCKET, fresh_prefix
    from persidict import BasicS3Dict
    from s3_server import REGION

    s3 = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                     endpoint_url=s3_server.endpoint_url)
    for i in range(4):
        s3[f"k{i}"] = i
        time.sleep(1.1)  # distinct seconds, and all older than a second at the eviction
    listing = s3.keys_and_timestamps

    def list_then_rewrite() -> Iterator[Any]:
        listed = list(listing())
        s3["k0"] = "rewritten"  # the oldest, after the listing
        return iter(listed)

    monkeypatch.setattr(s3, "keys_and_timestamps", list_then_rewrite)
    report = evict(s3, max_items=1)
    assert [k.strings[0] for k in report.removed] == ["k1", "k2"]
    assert [k.strings[0] for k in report.kept] == ["k0"]
    assert sorted(k.strings[0] for k in s3) == ["k0", "k3"] and s3["k0"] == "rewritten"
