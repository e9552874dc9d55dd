"""PersiDictStateMachine: random operation sequences against a model dict.

Subclass it, define ``make_store`` (and ``ground_truth`` if the stored data
can be read without the store), and run it::

    class MyStoreMachine(PersiDictStateMachine):
        def make_store(self, tmp_path):
            return MyStore(base_dir=str(tmp_path))

    def test_my_store():
        run_state_machine(MyStoreMachine)

Every written value is unique (a counter is part of it), so whatever etag
scheme a store uses (unique per write, or a function of the content), an
etag must change exactly when its key was written or deleted since it was
seen. Append-only and write-once stores must refuse every overwrite and
delete with MutationPolicyError and change nothing.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ..engine.flags import (
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    VALUE_NOT_RETRIEVED,
)
from ._machine import MappingMachine, conditions, keys, payloads, retrieves
from ._support import Key, hypothesis_settings

__all__ = ["PersiDictStateMachine", "run_state_machine"]


def run_state_machine(
    machine: type[RuleBasedStateMachine], *, max_examples: int = 40, steps: int = 30
) -> None:
    """Run ``machine`` under ``hypothesis_settings`` (``$PERSIDICT_HYPOTHESIS_PROFILE``)."""
    run_state_machine_as_test(
        machine,
        settings=hypothesis_settings(max_examples=max_examples, stateful_step_count=steps),
    )


class PersiDictStateMachine(MappingMachine):
    """The public API in random order; every answer checked against the model.

    Subclasses define ``make_store(tmp_path)``, optionally ``ground_truth(store)``
    and ``transform_item_refused`` (see ``MappingMachine``).
    """

    @rule(k=keys)
    def observe(self, k: Key) -> None:
        """get_with_etag; an unchanged key keeps its etag, a changed one gets a new one."""
        r = self.store.get_with_etag(k)
        self.check_value(r.new_value, self.model.get(k, ITEM_NOT_AVAILABLE))
        assert r.resulting_etag == r.actual_etag
        self.record(k, r.actual_etag)

    @rule(k=keys, cond=conditions, retrieve=retrieves)
    def get_item_if(self, k: Key, cond: Any, retrieve: Any) -> None:
        r = self.store.get_item_if(
            k, condition=cond, expected_etag=self.expected_etag(k), retrieve_value=retrieve
        )
        assert r.condition_was_satisfied is self.satisfied(cond, k)
        self.check_value(r.new_value, self.retrieved(retrieve, k))
        assert r.value_was_mutated is False
        assert r.actual_etag == r.resulting_etag
        self.record(k, r.resulting_etag)

    @rule(k=keys, p=payloads, cond=conditions, retrieve=retrieves)
    def set_item_if(self, k: Key, p: int, cond: Any, retrieve: Any) -> None:
        v = self.fresh(p)
        sat = self.satisfied(cond, k)

        def attempt() -> Any:
            return self.store.set_item_if(
                k, value=v, condition=cond, expected_etag=self.expected_etag(k),
                retrieve_value=retrieve,
            )

        if self.policy == "write_once" or (self.policy == "append_only" and sat
                                           and k in self.model):
            self.refused(k, attempt)
            return
        expected_new = v if sat else self.retrieved(retrieve, k)
        before = self.store.etag(k) if k in self.model else ITEM_NOT_AVAILABLE
        r = attempt()
        assert r.condition_was_satisfied is sat
        self.check_value(r.new_value, expected_new)
        assert r.value_was_mutated is sat
        assert r.actual_etag == before
        if sat:
            self.commit(k, v)
        self.record(k, r.resulting_etag)

    @rule(k=keys, p=payloads, retrieve=retrieves)
    def compare_and_swap(self, k: Key, p: int, retrieve: Any) -> None:
        """The optimistic-concurrency pattern: write only if unchanged since last seen."""
        self.set_item_if(k, p, ETAG_IS_THE_SAME, retrieve)

    @rule(k=keys, p=payloads, cond=conditions, retrieve=retrieves)
    def setdefault_if(self, k: Key, p: int, cond: Any, retrieve: Any) -> None:
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
            self.commit(k, v)
        self.record(k, r.resulting_etag)

    @rule(k=keys, cond=conditions)
    def discard_if(self, k: Key, cond: Any) -> None:
        def attempt() -> Any:
            return self.store.discard_if(k, condition=cond, expected_etag=self.expected_etag(k))

        if not self.mutable():
            self.refused(k, attempt)
            return
        sat = self.satisfied(cond, k)
        present = k in self.model
        r = attempt()
        assert r.condition_was_satisfied is sat
        if present and not sat:
            assert r.new_value is VALUE_NOT_RETRIEVED
        else:
            assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.value_was_mutated is (sat and present)
        if sat and present:
            self.commit(k)
        self.record(k, r.resulting_etag)

    @rule(k=keys, action=st.sampled_from(["increment", "delete", "keep"]))
    def transform_item(self, k: Key, action: str) -> None:
        def transformer(v: Any) -> Any:
            if action == "delete":
                return DELETE_CURRENT
            if action == "keep":
                return KEEP_CURRENT
            return self.fresh(0 if v is ITEM_NOT_AVAILABLE else v[1] + 1)

        def attempt() -> Any:
            return self.store.transform_item(k, transformer=transformer)

        changes_a_value = k in self.model and action != "keep"
        if self.transform_item_refused or (changes_a_value and not self.mutable()):
            self.refused(k, attempt)
            return
        r = attempt()
        if action == "increment":
            old = self.model.get(k)
            assert r.new_value[1] == (0 if old is None else old[1] + 1)
            self.commit(k, r.new_value)
        elif action == "delete" and k in self.model:
            self.commit(k)
        self.check_value(r.new_value, self.model.get(k, ITEM_NOT_AVAILABLE))
        if k in self.model:
            assert r.resulting_etag == self.store.etag(k)
        else:
            assert r.resulting_etag is ITEM_NOT_AVAILABLE
        self.record(k, r.resulting_etag)

    @rule()
    def ground_truth_matches(self) -> None:
        truth = self.ground_truth(self.store)
        if truth is not None:
            assert truth == self.model, "what is stored differs from the model"

    @invariant()
    def keys_match(self) -> None:
        assert {tuple(k) for k in self.store} == set(self.model)
