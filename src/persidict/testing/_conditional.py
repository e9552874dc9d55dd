"""Conformance: the etag-guarded operations, jokers and transform_item."""

from __future__ import annotations

from typing import Any

import pytest

from ..engine.flags import (
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
)
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult, OperationResult
from ._base import ConformanceBase
from ._support import same, snapshot

BYSTANDER = ("bystander",)
OLD_VALUE = "old"
CURRENT_VALUE = "current value, longer"
NEW_VALUE = "a brand new value"

CONDITIONS = {"ANY": ANY_ETAG, "SAME": ETAG_IS_THE_SAME, "CHANGED": ETAG_HAS_CHANGED}
RETRIEVES = {"ALWAYS": ALWAYS_RETRIEVE, "NEVER": NEVER_RETRIEVE, "IFCHANGED": IF_ETAG_CHANGED}
EXPECTED_KINDS = ["correct", "stale", "absent"]
PRESENCE = ["present", "absent"]

# Every combination of condition x expected etag x presence is its own test;
# retrieve_value (and the kind of value written) vary inside it, each on its
# own key, so a failure message names the whole combination.
cond_params = pytest.mark.parametrize("cond_name", list(CONDITIONS))
exp_params = pytest.mark.parametrize("expected_kind", EXPECTED_KINDS)
presence_params = pytest.mark.parametrize("presence", PRESENCE)


def _prepare(
    store: PersiDict[Any], key: tuple[str, ...], presence: str, expected_kind: str
) -> tuple[Any, Any, dict[tuple[str, ...], Any]]:
    """Set up ``key``; return (actual_etag, expected_etag, state_before)."""
    store[BYSTANDER] = "bystander"
    store[key] = OLD_VALUE
    stale = store.etag(key)
    if presence == "present":
        store[key] = CURRENT_VALUE  # different size: even a stat-based etag differs
        actual = store.etag(key)
        assert actual != stale, "etag did not change on rewrite"
    else:
        del store[key]
        actual = ITEM_NOT_AVAILABLE
    expected = {"correct": actual, "stale": stale, "absent": ITEM_NOT_AVAILABLE}[expected_kind]
    return actual, expected, snapshot(store)


def _satisfied(condition: Any, expected: Any, actual: Any) -> bool:
    if condition is ANY_ETAG:
        return True
    if condition is ETAG_IS_THE_SAME:
        return same(actual, expected)
    return not same(actual, expected)


def _retrieved(retrieve: Any, presence: str, expected: Any, actual: Any) -> Any:
    if presence == "absent":
        return ITEM_NOT_AVAILABLE
    if retrieve is NEVER_RETRIEVE:
        return VALUE_NOT_RETRIEVED
    if retrieve is ALWAYS_RETRIEVE:
        return CURRENT_VALUE
    return CURRENT_VALUE if not same(actual, expected) else VALUE_NOT_RETRIEVED


def _check_result_type(r: Any) -> None:
    assert isinstance(r, ConditionalOperationResult)
    assert isinstance(r.condition_was_satisfied, bool)
    assert isinstance(r.value_was_mutated, bool)


class ConditionalTests(ConformanceBase):
    """Every condition x expected etag x presence x retrieve_value, against the oracle."""

    @cond_params
    @exp_params
    @presence_params
    def test_get_item_if(
        self, store: PersiDict[Any], cond_name: str, expected_kind: str, presence: str
    ) -> None:
        self.require_mutable(store)
        cond = CONDITIONS[cond_name]
        for retrieve_name, retrieve in RETRIEVES.items():
            key = ("cond", f"get_{retrieve_name}")
            actual, expected, before = _prepare(store, key, presence, expected_kind)
            r = store.get_item_if(
                key, condition=cond, expected_etag=expected, retrieve_value=retrieve
            )
            ctx = (retrieve_name, r)
            _check_result_type(r)
            assert r.condition_was_satisfied is _satisfied(cond, expected, actual), ctx
            assert same(r.actual_etag, actual), ctx
            assert same(r.resulting_etag, actual), ctx
            assert same(r.new_value, _retrieved(retrieve, presence, expected, actual)), ctx
            assert r.value_was_mutated is False, ctx
            self.assert_state(store, before)

    def test_get_item_if_default_retrieve_is_if_etag_changed(self, store: PersiDict[Any]) -> None:
        store["a"] = 1
        e = store.etag("a")
        r = store.get_item_if("a", condition=ETAG_IS_THE_SAME, expected_etag=e)
        assert r.condition_was_satisfied is True and r.new_value is VALUE_NOT_RETRIEVED
        r = store.get_item_if("a", condition=ETAG_HAS_CHANGED, expected_etag=ITEM_NOT_AVAILABLE)
        assert r.condition_was_satisfied is True and r.new_value == 1

    @pytest.mark.parametrize("value_kind", ["value", "keep", "delete"])
    @cond_params
    @exp_params
    @presence_params
    def test_set_item_if(
        self, store: PersiDict[Any], cond_name: str, expected_kind: str, presence: str,
        value_kind: str,
    ) -> None:
        self.require_mutable(store)
        cond = CONDITIONS[cond_name]
        value = {"value": NEW_VALUE, "keep": KEEP_CURRENT, "delete": DELETE_CURRENT}[value_kind]
        for retrieve_name, retrieve in RETRIEVES.items():
            key = ("cond", f"set_{retrieve_name}")
            actual, expected, before = _prepare(store, key, presence, expected_kind)
            sat = _satisfied(cond, expected, actual)
            r = store.set_item_if(
                key, value=value, condition=cond, expected_etag=expected, retrieve_value=retrieve
            )
            ctx = (retrieve_name, r)
            _check_result_type(r)
            assert r.condition_was_satisfied is sat, ctx
            assert same(r.actual_etag, actual), ctx
            after = dict(before)
            if sat and value_kind == "value":
                after[key] = NEW_VALUE
                assert r.new_value == NEW_VALUE, ctx
                assert r.resulting_etag == store.etag(key), ctx
                assert r.resulting_etag != actual, ctx
                assert r.value_was_mutated is True, ctx
            elif sat and value_kind == "delete":
                after.pop(key, None)
                assert r.new_value is ITEM_NOT_AVAILABLE, ctx
                assert r.resulting_etag is ITEM_NOT_AVAILABLE, ctx
                assert r.value_was_mutated is (presence == "present"), ctx
            else:  # condition failed, or KEEP_CURRENT
                assert same(r.resulting_etag, actual), ctx
                assert same(r.new_value, _retrieved(retrieve, presence, expected, actual)), ctx
                assert r.value_was_mutated is False, ctx
            self.assert_state(store, after)
            if key in after:
                assert store.etag(key) == r.resulting_etag, ctx

    @cond_params
    @exp_params
    @presence_params
    def test_setdefault_if(
        self, store: PersiDict[Any], cond_name: str, expected_kind: str, presence: str
    ) -> None:
        self.require_mutable(store)
        cond = CONDITIONS[cond_name]
        for retrieve_name, retrieve in RETRIEVES.items():
            key = ("cond", f"setdefault_{retrieve_name}")
            actual, expected, before = _prepare(store, key, presence, expected_kind)
            sat = _satisfied(cond, expected, actual)
            r = store.setdefault_if(
                key, default_value=NEW_VALUE, condition=cond, expected_etag=expected,
                retrieve_value=retrieve,
            )
            ctx = (retrieve_name, r)
            _check_result_type(r)
            assert r.condition_was_satisfied is sat, ctx
            assert same(r.actual_etag, actual), ctx
            after = dict(before)
            if presence == "absent" and sat:
                after[key] = NEW_VALUE
                assert r.new_value == NEW_VALUE, ctx
                assert r.resulting_etag == store.etag(key), ctx
                assert r.value_was_mutated is True, ctx
            elif presence == "absent":
                assert r.new_value is ITEM_NOT_AVAILABLE, ctx
                assert r.resulting_etag is ITEM_NOT_AVAILABLE, ctx
                assert r.value_was_mutated is False, ctx
            else:  # present: never mutated
                assert same(r.resulting_etag, actual), ctx
                assert same(r.new_value, _retrieved(retrieve, presence, expected, actual)), ctx
                assert r.value_was_mutated is False, ctx
            self.assert_state(store, after)

    @cond_params
    @exp_params
    @presence_params
    def test_discard_if(
        self, store: PersiDict[Any], cond_name: str, expected_kind: str, presence: str
    ) -> None:
        self.require_mutable(store)
        key = ("cond", "discard")
        actual, expected, before = _prepare(store, key, presence, expected_kind)
        cond = CONDITIONS[cond_name]
        sat = _satisfied(cond, expected, actual)
        r = store.discard_if(key, condition=cond, expected_etag=expected)
        _check_result_type(r)
        assert r.condition_was_satisfied is sat
        assert same(r.actual_etag, actual)
        after = dict(before)
        if presence == "present" and sat:
            del after[key]
            assert r.new_value is ITEM_NOT_AVAILABLE
            assert r.resulting_etag is ITEM_NOT_AVAILABLE
            assert r.value_was_mutated is True
        elif presence == "absent":
            assert r.new_value is ITEM_NOT_AVAILABLE
            assert r.resulting_etag is ITEM_NOT_AVAILABLE
            assert r.value_was_mutated is False
        else:
            assert r.new_value is VALUE_NOT_RETRIEVED
            assert same(r.resulting_etag, actual)
            assert r.value_was_mutated is False
        self.assert_state(store, after)

    def test_compare_and_swap_loop(self, store: PersiDict[Any]) -> None:
        """The typical optimistic-concurrency pattern works end to end."""
        self.require_mutable(store)
        store["n"] = 0
        for _ in range(10):
            r = store.get_with_etag("n")
            assert isinstance(r.new_value, int)
            w = store.set_item_if(
                "n", value=r.new_value + 1, condition=ETAG_IS_THE_SAME, expected_etag=r.actual_etag
            )
            assert w.condition_was_satisfied
            # the old etag is now stale
            w2 = store.set_item_if(
                "n", value=-1, condition=ETAG_IS_THE_SAME, expected_etag=r.actual_etag
            )
            assert not w2.condition_was_satisfied
        assert store["n"] == 10

    def test_two_handles_on_one_store(self, store: PersiDict[Any]) -> None:
        """A second handle (rebuilt from get_params) sees writes and invalidates etags."""
        self.require_mutable(store)
        other = type(store)(**store.get_params())
        store["k"] = "v1"
        seen = store.get_with_etag("k")
        other["k"] = "v2"  # same size, different content
        assert store["k"] == "v2"
        assert store.etag("k") != seen.actual_etag
        r = store.set_item_if("k", value="v3", condition=ETAG_IS_THE_SAME,
                              expected_etag=seen.actual_etag, retrieve_value=ALWAYS_RETRIEVE)
        assert not r.condition_was_satisfied
        assert r.new_value == "v2"
        r = store.get_item_if("k", condition=ETAG_HAS_CHANGED, expected_etag=seen.actual_etag)
        assert r.condition_was_satisfied and r.new_value == "v2"
        del other["k"]
        assert "k" not in store
        r = store.discard_if("k", condition=ETAG_IS_THE_SAME, expected_etag=seen.actual_etag)
        assert not r.condition_was_satisfied
        assert r.actual_etag is ITEM_NOT_AVAILABLE

    def test_jokers_via_setitem(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        e = store.etag("a")
        store["a"] = KEEP_CURRENT
        assert store["a"] == 1
        assert store.etag("a") == e
        store["missing"] = KEEP_CURRENT
        assert "missing" not in store
        store["a"] = DELETE_CURRENT
        assert "a" not in store
        store["a"] = DELETE_CURRENT  # absent: no-op, no error
        self.assert_state(store, {})

    def test_jokers_rejected_by_setdefault(self, store: PersiDict[Any]) -> None:
        store["a"] = 1
        for joker in (KEEP_CURRENT, DELETE_CURRENT):
            for key in ("a", "absent"):
                with pytest.raises(TypeError):
                    store.setdefault(key, joker)
                with pytest.raises(TypeError):
                    store.setdefault_if(
                        key, default_value=joker, condition=ANY_ETAG,
                        expected_etag=ITEM_NOT_AVAILABLE,
                    )
        self.assert_state(store, {("a",): 1})

    def test_transform_increment(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["c"] = 1
        r = store.transform_item("c", transformer=lambda v: v + 1)
        assert isinstance(r, OperationResult)
        assert r.new_value == 2
        assert r.resulting_etag == store.etag("c")
        assert store["c"] == 2

    def test_transform_creates_from_absent(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        seen = []

        def create(v: Any) -> Any:
            seen.append(v)
            return 0 if v is ITEM_NOT_AVAILABLE else v + 1

        r = store.transform_item(("x", "c"), transformer=create)
        assert seen and seen[-1] is ITEM_NOT_AVAILABLE
        assert r.new_value == 0
        assert r.resulting_etag == store.etag(("x", "c"))
        r = store.transform_item(("x", "c"), transformer=create)
        assert r.new_value == 1
        self.assert_state(store, {("x", "c"): 1})

    def test_transform_delete_current(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["c"] = 5
        r = store.transform_item("c", transformer=lambda v: DELETE_CURRENT)
        assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.resulting_etag is ITEM_NOT_AVAILABLE
        assert "c" not in store
        r = store.transform_item("c", transformer=lambda v: DELETE_CURRENT)  # absent: no-op
        assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.resulting_etag is ITEM_NOT_AVAILABLE
        self.assert_state(store, {})

    def test_transform_keep_current(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["c"] = 5
        e = store.etag("c")
        r = store.transform_item("c", transformer=lambda v: KEEP_CURRENT)
        assert r.new_value == 5
        assert r.resulting_etag == e
        assert store.etag("c") == e
        r = store.transform_item("absent", transformer=lambda v: KEEP_CURRENT)
        assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.resulting_etag is ITEM_NOT_AVAILABLE
        self.assert_state(store, {("c",): 5})

    def test_transform_exception_leaves_value(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["c"] = 5

        def boom(v: Any) -> Any:
            raise ZeroDivisionError("boom")

        with pytest.raises(ZeroDivisionError):
            store.transform_item("c", transformer=boom)
        self.assert_state(store, {("c",): 5})
