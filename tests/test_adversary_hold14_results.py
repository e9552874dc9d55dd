"""Adversary of the results' hand-written __init__ (fields filled in place):
they must still behave as the frozen dataclasses they declare."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from persidict import ITEM_NOT_AVAILABLE, FileDirDict
from persidict.engine.flags import VALUE_NOT_RETRIEVED
from persidict.engine.results import ConditionalOperationResult, OperationResult


def _all() -> list[Any]:
    return [
        OperationResult("e1", 5),
        OperationResult(resulting_etag=ITEM_NOT_AVAILABLE, new_value=ITEM_NOT_AVAILABLE),
        ConditionalOperationResult(True, "a", "b", [1, 2]),
        ConditionalOperationResult(condition_was_satisfied=False, actual_etag="a",
                                   resulting_etag="a", new_value=VALUE_NOT_RETRIEVED),
    ]


@pytest.mark.parametrize("r", _all(), ids=repr)
def test_a_result_is_a_frozen_dataclass(r: Any) -> None:
    names = [f.name for f in dataclasses.fields(r)]
    assert list(vars(r)) == names  # every field, in declaration order, nothing else
    again = type(r)(**{n: getattr(r, n) for n in names})
    assert again == r
    assert dataclasses.replace(r) == r
    assert dataclasses.asdict(r) == {n: getattr(r, n) for n in names}
    assert dataclasses.astuple(r) == tuple(getattr(r, n) for n in names)
    for name in names:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(r, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(r, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.extra = 1
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(r, proto)) == r
    assert copy.copy(r) == r == copy.deepcopy(r)
    assert repr(r).startswith(type(r).__name__ + "(") and all(n in repr(r) for n in names)
    assert type(r).__match_args__ == tuple(names)
    other = dataclasses.replace(r, resulting_etag="zzz")
    assert other != r and other.resulting_etag == "zzz"
    with pytest.raises(TypeError):
        type(r)()
    with pytest.raises(TypeError):
        type(r)(*names, "one too many")
    with pytest.raises(TypeError):
        type(r)(**{n: None for n in names}, bogus=1)


def test_hash_and_order() -> None:
    a, b = OperationResult("e", 1), OperationResult("e", 1)
    assert hash(a) == hash(b) and {a, b} == {a}
    assert OperationResult("e", 1) != OperationResult("e", 2)
    assert OperationResult("e", 1) != ConditionalOperationResult(True, "e", "e", 1)
    with pytest.raises(TypeError):
        hash(ConditionalOperationResult(True, "a", "b", [1]))  # an unhashable field
    with pytest.raises(TypeError):
        _ = a < b  # no order  # type: ignore[operator]


def test_value_was_mutated() -> None:
    assert ConditionalOperationResult(True, "a", "b", 1).value_was_mutated
    assert not ConditionalOperationResult(True, "a", "a", 1).value_was_mutated
    assert ConditionalOperationResult(True, ITEM_NOT_AVAILABLE, "a", 1).value_was_mutated


def test_subscripted_generics_build_results() -> None:
    r = OperationResult[int]("e", 3)
    assert r == OperationResult("e", 3) and type(r) is OperationResult
    c = ConditionalOperationResult[str](True, "a", "b", "v")
    assert c.new_value == "v" and pickle.loads(pickle.dumps(c)) == c
    assert not hasattr(r, "__orig_class__") or r.__orig_class__ == OperationResult[int]


def test_match_statement() -> None:
    match OperationResult("e", 3):
        case OperationResult(etag, 3):
            assert etag == "e"
        case _:  # pragma: no cover
            raise AssertionError


def test_results_of_a_store_compare_and_pickle(tmp_path: Any) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    r = d.transform_item("k", transformer=lambda v: 1)
    assert r == OperationResult(d.etag("k"), 1) and pickle.loads(pickle.dumps(r)) == r
    assert type(r.resulting_etag) is str and hash(r) == hash(OperationResult(d.etag("k"), 1))
