"""Conformance: a value read or written is the caller's own (issue 10.4).

Mutating a value after writing it, or a value obtained from any read, must
not change what is stored: every store keeps encoded bytes, never the
caller's object.
"""

from __future__ import annotations

from typing import Any

from ..engine.flags import ANY_ETAG, ITEM_NOT_AVAILABLE
from ..engine.persidict import PersiDict
from ._base import ConformanceBase


def _value() -> dict[str, Any]:
    return {"list": [1, 2], "nested": {"n": [3]}}


def _spoil(value: Any) -> None:
    value["list"].append("spoiled")
    value["nested"]["n"].clear()
    value["new"] = True


class IsolationTests(ConformanceBase):
    """What the caller holds and what the store holds never alias."""

    def test_mutating_a_written_value_changes_nothing_stored(
        self, store: PersiDict[Any]
    ) -> None:
        written = _value()
        store["k"] = written
        etag = store.etag("k")
        _spoil(written)
        assert store["k"] == _value()
        assert store.etag("k") == etag
        self.assert_state(store, {("k",): _value()})

    def test_mutating_a_read_value_changes_nothing_stored(self, store: PersiDict[Any]) -> None:
        store["k"] = _value()
        reads = [
            store["k"],
            store.get("k"),
            next(iter(store.values())),
            next(iter(store.items()))[1],
            store.get_item_if("k", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE).new_value,
            store.setdefault("k", {"other": 1}),
        ]
        for value in reads:
            _spoil(value)
            assert store["k"] == _value()
        self.assert_state(store, {("k",): _value()})

    def test_a_transformer_cannot_spoil_the_stored_value(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["k"] = _value()

        def spoil_and_keep(value: Any) -> Any:
            _spoil(value)
            return {"replaced": 1}

        result = store.transform_item("k", transformer=spoil_and_keep)
        assert isinstance(result.new_value, dict)
        result.new_value["replaced"] = 2  # the result is the caller's too
        assert store["k"] == {"replaced": 1}
        self.assert_state(store, {("k",): {"replaced": 1}})
