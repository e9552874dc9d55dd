"""Conformance: every store and wrapper stack passes ``persidict.testing``.

``PersiDictConformance`` (the whole public API against a plain dict) runs on
every kind of ``test_conformance_stacks.KINDS``, with the files or bucket
objects under each stack as ground truth. Below it, what is not about one
store: flags, results, exceptions, the FileDirDict layout, EmptyDict, and
several formats sharing one location.
"""

from __future__ import annotations

import copy
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
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
    AlwaysRetrieveFlag,
    AnyETagFlag,
    AppendOnlyDictCached,
    BackendError,
    ConcurrencyConflictError,
    ConditionalOperationResult,
    DeleteCurrentFlag,
    EmptyDict,
    ETagHasChangedFlag,
    ETagIsTheSameFlag,
    FileDirDict,
    IfETagChangedRetrieveFlag,
    ItemNotAvailableFlag,
    KeepCurrentFlag,
    LocalDict,
    MutationPolicyError,
    NeverRetrieveFlag,
    NonEmptySafeStrTuple,
    OperationResult,
    PersiDict,
    SafeStrTuple,
    ValueNotRetrievedFlag,
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


FLAGS = {
    "KEEP_CURRENT": (KEEP_CURRENT, KeepCurrentFlag),
    "DELETE_CURRENT": (DELETE_CURRENT, DeleteCurrentFlag),
    "ANY_ETAG": (ANY_ETAG, AnyETagFlag),
    "ETAG_IS_THE_SAME": (ETAG_IS_THE_SAME, ETagIsTheSameFlag),
    "ETAG_HAS_CHANGED": (ETAG_HAS_CHANGED, ETagHasChangedFlag),
    "ITEM_NOT_AVAILABLE": (ITEM_NOT_AVAILABLE, ItemNotAvailableFlag),
    "VALUE_NOT_RETRIEVED": (VALUE_NOT_RETRIEVED, ValueNotRetrievedFlag),
    "ALWAYS_RETRIEVE": (ALWAYS_RETRIEVE, AlwaysRetrieveFlag),
    "NEVER_RETRIEVE": (NEVER_RETRIEVE, NeverRetrieveFlag),
    "IF_ETAG_CHANGED": (IF_ETAG_CHANGED, IfETagChangedRetrieveFlag),
}



def keyset(d: PersiDict) -> set[tuple[str, ...]]:
    return {tuple(k) for k in d}


def test_safe_str_tuple() -> None:
    t = SafeStrTuple("a", "b")
    assert t.strings == ("a", "b") == t.str_chain
    assert len(t) == 2 and t[0] == "a" and list(t) == ["a", "b"]
    assert tuple(t) == ("a", "b")
    assert t == SafeStrTuple("a", "b") and hash(t) == hash(SafeStrTuple("a", "b"))
    assert t != SafeStrTuple("b", "a")
    assert SafeStrTuple(["a", "b"]) == t
    assert SafeStrTuple(t) == t
    assert len(SafeStrTuple()) == 0
    n = NonEmptySafeStrTuple("a", "b")
    assert isinstance(n, SafeStrTuple) and tuple(n) == ("a", "b")
    assert {t: 1}[SafeStrTuple("a", "b")] == 1
    for bad in (("a/b",), ("",), ("a", 1), ("..",)):
        with pytest.raises((ValueError, TypeError)):
            SafeStrTuple(*bad)


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
# Flags, results and exceptions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FLAGS))
def test_flags_are_singletons(name: str) -> None:
    flag, cls = FLAGS[name]
    assert isinstance(flag, cls)
    assert cls() is flag
    assert pickle.loads(pickle.dumps(flag)) is flag
    assert copy.copy(flag) is flag
    assert copy.deepcopy(flag) is flag
    assert flag == flag
    hash(flag)
    others = [f for n, (f, _) in FLAGS.items() if n != name]
    assert all(flag is not o and flag != o for o in others)


def test_condition_and_retrieve_flag_hierarchy() -> None:
    from persidict import ETagConditionFlag, Joker, RetrieveValueFlag

    for f in (ANY_ETAG, ETAG_IS_THE_SAME, ETAG_HAS_CHANGED):
        assert isinstance(f, ETagConditionFlag)
        assert not isinstance(f, RetrieveValueFlag)
    for f in (ALWAYS_RETRIEVE, NEVER_RETRIEVE, IF_ETAG_CHANGED):
        assert isinstance(f, RetrieveValueFlag)
        assert not isinstance(f, ETagConditionFlag)
    for f in (KEEP_CURRENT, DELETE_CURRENT):
        assert isinstance(f, Joker)
    assert not isinstance(ITEM_NOT_AVAILABLE, Joker)


def test_results_value_was_mutated() -> None:
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag="e1", resulting_etag="e2", new_value=1
    )
    assert r.value_was_mutated is True
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag="e1", resulting_etag="e1",
        new_value=VALUE_NOT_RETRIEVED,
    )
    assert r.value_was_mutated is False
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag=ITEM_NOT_AVAILABLE,
        resulting_etag=ITEM_NOT_AVAILABLE, new_value=ITEM_NOT_AVAILABLE,
    )
    assert r.value_was_mutated is False
    o = OperationResult(resulting_etag="e", new_value=3)
    assert (o.resulting_etag, o.new_value) == ("e", 3)
    assert pickle.loads(pickle.dumps(r)) == r


def test_exceptions_carry_attributes_and_pickle() -> None:
    cause = OSError(28, "No space left on device")
    try:
        try:
            raise cause
        except OSError as exc:
            raise BackendError(
                "disk full while writing", backend="filesystem", operation="put", key=("a", "b")
            ) from exc
    except BackendError as be:
        err = be
    assert isinstance(err, RuntimeError)
    assert err.__cause__ is cause
    assert (err.backend, err.operation, err.key) == ("filesystem", "put", ("a", "b"))
    assert "disk full" in str(err)
    err2 = pickle.loads(pickle.dumps(err))
    assert type(err2) is BackendError
    assert (err2.backend, err2.operation, err2.key) == ("filesystem", "put", ("a", "b"))
    assert str(err2) == str(err)
    assert BackendError("m", backend="s3", operation="init").key is None

    cc = ConcurrencyConflictError(("k",), 7)
    assert isinstance(cc, RuntimeError)
    assert (cc.key, cc.attempts) == (("k",), 7)
    assert "k" in str(cc)
    cc2 = pickle.loads(pickle.dumps(cc))
    assert type(cc2) is ConcurrencyConflictError
    assert (cc2.key, cc2.attempts) == (("k",), 7)
    assert str(cc2) == str(cc)

    mp = MutationPolicyError("append-only")
    assert isinstance(mp, TypeError)
    assert mp.policy == "append-only"
    assert "append-only" in str(mp)
    mp2 = pickle.loads(pickle.dumps(mp))
    assert type(mp2) is MutationPolicyError
    assert mp2.policy == "append-only"
    assert str(mp2) == str(mp)


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
