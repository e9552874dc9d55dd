"""engine/results.py and engine/codecs.py: duties found unchecked by mutation testing (round 14)."""

from __future__ import annotations

import dataclasses
import pathlib
import pickle
import pickletools

import pytest

from persidict import (
    ANY_ETAG,
    ConditionalOperationResult,
    FileDirDict,
    NonEmptySafeStrTuple,
    OperationResult,
)


def _fresh(text: str) -> str:
    """An equal string that is not the same object."""
    return "".join(list(text))


def test_value_was_mutated_compares_etags_by_value() -> None:
    etag = "0123456789abcdef0123456789abcdef"
    same = _fresh(etag)
    assert same == etag and same is not etag
    result = ConditionalOperationResult(True, etag, same, 1)  # type: ignore[arg-type]
    assert not result.value_was_mutated
    moved = ConditionalOperationResult(True, etag, _fresh(etag[::-1]), 1)  # type: ignore[arg-type]
    assert moved.value_was_mutated


def test_rewriting_the_same_bytes_does_not_move_a_content_etag(tmp_path: pathlib.Path) -> None:
    """FileDirDict's etag is a content hash: the same value again changes nothing."""
    d: FileDirDict[int] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    d["k"] = 7
    etag = d.etag("k")
    result = d.set_item_if("k", value=7, condition=ANY_ETAG, expected_etag=etag)
    assert result.condition_was_satisfied
    assert result.resulting_etag == result.actual_etag
    assert not result.value_was_mutated
    changed = d.set_item_if("k", value=8, condition=ANY_ETAG, expected_etag=etag)
    assert changed.value_was_mutated


@pytest.mark.parametrize(
    "result",
    [OperationResult("e", 1), ConditionalOperationResult(True, "e", "f", 1)],  # type: ignore[arg-type]
    ids=["OperationResult", "ConditionalOperationResult"],
)
def test_results_are_frozen_and_hashable(result: object) -> None:
    """Results are values: they cannot be changed after the fact and can key a dict."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.new_value = 2  # type: ignore[attr-defined]
    assert result.new_value == 1  # type: ignore[attr-defined]
    assert hash(result) == hash(dataclasses.replace(result))  # type: ignore[type-var]
    assert {result: 1}[dataclasses.replace(result)] == 1  # type: ignore[type-var]


def _stored_protocol(d: FileDirDict, key: str) -> int:
    data = pathlib.Path(d.byte_store.location(NonEmptySafeStrTuple((key,)))).read_bytes()
    op, arg, _ = next(pickletools.genops(data))
    assert op.name == "PROTO"
    return int(arg)  # type: ignore[arg-type]


def test_pkl_values_are_stored_with_the_highest_protocol(tmp_path: pathlib.Path) -> None:
    """Protocol 5 stores bytes and bytearrays as raw frames, not escaped text."""
    d: FileDirDict[object] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    d["k"] = {"a": 1}
    assert _stored_protocol(d, "k") == pickle.HIGHEST_PROTOCOL
    big = bytes(range(256)) * 4096  # 1 MiB
    d["big"] = big
    path = pathlib.Path(d.byte_store.location(NonEmptySafeStrTuple(("big",))))
    assert path.stat().st_size < len(big) + 64  # no text-protocol escaping
    assert d["big"] == big
    result = d.transform_item("k", transformer=lambda v: {"a": 2})
    assert result.new_value == {"a": 2}
    assert _stored_protocol(d, "k") == pickle.HIGHEST_PROTOCOL
