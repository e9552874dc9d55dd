"""``store.evict(...)``: the method form of ``persidict.evict`` (issue 14.2)."""

from __future__ import annotations

import os
import pathlib

import pytest

from persidict import FileDirDict, LocalDict, MutationPolicyError


def test_method_removes_oldest_first_on_files(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    for i in range(5):
        d[f"k{i}"] = i
    for i in range(5):  # give the entries distinct ages: k0 oldest
        for name in os.listdir(tmp_path):
            if name.startswith(f"k{i}_"):
                stamp = 1_000_000 + i * 100
                os.utime(tmp_path / name, (stamp, stamp))
    report = d.evict(max_items=2)
    assert sorted(k.strings[0] for k in report.removed) == ["k0", "k1", "k2"]
    assert sorted(d) == [("k3",), ("k4",)]


def test_method_older_than_keeps_recent_entries() -> None:
    d = LocalDict()
    d["new"] = 1
    assert d.evict(older_than=3600).removed == []
    assert d["new"] == 1


def test_method_checks_its_arguments_and_the_policy() -> None:
    d = LocalDict()
    with pytest.raises(TypeError, match="max_items"):
        d.evict(max_items=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="older_than"):
        d.evict(older_than=-1)
    frozen = LocalDict(append_only=True)
    frozen["a"] = 1
    with pytest.raises(MutationPolicyError):
        frozen.evict(max_items=0)
    assert frozen["a"] == 1
