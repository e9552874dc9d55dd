"""Conformance: every store and wrapper stack passes ``persidict.testing``.

``PersiDictConformance`` (the whole public API against a plain dict) runs on
every kind of ``test_conformance_stacks.KINDS``, with the files or bucket
objects under each stack as ground truth. Below it, what the class cannot
say about every store: a spawned child, the FileDirDict layout, EmptyDict,
and several formats sharing one location (flags, results and exceptions are
in test_conformance_flags.py).
"""

from __future__ import annotations

import functools
import multiprocessing
import pathlib
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from conftest import (
    assert_state,
    decode_file,
    make_store,
    path_for_key,
    read_ground_truth,
    store_layout,
)
from persidict import (
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    AppendOnlyDictCached,
    EmptyDict,
    FileDirDict,
    LocalDict,
    PersiDict,
)
from persidict.testing import PersiDictConformance
from test_conformance_stacks import KINDS, Kind, read_around


def _conformance_class(name: str, kind: Kind) -> type[PersiDictConformance]:
    """A ``Test...`` class running the whole conformance suite on one kind of store."""

    class Conformance(PersiDictConformance):
        pickle_shares_data = kind.pickle_shares_data

        def make_store(self, tmp_path: Any, **params: Any) -> PersiDict:
            return kind.make(tmp_path, **params)

        def ground_truth(self, store: PersiDict) -> dict[tuple[str, ...], Any] | None:
            return read_around(store)

    for test_name, reason in kind.known_failures:
        setattr(Conformance, test_name, _xfail(getattr(PersiDictConformance, test_name), reason))
    Conformance.__name__ = Conformance.__qualname__ = f"Test_{name}"
    return Conformance


def _xfail(test: Callable[..., None], reason: str) -> Callable[..., None]:
    """``test`` marked xfail(strict=True) for one class only (the mark sits on a copy)."""

    @functools.wraps(test)
    def copy(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    return pytest.mark.xfail(strict=True, reason=reason)(copy)


for _name, _kind in KINDS.items():
    globals()[f"Test_{_name}"] = _conformance_class(_name, _kind)


def test_aoc_long_key_is_readable_or_refused(tmp_path: pathlib.Path) -> None:
    """A key main accepts but the file cache cannot name is refused whole (issue 10.3)."""
    d = AppendOnlyDictCached(
        main_dict=LocalDict(append_only=True),
        data_cache=FileDirDict(base_dir=str(tmp_path), append_only=True),
    )
    key = "k" * 250
    try:
        d[key] = 1
    except ValueError:
        assert len(d) == 0  # refused whole: fine
        return
    assert d[key] == 1


def test_pytest_and_hypothesis_stay_optional() -> None:
    """Only ``persidict.testing`` imports them: ``import persidict`` works without."""
    code = (
        "import sys, persidict\n"
        "from persidict import FileDirDict, LocalDict, WriteOnceDict, S3Dict\n"
        "bad = [m for m in ('pytest', 'hypothesis', 'persidict.testing') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import persidict.testing\n"
        "assert 'hypothesis' in sys.modules and 'pytest' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def keyset(d: PersiDict) -> set[tuple[str, ...]]:
    return {tuple(k) for k in d}


def _child_main(pickled: bytes, queue: Any) -> None:
    try:
        d = pickle.loads(pickled)
        seen = {tuple(k): v for k, v in d.items()}
        d["from_child"] = "hello"
        d.transform_item("counter", transformer=lambda v: v + 1)
        queue.put(("ok", seen))
    except BaseException as exc:  # report anything to the parent
        queue.put(("error", repr(exc)))


@pytest.mark.parametrize("name", ["file", "file_json"])
def test_file_store_in_spawned_child(name: str, tmp_path: Any) -> None:
    d = make_store(name, tmp_path)
    d["a"] = 1
    d["counter"] = 10
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(pickle.dumps(d), queue))
    proc.start()
    try:
        status, payload = queue.get(timeout=120)
    finally:
        proc.join(timeout=120)
    assert status == "ok", payload
    assert payload == {("a",): 1, ("counter",): 10}
    assert proc.exitcode == 0
    assert_state(d, {("a",): 1, ("counter",): 11, ("from_child",): "hello"})


# ---------------------------------------------------------------------------
# FileDirDict: on-disk layout, read around the store
# ---------------------------------------------------------------------------


def test_file_layout_matches_design(file_store: FileDirDict) -> None:
    d = file_store
    data = {("a",): 1, ("b", "c"): [2], ("b", "d", "e"): {"x": "y"}, ("Up",): "up"}
    for k, v in data.items():
        d[k] = v
    base, fmt, _ = store_layout(d)
    for k, v in data.items():
        p = path_for_key(d, k)
        assert p.is_file(), p
        assert decode_file(p, fmt) == v
    assert read_ground_truth(d) == data
    assert d.base_dir == str(base.resolve()) or d.base_dir == str(base)
    for k in data:  # "POSIX timestamp of the underlying file"
        assert d.timestamp(k) == pytest.approx(path_for_key(d, k).stat().st_mtime, abs=0.01)


def test_file_written_around_the_store_is_read(file_store: FileDirDict) -> None:
    """Interchangeable with directories written by other tools (design: 0.309 layout)."""
    import jsonpickle

    d = file_store
    _, fmt, _ = store_layout(d)
    key = ("outside", "written")
    p = path_for_key(d, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    value = {"made": "by hand", "n": [1, 2, 3]}
    if fmt == "pkl":
        p.write_bytes(pickle.dumps(value))
    else:
        p.write_text(jsonpickle.encode(value))
    assert keyset(d) == {key}
    assert d[key] == value
    assert d.get_subdict("outside")["written"] == value


def test_file_clear_removes_files(file_store: FileDirDict) -> None:
    d = file_store
    for i in range(4):
        d["x", "y", f"k{i}"] = i
    d.clear()
    assert read_ground_truth(d) == {}


# ---------------------------------------------------------------------------
# EmptyDict
# ---------------------------------------------------------------------------


def test_empty_dict() -> None:
    d = EmptyDict()
    d["a"] = 1
    assert len(d) == 0
    assert "a" not in d
    assert list(d.keys()) == []
    assert d.get("a", 5) == 5
    assert d.setdefault("a", 3) == 3
    assert "a" not in d
    assert d.discard("a") is False
    assert d.delete_if_exists("a") is False
    assert d.random_key() is None
    with pytest.raises(KeyError):
        d["a"]
    with pytest.raises(KeyError):
        d.timestamp("a")
    assert isinstance(d.get_subdict("x"), EmptyDict)
    r = d.get_item_if("a", condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied is True
    assert r.actual_etag is ITEM_NOT_AVAILABLE and r.new_value is ITEM_NOT_AVAILABLE
    r = d.set_item_if("a", value=1, condition=ETAG_HAS_CHANGED, expected_etag="e")
    assert r.condition_was_satisfied is True
    assert "a" not in d
    r = d.discard_if("a", condition=ETAG_IS_THE_SAME, expected_etag="e")
    assert r.condition_was_satisfied is False
    assert r.new_value is ITEM_NOT_AVAILABLE
    called = []
    r = d.transform_item("a", transformer=lambda v: called.append(v) or 1)
    assert called == []
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert pickle.loads(pickle.dumps(d)).get_params() == d.get_params()


# ---------------------------------------------------------------------------
# Several serialization formats in one location
# ---------------------------------------------------------------------------


def _sibling(store: PersiDict, fmt: str) -> PersiDict:
    params = dict(store.get_params())
    params["serialization_format"] = fmt
    return type(store)(**params)


@pytest.mark.parametrize("name", ["file", "file_nodigest", "memory"])
def test_formats_share_a_location_without_interference(name: str, tmp_path: Any) -> None:
    """pkl and json views of one location are separate namespaces (OverlappingMultiDict)."""
    pkl = make_store(name, tmp_path)
    js = _sibling(pkl, "json")
    pkl["a"] = "from pkl"
    pkl["p", "q"] = 1
    js["a"] = "from json"
    assert pkl["a"] == "from pkl" and js["a"] == "from json"
    assert keyset(pkl) == {("a",), ("p", "q")}
    assert keyset(js) == {("a",)}
    assert len(js) == 1
    js.clear()
    assert keyset(pkl) == {("a",), ("p", "q")}
    assert pkl["a"] == "from pkl"
    assert len(js) == 0
    del pkl["a"]
    js["b"] = 2
    pkl.clear()
    assert keyset(js) == {("b",)}


def test_text_format(tmp_path: Any) -> None:
    """Other formats store str values as plain text files (interchangeable layout)."""
    d = FileDirDict(base_dir=str(tmp_path / "t"), serialization_format="txt",
                    base_class_for_values=str)
    d["a"] = "hello\nworld ✓"
    d["x", "y"] = ""
    p = path_for_key(d, ("a",))
    assert p.suffix == ".txt"
    assert p.read_text(encoding="utf-8") == "hello\nworld ✓"
    assert read_ground_truth(d) == {("a",): "hello\nworld ✓", ("x", "y"): ""}
    with pytest.raises(TypeError):
        d["b"] = 5
    q = path_for_key(d, ("by", "hand"))
    q.parent.mkdir(parents=True)
    q.write_text("plain", encoding="utf-8")
    assert d["by", "hand"] == "plain"
    assert len(d) == 3


def test_text_format_requires_str_values(tmp_path: Any) -> None:
    try:
        d = FileDirDict(base_dir=str(tmp_path / "t"), serialization_format="txt")
    except (ValueError, TypeError):
        return  # rejecting the configuration up front is fine
    with pytest.raises(TypeError):
        d["a"] = 5
    assert len(d) == 0
