"""Conformance: append-only, write-once and value-class refusals; parameters and pickling."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from ..engine.errors import MutationPolicyError
from ..engine.flags import (
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
)
from ..engine.persidict import PersiDict
from ._base import ConformanceBase, StoreMaker
from ._conditional import (
    CONDITIONS,
    CURRENT_VALUE,
    NEW_VALUE,
    PRESENCE,
    RETRIEVES,
    _retrieved,
    _satisfied,
)
from ._support import policy_of, same, snapshot


class PolicyTests(ConformanceBase):
    """Refusals leave the store unchanged; parameters and pickles rebuild the same store."""

    def test_append_only(self, store_maker: StoreMaker) -> None:
        d = store_maker(append_only=True)
        assert d.append_only is True
        write_once = policy_of(d) == "write_once"
        d["a"] = 1
        d["b", "c"] = 2
        e = d.etag("a")
        attempts: dict[str, Callable[[], Any]] = {
            "overwrite": lambda: d.__setitem__("a", 2),
            "delitem": lambda: d.__delitem__("a"),
            "delete_joker": lambda: d.__setitem__("a", DELETE_CURRENT),
            "pop": lambda: d.pop("a"),
            "pop_default": lambda: d.pop("a", None),
            "popitem": lambda: d.popitem(),
            "clear": lambda: d.clear(),
            "discard": lambda: d.discard("a"),
            "delete_if_exists": lambda: d.delete_if_exists("a"),
            "set_item_if": lambda: d.set_item_if(
                "a", value=3, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
            ),
            "discard_if": lambda: d.discard_if("a", condition=ANY_ETAG, expected_etag=e),
            "transform": lambda: d.transform_item("a", transformer=lambda v: v + 1),
            "update": lambda: d.update({"a": 9}),
        }
        ignored = {"overwrite", "update"} if write_once else set()  # the first value wins
        for name, attempt in attempts.items():
            if name in ignored:
                attempt()
            else:
                with pytest.raises(MutationPolicyError) as ei:
                    attempt()
                assert isinstance(ei.value, TypeError), name
                word = "write-once" if write_once else "append"
                assert word in str(ei.value).lower(), (name, str(ei.value))
            assert d["a"] == 1, name
            assert d.etag("a") == e, name
        self.assert_state(d, {("a",): 1, ("b", "c"): 2})
        # reads and non-mutating operations still work
        assert d.setdefault("a", 7) == 1
        d["a"] = KEEP_CURRENT
        d["new"] = 3
        assert d.get_item_if("a", condition=ANY_ETAG, expected_etag=e).condition_was_satisfied
        self.assert_state(d, {("a",): 1, ("b", "c"): 2, ("new",): 3})

    def test_append_only_inserts_through_every_api(self, store_maker: StoreMaker) -> None:
        d = store_maker(append_only=True)
        write_once = policy_of(d) == "write_once"
        absent = ITEM_NOT_AVAILABLE
        if write_once:  # conditional writes contradict write-once: refused, nothing stored
            with pytest.raises(MutationPolicyError):
                d.set_item_if("a", value=1, condition=ETAG_IS_THE_SAME, expected_etag=absent)
            assert "a" not in d
            d["a"] = 1
        else:
            r = d.set_item_if("a", value=1, condition=ETAG_IS_THE_SAME, expected_etag=absent)
            assert r.condition_was_satisfied and r.value_was_mutated
        r = d.setdefault_if("b", default_value=2, condition=ANY_ETAG, expected_etag=absent)
        assert r.condition_was_satisfied and r.value_was_mutated
        try:
            r2 = d.transform_item("c", transformer=lambda v: 3 if v is absent else v + 1)
            assert r2.new_value == 3
        except MutationPolicyError:
            # The reference documents transform_item as unsupported on AppendOnlyDictCached
            # (what S3Dict(append_only=True) is built on); then it must store nothing.
            assert "c" not in d
            d["c"] = 3
        assert d.setdefault("e", 5) == 5
        d.update({"f": 6})
        if not write_once:
            # a failed condition on an existing key is not a mutation attempt
            r = d.set_item_if("a", value=9, condition=ETAG_IS_THE_SAME, expected_etag=absent)
            assert not r.condition_was_satisfied and not r.value_was_mutated
        self.assert_state(d, {("a",): 1, ("b",): 2, ("c",): 3, ("e",): 5, ("f",): 6})

    def test_append_only_subdict_stays_append_only(self, store_maker: StoreMaker) -> None:
        d = store_maker(append_only=True)
        self.require_subdicts(d)
        sub = d.get_subdict("s")
        assert sub.append_only is True
        sub["x"] = 1
        if policy_of(sub) == "write_once":
            sub["x"] = 2  # ignored: the first value wins
            with pytest.raises(MutationPolicyError):
                del sub["x"]
        else:
            with pytest.raises(MutationPolicyError):
                sub["x"] = 2
        assert d["s", "x"] == 1

    def test_base_class_for_values(self, store_maker: StoreMaker) -> None:
        d = store_maker(base_class_for_values=int)
        assert d.base_class_for_values is int
        d["a"] = 1
        d["b"] = True  # bool is an int
        with pytest.raises(TypeError):
            d["a"] = "not an int"
        with pytest.raises(TypeError):
            d["c"] = 1.5
        with pytest.raises(TypeError):
            d.setdefault("c", "x")
        with pytest.raises(TypeError):
            d.set_item_if("a", value="x", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
        with pytest.raises(TypeError):
            d.transform_item("a", transformer=lambda v: str(v))
        self.assert_state(d, {("a",): 1, ("b",): True})
        if self.has_subdicts(d):
            assert d.get_subdict("p").base_class_for_values is int

    def test_get_params(self, store: PersiDict[Any]) -> None:
        params = store.get_params()
        assert isinstance(params, dict)
        assert list(params) == sorted(params)
        # A wrapper's parameters are the stores it wraps: they carry the policy.
        if not any(isinstance(v, PersiDict) for v in params.values()):
            assert params["serialization_format"] == store.serialization_format
            assert params["append_only"] == store.append_only
            assert params["base_class_for_values"] == store.base_class_for_values
        store["a", "b"] = 1
        clone = type(store)(**params)
        assert clone.get_params() == params
        assert snapshot(clone) == {("a", "b"): 1}
        clone["c"] = 2
        assert store["c"] == 2

    def test_pickle_store(self, store: PersiDict[Any]) -> None:
        self.require_pickling()
        store["a"] = 1
        store["b", "c"] = [1, 2]
        copy_ = pickle.loads(pickle.dumps(store))
        assert type(copy_) is type(store)
        assert snapshot(copy_) == {("a",): 1, ("b", "c"): [1, 2]}
        copy_["d"] = 3  # it works
        assert copy_["d"] == 3
        if self.pickle_shares_data:  # the same data, not a copy of it
            assert store["d"] == 3
            assert copy_.get_params() == store.get_params()

    def test_pickle_keeps_policy(self, store_maker: StoreMaker) -> None:
        self.require_pickling()
        d = store_maker(append_only=True, base_class_for_values=int)
        d["a"] = 1
        c = pickle.loads(pickle.dumps(d))
        assert c.append_only is True
        assert c.base_class_for_values is int
        assert c["a"] == 1
        if policy_of(c) == "write_once":
            c["a"] = 2  # ignored: the first value wins
            assert c["a"] == 1
            with pytest.raises(MutationPolicyError):
                c.discard("a")
        else:
            with pytest.raises(MutationPolicyError):
                c["a"] = 2
        with pytest.raises(TypeError):
            c["b"] = "x"

    def test_conditional_ops_on_an_append_only_store(self, store_maker: StoreMaker) -> None:
        """Each condition x expected etag x presence x retrieve_value, for each etag-guarded
        operation, on its own key of an append-only store: reads and inserts answer as on
        a mutable store; an overwrite or delete is refused and changes nothing."""
        d = store_maker(append_only=True)
        write_once = policy_of(d) == "write_once"
        d["other"] = "another value"
        wrong = d.etag("other")
        model: dict[tuple[str, ...], Any] = {("other",): "another value"}
        failures: list[str] = []
        combos = itertools.product(
            CONDITIONS.values(), ("correct", "wrong", "absent"), PRESENCE, RETRIEVES.values()
        )
        for n, (cond, kind, presence, retrieve) in enumerate(combos):
            for op in ("get", "setdefault", "set", "discard"):
                key = (op, f"k{n}")
                if presence == "present":
                    d[key] = model[key] = CURRENT_VALUE
                actual = d.etag(key) if presence == "present" else ITEM_NOT_AVAILABLE
                expected = {"correct": actual, "wrong": wrong, "absent": ITEM_NOT_AVAILABLE}
                etag = expected[kind]
                sat = _satisfied(cond, etag, actual)
                seen = _retrieved(retrieve, presence, etag, actual)
                args = {"condition": cond, "expected_etag": etag}
                refused = (op == "discard" or (op == "set" and write_once)
                           or (op == "set" and sat and presence == "present"))
                try:
                    if op == "get":
                        r = d.get_item_if(key, retrieve_value=retrieve, **args)
                    elif op == "setdefault":
                        r = d.setdefault_if(key, default_value=NEW_VALUE,
                                            retrieve_value=retrieve, **args)
                    elif op == "set":
                        r = d.set_item_if(key, value=NEW_VALUE, retrieve_value=retrieve, **args)
                    else:
                        r = d.discard_if(key, **args)
                except MutationPolicyError:
                    if not refused:
                        failures.append(f"{key} {cond}/{kind}/{presence}/{retrieve}: refused")
                    continue
                inserted = sat and presence == "absent" and op in ("setdefault", "set")
                if inserted:
                    model[key] = NEW_VALUE
                ok = (not refused and r.condition_was_satisfied is sat
                      and same(r.actual_etag, actual) and r.value_was_mutated is inserted
                      and same(r.new_value, NEW_VALUE if inserted else seen))
                if not ok:
                    failures.append(f"{key} {cond}/{kind}/{presence}/{retrieve}: {r}")
        assert not failures, failures
        self.assert_state(d, model)
