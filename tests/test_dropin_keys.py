"""Issue 11, items 3, 5 and 6: keys behave as the original package's do.

3. A key equals what names it (a str, a list or tuple of strs); its hash is
   still that of its strings; a key class with its own ``__eq__`` decides.
5. Keys are immutable values: copies are the object itself; ``reversed``
   gives a key.
6. The top-level names users of the original import.
"""

# Both operand orders and != are what is under test here:
# ruff: noqa: SIM201, SIM202, SIM300

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import pathlib
from typing import Any
from unittest import mock

import pytest

import persidict
from persidict import FileDirDict, LocalDict, NonEmptySafeStrTuple, SafeStrTuple

# ---------------------------------------------------------------- item 3

_REFUSED: list[Any] = [
    "a/b", "", "..", "x" * 300, ["a", 1], ("a", None), ["a", "b/c"], 5, None, 1.5, b"a",
]


@pytest.mark.parametrize("cls", [SafeStrTuple, NonEmptySafeStrTuple])
def test_key_equals_the_str_and_sequences_that_name_it(cls: type[SafeStrTuple]) -> None:
    one = cls("a")
    two = cls("a", "b")
    assert one == "a" and "a" == one
    assert not (one != "a")
    assert two == ["a", "b"] and ["a", "b"] == two
    assert two == ("a", "b") and ("a", "b") == two
    # The other side is converted as the constructor would: nesting flattens.
    assert two == ["a", ("b",)]
    assert two == ("a", SafeStrTuple("b"))
    assert one == ["a"]
    assert one != "b" and two != "a" and two != ["a"] and two != ["b", "a"]
    # What the constructor refuses is unequal, on either side.
    for other in _REFUSED:
        assert two != other and not (two == other) and other != two, other
    # The hash stays that of the strings (issue 11.3): a key still finds its
    # tuple in a dict.
    assert hash(two) == hash(("a", "b")) and {("a", "b"): 1}[two] == 1
    # Types it cannot convert are left to the other object's equality.
    assert two == mock.ANY and two.__eq__(object()) is NotImplemented


def test_empty_key_equals_empty_sequences_only() -> None:
    assert SafeStrTuple() == () and SafeStrTuple() == []
    assert SafeStrTuple() != "" and SafeStrTuple() != "a"


class _Caseless(SafeStrTuple):
    """A key class with its own equality, built on the base one."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SafeStrTuple):
            return [s.lower() for s in self] == [s.lower() for s in other]
        return super().__eq__(other)

    __hash__ = SafeStrTuple.__hash__


def test_a_key_class_with_its_own_eq_decides() -> None:
    caseless = _Caseless("A", "b")
    # A sibling class: NonEmptySafeStrTuple's __eq__ runs first and must defer.
    assert NonEmptySafeStrTuple("a", "B") == caseless
    assert caseless == NonEmptySafeStrTuple("a", "B")
    assert not (NonEmptySafeStrTuple("a", "B") != caseless)
    # Its super() call reaches the base rules for what is not a key.
    assert caseless == ["A", "b"] and caseless != ["a", "b"]
    assert _Caseless("x") == _Caseless("X")


@pytest.fixture(params=["local", "files"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Any:
    if request.param == "local":
        return LocalDict()
    return FileDirDict(base_dir=str(tmp_path / "store"))


def test_keys_from_a_store_compare_with_strs(store: Any) -> None:
    store["k"] = 1
    assert store.random_key() == "k"
    assert store.newest_keys() == ["k"] and store.oldest_keys() == ["k"]
    assert list(store.keys()).count("k") == 1
    assert list(store.keys()).index("k") == 0
    assert "k" in list(store.keys())
    store["a"] = 2
    store["c"] = 3
    del store["k"]
    assert sorted(store.keys()) == ["a", "c"]
    assert store.newest_keys(max_n=1)[0] in ("a", "c")
    store["p", "q"] = 4
    assert ["p", "q"] in list(store.keys())
    assert store.get_subdict("p").random_key() == "q"


def test_newest_keys_equal_a_list_of_strs(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=str(tmp_path))
    d["a"] = 1
    d["c"] = 2
    # mtimes set by hand: the order does not depend on the clock's resolution.
    os.utime(next(tmp_path.glob("c_*")), (1_000_000, 1_000_000))
    os.utime(next(tmp_path.glob("a_*")), (2_000_000, 2_000_000))
    assert d.newest_keys() == ["a", "c"]
    assert d.oldest_keys() == ["c", "a"]
    assert ["a", "c"] == d.newest_keys()


def _random_key_of(base_dir: str) -> Any:
    """Run in a spawned process: write a key, return a key read back."""
    d = FileDirDict(base_dir=base_dir)
    d["from", "child"] = 1
    return d.random_key()


def test_a_key_pickled_from_another_process_equals_its_strs(tmp_path: pathlib.Path) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        key = pool.apply(_random_key_of, (str(tmp_path),))
    assert isinstance(key, NonEmptySafeStrTuple)
    assert key == ["from", "child"] and key == ("from", "child")
    assert list(FileDirDict(base_dir=str(tmp_path)).keys()).count(["from", "child"]) == 1


# ---------------------------------------------------------------- item 5


@pytest.mark.parametrize(
    "key", [SafeStrTuple(), SafeStrTuple("a", "b"), NonEmptySafeStrTuple("x"), _Caseless("q")]
)
def test_copies_of_a_key_are_the_key(key: SafeStrTuple) -> None:
    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key
    box = copy.deepcopy({"k": [key, (key, 1)]})
    assert box["k"][0] is key and box["k"][1][0] is key


def test_reversed_gives_a_key_of_the_same_class() -> None:
    rev = reversed(NonEmptySafeStrTuple("a", "b", "c"))
    assert type(rev) is NonEmptySafeStrTuple
    assert rev.strings == ("c", "b", "a")
    assert list(rev) == ["c", "b", "a"]
    empty = reversed(SafeStrTuple())
    assert type(empty) is SafeStrTuple and empty.strings == ()
    assert type(reversed(SafeStrTuple("a", "b"))) is SafeStrTuple
    d = LocalDict()
    d[reversed(NonEmptySafeStrTuple("a", "b"))] = 1
    assert d["b", "a"] == 1


# ---------------------------------------------------------------- item 6


def test_top_level_names() -> None:
    ns: dict[str, Any] = {}
    exec(
        "from persidict import (__version__, PersiDictKey, NonEmptyPersiDictKey, ETagValue,"
        " ETagIfExists, ValueType, SAFE_CHARS_SET, SAFE_STRING_MAX_LENGTH,"
        " contains_unsafe_chars)",
        ns,
    )
    assert ns["SAFE_STRING_MAX_LENGTH"] == 254
    assert isinstance(ns["SAFE_CHARS_SET"], set)
    assert persidict.get_safe_chars() == ns["SAFE_CHARS_SET"]
    assert ns["ETagValue"]("e") == "e"
    assert isinstance(ns["__version__"], str)


def test_contains_unsafe_chars() -> None:
    f = persidict.contains_unsafe_chars
    assert not f("abc_-~.=()09AZ")
    assert not f("")
    for bad in ("a/b", "a b", "é", "a\x00", "*"):
        assert f(bad), bad


def test_mutating_the_public_safe_set_lets_no_unsafe_key_through() -> None:
    persidict.SAFE_CHARS_SET.add("/")
    try:
        with pytest.raises(ValueError):
            NonEmptySafeStrTuple("a/b")
        assert persidict.contains_unsafe_chars("a/b")
        assert "/" not in persidict.get_safe_chars()
    finally:
        persidict.SAFE_CHARS_SET.discard("/")


def test_transforming_function_is_runtime_checkable() -> None:
    def bump(v: Any) -> Any:
        return 1 if v is persidict.ITEM_NOT_AVAILABLE else v + 1

    assert isinstance(bump, persidict.TransformingFunction)
    assert isinstance(lambda v: v, persidict.TransformingFunction)
    assert not isinstance(42, persidict.TransformingFunction)
    d = LocalDict()
    assert d.transform_item("n", transformer=bump).new_value == 1
