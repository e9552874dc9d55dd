"""A key may be any ``Sequence[str]``, as the API reference types it.

Every key parameter is ``NonEmptySafeStrTuple | Sequence[str] | str``; we
took only lists and tuples, so a ``UserList`` or a ``deque`` of safe strings
raised TypeError. Bytes stay refused (a Sequence of ints, not of str).
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Sequence
from typing import Any

import pytest

from persidict import FileDirDict, LocalDict, PersiDict, SafeStrTuple


class _Parts(Sequence[str]):
    """A read-only sequence of its own (no list or tuple underneath)."""

    def __init__(self, *parts: str) -> None:
        self._parts = "/".join(parts)

    def __getitem__(self, i: Any) -> Any:
        return self._parts.split("/")[i]

    def __len__(self) -> int:
        return self._parts.count("/") + 1


_SEQUENCES = {
    "UserList": lambda *p: collections.UserList(p),
    "deque": lambda *p: collections.deque(p),
    "own": _Parts,
}


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> PersiDict:
    if request.param == "file":
        return FileDirDict(base_dir=tmp_path / "d")
    return LocalDict()


@pytest.mark.parametrize("kind", list(_SEQUENCES))
def test_any_sequence_of_str_is_a_key(store: PersiDict, kind: str) -> None:
    make = _SEQUENCES[kind]
    store[make("a", "b")] = 1
    assert store["a", "b"] == 1
    assert make("a", "b") in store
    assert store.get(make("a", "b")) == 1
    assert store.get_subdict(make("a"))["b"] == 1
    del store[make("a", "b")]
    assert ("a", "b") not in store


def test_nested_sequences_flatten() -> None:
    key = SafeStrTuple(collections.deque(["a", collections.UserList(["b", ("c",)])]))
    assert key.strings == ("a", "b", "c")


@pytest.mark.parametrize("bad", [b"ab", bytearray(b"ab"), range(2)])
def test_sequences_of_non_str_are_still_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        SafeStrTuple(bad)


def test_local_dict_subdict_takes_an_iterator_prefix() -> None:
    """LocalDict.get_subdict's prefix is typed Iterable[str] in the reference."""
    d: LocalDict[int] = LocalDict()
    d["a", "b", "c"] = 1
    d["a", "x"] = 2
    sub = d.get_subdict(part for part in ["a", "b"])
    assert dict(sub.items()) == {("c",): 1}
    assert dict(d.get_subdict(iter(["a"])).items()) == {("b", "c"): 1, ("x",): 2}
    with pytest.raises(TypeError):
        d.get_subdict(iter([1, 2]))  # still strings only


def test_a_sequence_that_holds_itself_is_a_type_error_not_a_recursion_error() -> None:
    looped: list[Any] = ["a"]
    looped.append(looped)
    d: LocalDict[int] = LocalDict()
    with pytest.raises(TypeError, match="hold itself"):
        d[looped] = 1
    deep: Any = "a"
    for _ in range(50):
        deep = [deep]
    d[deep] = 2  # deep but finite: one component
    assert d["a"] == 2 and len(d) == 1
