"""Symlinks planted inside base_dir (issue 9.5).

A symlink is never a key: listings do not follow one, so every API must
agree (get, in, timestamp, pop, discard, len, keys), and no write may follow
one out of the store.
"""

from __future__ import annotations

import os
import pathlib
import pickle

import pytest

from persidict import BackendError, FileDirDict, NonEmptySafeStrTuple
from persidict.backends import file_reads as files


def _file_of(d: FileDirDict, key: tuple[str, ...]) -> pathlib.Path:
    return pathlib.Path(d.byte_store.path(NonEmptySafeStrTuple(key)))


@pytest.fixture(params=["openat2", "lstat", "linked_base"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """openat2 checks the whole path at once; without it (old kernels, other
    systems) or when base_dir itself is reached through a symlink, reads
    lstat each directory level instead."""
    if request.param == "openat2" and files.open_no_symlinks is None:
        pytest.skip("openat2 unavailable here")
    if request.param == "lstat":
        monkeypatch.setattr(files, "open_no_symlinks", None)
    return str(request.param)


def _store(tmp_path: pathlib.Path, mode: str) -> tuple[FileDirDict, pathlib.Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "store"
    if mode == "linked_base":  # the user's own symlink, above the store: fine
        (tmp_path / "real").mkdir()
        base.symlink_to(tmp_path / "real", target_is_directory=True)
    return FileDirDict(base_dir=str(base)), outside


def _assert_absent(d: FileDirDict, key: tuple[str, ...]) -> None:
    assert key not in d
    with pytest.raises(KeyError):
        d[key]
    assert d.get(key, "default") == "default"
    with pytest.raises(KeyError):
        d.timestamp(key)
    assert key not in {k.strings for k in d}


def test_directory_symlink_pointing_outside(tmp_path: pathlib.Path, mode: str) -> None:
    d, outside = _store(tmp_path, mode)
    d[("a", "k")] = "inside"
    d[("b",)] = "other"
    real_dir = _file_of(d, ("a", "k")).parent
    # An outside hand swaps the key's directory for a link to a look-alike.
    (outside / _file_of(d, ("a", "k")).name).write_bytes(
        pickle.dumps("outside")
    )
    for child in real_dir.iterdir():
        child.unlink()
    real_dir.rmdir()
    real_dir.symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())

    _assert_absent(d, ("a", "k"))
    assert len(d) == 1 and [k.strings for k in d] == [("b",)]
    with pytest.raises(BackendError, match="symlink"):
        d[("a", "new")] = "must not leave the store"
    with pytest.raises(BackendError, match="symlink"):
        d[("a", "k")] = "must not leave the store"
    with pytest.raises(KeyError):
        del d[("a", "k")]
    assert d.pop(("a", "k"), None) is None
    assert not d.discard(("a", "k"))
    with pytest.raises(BackendError, match="symlink"):
        d.get_subdict("a")  # a sub-store rooted in the link would write outside
    d.clear()
    assert sorted(p.name for p in outside.iterdir()) == before
    assert pickle.loads((outside / before[0]).read_bytes()) == "outside"
    assert len(d) == 0


def test_nested_directory_symlink(tmp_path: pathlib.Path, mode: str) -> None:
    """The link two levels down, where the lstat of every level matters."""
    d, outside = _store(tmp_path, mode)
    d[("a", "b", "c", "k")] = 1
    link = _file_of(d, ("a", "b", "c", "k")).parent.parent  # the directory of ("a", "b")
    link.rename(outside / "moved")
    link.symlink_to(outside / "moved", target_is_directory=True)
    _assert_absent(d, ("a", "b", "c", "k"))
    with pytest.raises(BackendError, match="symlink"):
        d[("a", "b", "c", "x")] = 2
    assert [p.name for p in (outside / "moved").iterdir()] == [
        _file_of(d, ("a", "b", "c", "k")).parent.name
    ]
    assert os.listdir(outside / "moved" / _file_of(d, ("a", "b", "c", "k")).parent.name) == [
        _file_of(d, ("a", "b", "c", "k")).name
    ]


def test_file_symlink_at_a_key_path(tmp_path: pathlib.Path, mode: str) -> None:
    d, outside = _store(tmp_path, mode)
    d["neighbour"] = 0
    target = outside / "value.pkl"
    target.write_bytes(pickle.dumps("outside"))
    for key in (("k",), ("sub", "k")):
        path = _file_of(d, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        _assert_absent(d, key)
        assert len(d) == 1 and [k.strings for k in d] == [("neighbour",)]
        assert d.pop(key, "gone") == "gone"
        assert not d.discard(key)
        assert path.is_symlink()  # not ours to remove: `check` reports it
        assert d.setdefault(key, "mine") == "mine"  # the key was absent
        assert not path.is_symlink() and d[key] == "mine"
        assert pickle.loads(target.read_bytes()) == "outside"
        del d[key]
    assert len(d) == 1


def test_check_reports_planted_symlinks_as_stray(tmp_path: pathlib.Path, mode: str) -> None:
    d, outside = _store(tmp_path, mode)
    d[("a", "k")] = 1
    file_link = _file_of(d, ("f",))
    file_link.symlink_to(outside / "missing.pkl")
    dir_link = _file_of(d, ("dirlink", "k")).parent
    dir_link.symlink_to(outside, target_is_directory=True)
    report = d.check()
    stray = {f.path for f in report.findings if f.kind == "stray"}
    assert {str(file_link), str(dir_link)} <= stray
    assert os.path.islink(file_link) and os.path.islink(dir_link)
