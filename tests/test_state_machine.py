"""Stateful property test: random operation sequences against every store vs a plain dict.

Every written value is unique (a global counter is part of it), so whatever
etag scheme a store uses (unique per write, or a function of the content), an
etag changes exactly when the key was written or deleted since it was seen.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
import tempfile
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from conftest import is_file_store, make_store, read_ground_truth
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
)

KEYS = [("a",), ("a", "b"), ("c", "d", "e")]
keys = st.sampled_from(KEYS)
payloads = st.integers(min_value=0, max_value=3)
conditions = st.sampled_from([ANY_ETAG, ETAG_IS_THE_SAME, ETAG_HAS_CHANGED])
retrieves = st.sampled_from([ALWAYS_RETRIEVE, NEVER_RETRIEVE, IF_ETAG_CHANGED])
MISSING = object()


class StoreMachine(RuleBasedStateMachine):
    store_name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="persidict-sm-"))
        self.store = make_store(self.store_name, self.tmp)
        self.model: dict[tuple[str, ...], Any] = {}
        self.version: collections.Counter[tuple[str, ...]] = collections.Counter()
        # key -> (etag seen, model version at that time)
        self.seen: dict[tuple[str, ...], tuple[Any, int]] = {}
        self.counter = 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ----------------------------------------------------------

    def fresh(self, payload: int) -> list[int]:
        self.counter += 1
        return [self.counter, payload]

    def mutated(self, k: tuple[str, ...]) -> None:
        self.version[k] += 1

    def expected_etag(self, k: tuple[str, ...]) -> Any:
        return self.seen.get(k, (ITEM_NOT_AVAILABLE, 0))[0]

    def etag_unchanged(self, k: tuple[str, ...]) -> bool:
        """Would the key's actual etag equal the etag we last saw for it?"""
        etag, ver = self.seen.get(k, (ITEM_NOT_AVAILABLE, 0))
        if ver == self.version[k]:
            return True
        return etag is ITEM_NOT_AVAILABLE and k not in self.model

    def satisfied(self, cond: Any, k: tuple[str, ...]) -> bool:
        if cond is ANY_ETAG:
            return True
        same = self.etag_unchanged(k)
        return same if cond is ETAG_IS_THE_SAME else not same

    def retrieved(self, retrieve: Any, k: tuple[str, ...]) -> Any:
        if k not in self.model:
            return ITEM_NOT_AVAILABLE
        if retrieve is NEVER_RETRIEVE:
            return VALUE_NOT_RETRIEVED
        if retrieve is ALWAYS_RETRIEVE:
            return self.model[k]
        return VALUE_NOT_RETRIEVED if self.etag_unchanged(k) else self.model[k]

    def record(self, k: tuple[str, ...], etag: Any) -> None:
        """Remember an etag observed for k (its current etag) and check etag stability."""
        if k in self.model:
            assert etag == self.store.etag(k)
        else:
            assert etag is ITEM_NOT_AVAILABLE
        if k in self.seen:
            old_etag, _ = self.seen[k]
            if self.etag_unchanged(k):
                assert etag == old_etag, "etag of an unchanged key changed"
            else:
                assert etag != old_etag, "etag did not change after a mutation"
        self.seen[k] = (etag, self.version[k])

    @staticmethod
    def check_value(actual: Any, expected: Any) -> None:
        if expected is ITEM_NOT_AVAILABLE or expected is VALUE_NOT_RETRIEVED:
            assert actual is expected, (actual, expected)
        else:
            assert actual == expected, (actual, expected)

    # -- plain mapping operations ------------------------------------------

    @rule(k=keys, p=payloads, remember=st.booleans())
    def set(self, k: tuple[str, ...], p: int, remember: bool) -> None:
        v = self.fresh(p)
        self.store[k] = v
        self.model[k] = v
        self.mutated(k)
        if remember:
            self.record(k, self.store.etag(k))

    @rule(k=keys)
    def get(self, k: tuple[str, ...]) -> None:
        assert self.store.get(k, MISSING) == self.model.get(k, MISSING)
        if k in self.model:
            assert self.store[k] == self.model[k]
        assert (k in self.store) == (k in self.model)

    @rule(k=keys)
    def delete(self, k: tuple[str, ...]) -> None:
        if k in self.model:
            del self.store[k]
            del self.model[k]
            self.mutated(k)
        else:
            try:
                del self.store[k]
            except KeyError:
                pass
            else:
                raise AssertionError(f"del of absent key {k} did not raise KeyError")

    @rule(k=keys)
    def discard(self, k: tuple[str, ...]) -> None:
        existed = k in self.model
        assert self.store.discard(k) is existed
        if existed:
            del self.model[k]
            self.mutated(k)

    @rule(k=keys, p=payloads)
    def setdefault(self, k: tuple[str, ...], p: int) -> None:
        v = self.fresh(p)
        if k not in self.model:
            self.mutated(k)
        assert self.store.setdefault(k, v) == self.model.setdefault(k, v)

    @rule(k=keys)
    def pop(self, k: tuple[str, ...]) -> None:
        if k in self.model:
            self.mutated(k)
        assert self.store.pop(k, MISSING) == self.model.pop(k, MISSING)

    @rule()
    def popitem(self) -> None:
        if not self.model:
            try:
                self.store.popitem()
            except KeyError:
                return
            raise AssertionError("popitem on an empty store did not raise KeyError")
        k, v = self.store.popitem()
        k = tuple(k)
        assert self.model.pop(k) == v
        self.mutated(k)

    @rule()
    def random_key(self) -> None:
        k = self.store.random_key()
        if self.model:
            assert tuple(k) in self.model
        else:
            assert k is None

    @rule()
    def length(self) -> None:
        assert len(self.store) == len(self.model)
        assert bool(self.store) == bool(self.model)

    # -- etags and conditional operations ------------------------------------

    @rule(k=keys)
    def observe(self, k: tuple[str, ...]) -> None:
        """get_with_etag; an unchanged key keeps its etag, a changed one gets a new one."""
        r = self.store.get_with_etag(k)
        self.check_value(r.new_value, self.model.get(k, ITEM_NOT_AVAILABLE))
        assert r.resulting_etag == r.actual_etag
        self.record(k, r.actual_etag)

    @rule(k=keys, cond=conditions, retrieve=retrieves)
    def get_item_if(self, k: tuple[str, ...], cond: Any, retrieve: Any) -> None:
        r = self.store.get_item_if(
            k, condition=cond, expected_etag=self.expected_etag(k), retrieve_value=retrieve
        )
        assert r.condition_was_satisfied is self.satisfied(cond, k)
        self.check_value(r.new_value, self.retrieved(retrieve, k))
        assert r.value_was_mutated is False
        self.record(k, r.resulting_etag)

    @rule(k=keys, p=payloads, cond=conditions, retrieve=retrieves)
    def set_item_if(self, k: tuple[str, ...], p: int, cond: Any, retrieve: Any) -> None:
        v = self.fresh(p)
        sat = self.satisfied(cond, k)
        expected_new = v if sat else self.retrieved(retrieve, k)
        r = self.store.set_item_if(
            k,
            value=v,
            condition=cond,
            expected_etag=self.expected_etag(k),
            retrieve_value=retrieve,
        )
        assert r.condition_was_satisfied is sat
        self.check_value(r.new_value, expected_new)
        assert r.value_was_mutated is sat
        if sat:
            self.model[k] = v
            self.mutated(k)
        self.record(k, r.resulting_etag)

    @rule(k=keys, p=payloads, retrieve=retrieves)
    def compare_and_swap(self, k: tuple[str, ...], p: int, retrieve: Any) -> None:
        """The optimistic-concurrency pattern: write only if unchanged since last seen."""
        self.set_item_if(k, p, ETAG_IS_THE_SAME, retrieve)

    @rule(k=keys, p=payloads, cond=conditions, retrieve=retrieves)
    def setdefault_if(self, k: tuple[str, ...], p: int, cond: Any, retrieve: Any) -> None:
        v = self.fresh(p)
        sat = self.satisfied(cond, k)
        present = k in self.model
        expected_new = (
            self.retrieved(retrieve, k) if present else (v if sat else ITEM_NOT_AVAILABLE)
        )
        r = self.store.setdefault_if(
            k,
            default_value=v,
            condition=cond,
            expected_etag=self.expected_etag(k),
            retrieve_value=retrieve,
        )
        assert r.condition_was_satisfied is sat
        self.check_value(r.new_value, expected_new)
        assert r.value_was_mutated is (sat and not present)
        if sat and not present:
            self.model[k] = v
            self.mutated(k)
        self.record(k, r.resulting_etag)

    @rule(k=keys, cond=conditions)
    def discard_if(self, k: tuple[str, ...], cond: Any) -> None:
        sat = self.satisfied(cond, k)
        present = k in self.model
        r = self.store.discard_if(k, condition=cond, expected_etag=self.expected_etag(k))
        assert r.condition_was_satisfied is sat
        if present and not sat:
            assert r.new_value is VALUE_NOT_RETRIEVED
        else:
            assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.value_was_mutated is (sat and present)
        if sat and present:
            del self.model[k]
            self.mutated(k)
        self.record(k, r.resulting_etag)

    @rule(k=keys, action=st.sampled_from(["increment", "delete", "keep"]))
    def transform_item(self, k: tuple[str, ...], action: str) -> None:
        def transformer(v: Any) -> Any:
            if action == "delete":
                return DELETE_CURRENT
            if action == "keep":
                return KEEP_CURRENT
            return self.fresh(0 if v is ITEM_NOT_AVAILABLE else v[1] + 1)

        r = self.store.transform_item(k, transformer=transformer)
        if action == "increment":
            old = self.model.get(k)
            self.model[k] = r.new_value
            assert r.new_value[1] == (0 if old is None else old[1] + 1)
            self.mutated(k)
        elif action == "delete" and k in self.model:
            del self.model[k]
            self.mutated(k)
        self.check_value(r.new_value, self.model.get(k, ITEM_NOT_AVAILABLE))
        if k in self.model:
            assert r.resulting_etag == self.store.etag(k)
        else:
            assert r.resulting_etag is ITEM_NOT_AVAILABLE

    @rule()
    def ground_truth(self) -> None:
        if is_file_store(self.store):
            assert read_ground_truth(self.store) == self.model

    # -- invariants ------------------------------------------------------------

    @invariant()
    def keys_match(self) -> None:
        assert {tuple(k) for k in self.store} == set(self.model)


def test_state_machine(store_name: str) -> None:
    machine = type(f"StoreMachine_{store_name}", (StoreMachine,), {"store_name": store_name})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
