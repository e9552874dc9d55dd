"""Drop-in behaviours of stores (issue 11, items 4, 7, 8, 10, 11).

Each test runs on every registered store kind (file, memory, S3) and on the
wrapper stacks of test_wrappers, and checks what a user of the reference
API relies on: a store equals a dict of its content; a constrained handle
refuses to return a value of the wrong class that another handle (another
thread or process) stored; a store is never stored as a value;
``values_and_timestamps()``; constructor validation; and the cause of a
FileDirDict miss.
"""

from __future__ import annotations

import multiprocessing
import pathlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from conftest import STORE_FACTORIES, path_for_key, read_ground_truth
from persidict import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    ITEM_NOT_AVAILABLE,
    AppendOnlyDictCached,
    BasicS3Dict,
    EmptyDict,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    MutationPolicyError,
    PersiDict,
    S3Dict_FileDirCached,
    WriteOnceDict,
)
from test_wrappers import ALL_STACKS, Stack

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _reopen(store: PersiDict, **overrides: Any) -> PersiDict:
    """Another handle on the same data (same location, other options)."""
    params = dict(store.get_params())
    params.update(overrides)
    return type(store)(**params)


def _in_thread(fn: Callable[[], Any]) -> None:
    """Run ``fn`` in a real thread and re-raise what it raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed back to the test thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    if errors:
        raise errors[0]


class _Unequal:
    """A value whose comparison raises (like a numpy array's truth value)."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value is ambiguous")

    __hash__ = object.__hash__


class _ListedButGone(Mapping[str, int]):
    """A mapping whose listed key is gone when read (a racing delete)."""

    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


class _TupleKeyed(Mapping[Any, Any]):
    """A plain mapping keyed by tuples of strings; any sequence of strings finds its key."""

    def __init__(self, content: dict[tuple[str, ...], Any]) -> None:
        self._content = content

    def __getitem__(self, key: Any) -> Any:
        return self._content[tuple(key)]

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self._content)

    def __len__(self) -> int:
        return len(self._content)


@pytest.fixture(params=list(ALL_STACKS))
def stack(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Stack:
    return ALL_STACKS[request.param](tmp_path)


# ---------------------------------------------------------------------------
# Item 4: a store equals a mapping with the same content
# ---------------------------------------------------------------------------


def test_store_equals_a_dict_of_its_content(store: PersiDict) -> None:
    store["a"] = 1
    store["b", "c"] = [2, 3]
    same = {"a": 1, ("b", "c"): [2, 3]}
    assert store == same
    assert same == store  # dict gives way, the store decides
    assert not (store != same)  # noqa: SIM202 - __ne__ is under test
    assert store == {"a": 1, ("b", "c"): [2, 3]}
    assert store == {("a",): 1, ("b", "c"): [2, 3]}
    assert store != {"a": 1}  # shorter
    assert store != {"a": 1, ("b", "c"): [2, 3], "d": 4}  # longer
    assert store != {"a": 2, ("b", "c"): [2, 3]}  # another value
    assert store != {"a": 1, ("b", "x"): [2, 3]}  # another key


def test_equality_walk_errors_mean_unequal(store: PersiDict) -> None:
    store["a"] = 1
    store["b"] = 2
    # A key that is no key (unsafe character, wrong type) is unequal, not an error.
    assert store != {"a": 1, "b/../c": 2}
    assert store != {"a": 1, 7: 2}
    assert store != {"a": 1, None: 2}
    store.discard("b")
    assert store != _ListedButGone()  # KeyError while reading the other side
    if store.serialization_format == "pkl":
        store["a"] = _Unequal()
        # ValueError from comparing the values (as a numpy array's truth value raises)
        assert store != {"a": 1}
        assert store != _TupleKeyed({("a",): 1})


def test_equality_with_non_mappings_is_not_implemented(store: PersiDict) -> None:
    store["a"] = 1
    assert store.__eq__([("a", 1)]) is NotImplemented
    assert store.__eq__(None) is NotImplemented
    assert store != [("a", 1)]
    assert store != "a"


def test_stores_of_other_kinds_compare_by_content(tmp_path: pathlib.Path) -> None:
    files = FileDirDict(base_dir=str(tmp_path / "f"), durable=False)
    ram = LocalDict()
    for d in (files, ram):
        d["x", "y"] = {"v": 1}
        d["z"] = "text"
    assert files == ram and ram == files
    ram["z"] = "other"
    assert files != ram and ram != files
    assert EmptyDict() == {} and EmptyDict() != {"a": 1}
    assert EmptyDict() == LocalDict()


def test_same_type_and_params_is_equal_without_reading(tmp_path: pathlib.Path) -> None:
    """Two handles on one directory are the same store, even for a value unequal to itself."""
    a = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    a["nan"] = float("nan")
    b = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    assert a == b
    assert a != {"nan": float("nan")}  # decoded anew: nan != nan


def test_stores_stay_unhashable(store: PersiDict) -> None:
    """Like dict: a mutable mapping that compares by content has no hash."""
    with pytest.raises(TypeError):
        hash(store)


def test_wrappers_equal_a_dict_of_their_content(stack: Stack) -> None:
    w = stack.wrapper
    w["a"] = 1
    w["b", "c"] = "x"
    content = {"a": 1, ("b", "c"): "x"}
    assert w == content
    assert content == w
    assert w != {"a": 1}
    assert w == stack.root


# ---------------------------------------------------------------------------
# Item 7: values are checked on read; a store is never a value
# ---------------------------------------------------------------------------


def _all_reads(d: PersiDict, key: str) -> dict[str, Callable[[], Any]]:
    return {
        "[]": lambda: d[key],
        "get": lambda: d.get(key),
        "get_item_if": lambda: d.get_item_if(
            key, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE,
            retrieve_value=ALWAYS_RETRIEVE),
        "get_with_etag": lambda: d.get_with_etag(key),
        "values": lambda: list(d.values()),
        "items": lambda: list(d.items()),
        "items_and_timestamps": lambda: list(d.items_and_timestamps()),
        "values_and_timestamps": lambda: list(d.values_and_timestamps()),
    }


def _reads_that_did_not_refuse(d: PersiDict, key: str) -> list[str]:
    passed = []
    for name, read in _all_reads(d, key).items():
        try:
            read()
        except TypeError:
            continue
        passed.append(name)
    return passed


def test_reads_refuse_a_value_another_handle_stored(store: PersiDict) -> None:
    """A value stored by an unconstrained handle, in another thread, is refused on read."""
    constrained = _reopen(store, base_class_for_values=int)
    _in_thread(lambda: store.__setitem__("k", "not an int"))
    assert _reads_that_did_not_refuse(constrained, "k") == []
    assert store["k"] == "not an int"  # the unconstrained handle still reads it
    # A value of the right class reads as usual.
    store["k"] = 5
    assert constrained["k"] == 5
    assert list(constrained.values()) == [5]


def _write_unconstrained(base_dir: str) -> None:
    FileDirDict(base_dir=base_dir, durable=False)["k"] = "from another process"


def test_file_reads_refuse_a_value_another_process_stored(tmp_path: pathlib.Path) -> None:
    base = str(tmp_path / "s")
    constrained = FileDirDict(base_dir=base, durable=False, base_class_for_values=int)
    p = multiprocessing.get_context("spawn").Process(target=_write_unconstrained, args=(base,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert _reads_that_did_not_refuse(constrained, "k") == []


def _ram_wrappers(writer: LocalDict) -> dict[str, PersiDict]:
    """Constrained wrappers whose main store shares ``writer``'s RAM."""
    main = LocalDict(backend=writer._backend, base_class_for_values=int)
    ao_writer = LocalDict(backend=writer._backend, append_only=True)
    ao_main = LocalDict(backend=ao_writer._backend, append_only=True, base_class_for_values=int)
    return {
        "mdc": MutableDictCached(
            main_dict=main, data_cache=LocalDict(base_class_for_values=int),
            etag_cache=LocalDict()),
        "aoc": AppendOnlyDictCached(
            main_dict=ao_main,
            data_cache=LocalDict(append_only=True, base_class_for_values=int)),
        "wo": WriteOnceDict(wrapped_dict=ao_main),
    }


def test_wrapper_reads_refuse_a_value_another_handle_stored() -> None:
    writer = LocalDict()
    wrappers = _ram_wrappers(writer)
    _in_thread(lambda: writer.__setitem__("k", "not an int"))
    for name, w in wrappers.items():
        assert _reads_that_did_not_refuse(w, "k") == [], name


def _store_writes(d: PersiDict, value: Any) -> dict[str, Callable[[], Any]]:
    return {
        "[]=": lambda: d.__setitem__("k", value),
        "set_item_if": lambda: d.set_item_if(
            "k", value=value, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE),
        "setdefault_if": lambda: d.setdefault_if(
            "k", default_value=value, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE),
        "setdefault": lambda: d.setdefault("k", value),
        "update": lambda: d.update({"k": value}),
    }


def _stores_as_values(tmp: pathlib.Path) -> list[PersiDict]:
    inner = LocalDict(append_only=True)
    return [LocalDict(), FileDirDict(base_dir=str(tmp / "v"), durable=False), EmptyDict(),
            WriteOnceDict(wrapped_dict=inner)]


def _writes_that_stored_a_store(d: PersiDict, tmp: pathlib.Path) -> list[str]:
    accepted = []
    for value in _stores_as_values(tmp):
        for name, write in _store_writes(d, value).items():
            try:
                write()
            except MutationPolicyError:
                if name != "set_item_if" or not isinstance(d, WriteOnceDict):
                    raise  # only WriteOnceDict refuses set_item_if for all values
            except TypeError:
                assert "k" not in d
                continue
            else:
                accepted.append(f"{name}({type(value).__name__})")
    return accepted


def test_a_store_is_never_stored_as_a_value(store: PersiDict, tmp_path: pathlib.Path) -> None:
    assert _writes_that_stored_a_store(store, tmp_path) == []
    assert len(store) == 0
    store["k"] = 1
    assert store.setdefault("k", LocalDict()) == 1  # not inserted: no error


def test_a_store_is_never_stored_in_a_wrapper(stack: Stack, tmp_path: pathlib.Path) -> None:
    assert _writes_that_stored_a_store(stack.wrapper, tmp_path) == []
    assert len(stack.root) == 0


def test_empty_dict_refuses_a_store_as_a_value(tmp_path: pathlib.Path) -> None:
    assert _writes_that_stored_a_store(EmptyDict(), tmp_path) == []


def test_store_refused_before_anything_is_written(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    d["k"] = "old"
    with pytest.raises(TypeError, match="store"):
        d["k"] = LocalDict()
    assert read_ground_truth(d) == {("k",): "old"}


# ---------------------------------------------------------------------------
# Item 8: values_and_timestamps
# ---------------------------------------------------------------------------


def _check_values_and_timestamps(d: PersiDict) -> None:
    d["a"] = 1
    d["b", "c"] = "two"
    pairs = list(d.values_and_timestamps())
    assert sorted(map(repr, pairs)) == sorted(
        repr((v, ts)) for _, v, ts in d.items_and_timestamps()
    )
    assert sorted(repr(v) for v, _ in pairs) == sorted([repr(1), repr("two")])
    assert all(type(ts) is float for _, ts in pairs)
    assert [ts for v, ts in pairs if v == 1] == [d.timestamp("a")]


def test_values_and_timestamps(store: PersiDict) -> None:
    _check_values_and_timestamps(store)


def test_values_and_timestamps_on_wrappers(stack: Stack) -> None:
    _check_values_and_timestamps(stack.wrapper)


def test_values_and_timestamps_empty_dict() -> None:
    d = EmptyDict()
    d["a"] = 1
    assert list(d.values_and_timestamps()) == []


# ---------------------------------------------------------------------------
# Item 10: constructor validation
# ---------------------------------------------------------------------------


def _constructors(tmp: pathlib.Path) -> dict[str, Callable[..., PersiDict]]:
    makers: dict[str, Callable[..., PersiDict]] = {
        "file": lambda **kw: FileDirDict(base_dir=str(tmp / "f"), **kw),
        "memory": lambda **kw: LocalDict(**kw),
        "empty": lambda **kw: EmptyDict(**kw),
    }
    s3 = [n for n in STORE_FACTORIES if n.startswith("s3")]
    if s3:
        from _s3_plugin import BUCKET, fresh_prefix
        from s3_server import REGION, get_server

        def basic(**kw: Any) -> PersiDict:
            return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                               endpoint_url=get_server().endpoint_url, **kw)

        def cached(**kw: Any) -> PersiDict:
            return S3Dict_FileDirCached(
                bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                base_dir=str(tmp / "c"), endpoint_url=get_server().endpoint_url, **kw)

        makers.update(s3_basic=basic, s3_cached=cached)
    return makers


class _Text(str):
    pass


def test_unknown_format_needs_a_str_base_class(tmp_path: pathlib.Path) -> None:
    for name, make in _constructors(tmp_path).items():
        for bad_base in (None, int, dict, bytes):
            for fmt in ("jsn", "txt", "csv"):
                with pytest.raises(ValueError, match="base_class_for_values"):
                    make(serialization_format=fmt, base_class_for_values=bad_base)
        for base in (str, _Text):
            d = make(serialization_format="txt", base_class_for_values=base)
            assert d.base_class_for_values is base, name
        for fmt in ("pkl", "json"):
            assert make(serialization_format=fmt).base_class_for_values is None, name


def test_text_store_still_reads_and_writes_text(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "t"), serialization_format="txt",
                    base_class_for_values=str, durable=False)
    d["a"] = "hello"
    assert path_for_key(d, "a").read_text() == "hello"
    assert d["a"] == "hello"


@pytest.mark.parametrize(
    ("given", "kept"),
    [(None, None), (64, 64), (1, 1), ("10", 10), (10.9, 10), (True, 1), (b"7", 7),
     (0, None), (-3, None), ("0", None), ("abc", 64), (object(), 64), ([1], 64),
     (float("inf"), 64), (float("nan"), 64)],
)
def test_local_dict_prune_interval(given: Any, kept: int | None) -> None:
    d = LocalDict(prune_interval=given)
    assert d.prune_interval == kept
    assert d.get_params()["prune_interval"] == kept
    sub = d.get_subdict("p")
    assert sub.prune_interval == kept
    d["x"] = 1
    assert d["x"] == 1


_BAD_N_RETRIES: list[tuple[Any, type[Exception]]] = [
    ("3", TypeError), (1.5, TypeError), (b"1", TypeError), ([1], TypeError), (True, TypeError),
    (-1, ValueError), (-100, ValueError),
]
_EXPECTED_N_RETRIES = [(repr(n), exc) for n, exc in _BAD_N_RETRIES]


def _n_retries_errors(d: PersiDict) -> list[tuple[str, type[BaseException] | None]]:
    """What transform_item raises for each bad n_retries (None: nothing)."""
    calls = []

    def transformer(value: Any) -> int:
        calls.append(value)
        return 1

    got: list[tuple[str, type[BaseException] | None]] = []
    for n, _ in _BAD_N_RETRIES:
        try:
            d.transform_item("k", transformer=transformer, n_retries=n)
        except (TypeError, ValueError) as exc:
            got.append((repr(n), type(exc)))
        else:
            got.append((repr(n), None))
    assert calls == []  # refused before the transformer ran
    return got


def test_transform_item_n_retries_types(store: PersiDict) -> None:
    assert _n_retries_errors(store) == _EXPECTED_N_RETRIES
    assert "k" not in store  # nothing ran
    assert store.transform_item("k", transformer=lambda v: 1, n_retries=0).new_value == 1


def test_transform_item_n_retries_types_empty_dict() -> None:
    assert _n_retries_errors(EmptyDict()) == _EXPECTED_N_RETRIES


def test_transform_item_n_retries_types_wrappers(stack: Stack) -> None:
    # AppendOnlyDictCached too: it checks n_retries before refusing (as the reference).
    assert _n_retries_errors(stack.wrapper) == _EXPECTED_N_RETRIES


# ---------------------------------------------------------------------------
# Item 11: FileDirDict d[missing] -> KeyError from FileNotFoundError
# ---------------------------------------------------------------------------


def _delete(base_dir: str, key: tuple[str, ...]) -> None:
    del FileDirDict(base_dir=base_dir, durable=False)[key]


def test_missing_key_error_has_the_file_not_found_as_cause(file_store: FileDirDict) -> None:
    for key in (("never",), ("no", "such", "dir")):
        with pytest.raises(KeyError) as info:
            file_store[key]
        cause = info.value.__cause__
        assert isinstance(cause, FileNotFoundError), key
        assert cause.filename == str(path_for_key(file_store, key))
        assert info.value.__suppress_context__
    assert file_store.get("never", "dflt") == "dflt"


def test_key_deleted_by_another_process_raises_from_file_not_found(
    tmp_path: pathlib.Path,
) -> None:
    base = str(tmp_path / "s")
    d = FileDirDict(base_dir=base, durable=False)
    d["a", "b"] = 1
    assert d["a", "b"] == 1
    p = multiprocessing.get_context("spawn").Process(target=_delete, args=(base, ("a", "b")))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    with pytest.raises(KeyError) as info:
        d["a", "b"]
    assert isinstance(info.value.__cause__, FileNotFoundError)
