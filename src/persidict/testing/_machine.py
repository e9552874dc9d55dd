"""The state machine's model of a store, and its plain mapping rules."""

from __future__ import annotations

import collections
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from ..engine.errors import MutationPolicyError
from ..engine.flags import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
)
from ..engine.persidict import PersiDict
from ._support import Key, policy_of

KEYS: list[Key] = [("a",), ("a", "b"), ("c", "d", "e")]
keys = st.sampled_from(KEYS)
payloads = st.integers(min_value=0, max_value=3)
conditions = st.sampled_from([ANY_ETAG, ETAG_IS_THE_SAME, ETAG_HAS_CHANGED])
retrieves = st.sampled_from([ALWAYS_RETRIEVE, NEVER_RETRIEVE, IF_ETAG_CHANGED])
MISSING = object()


class MappingMachine(RuleBasedStateMachine):
    """The model, the hooks, and the rules of the plain mapping API."""

    transform_item_refused: ClassVar[bool] = False
    """The store refuses every transform_item (AppendOnlyDictCached does)."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="persidict-sm-"))
        self.store = self.make_store(self.tmp)
        self.policy = policy_of(self.store)
        self.model: dict[Key, Any] = {}
        self.version: collections.Counter[Key] = collections.Counter()
        # key -> (etag seen, model version at that time)
        self.seen: dict[Key, tuple[Any, int]] = {}
        # key -> (timestamp seen, model version at that time)
        self.times: dict[Key, tuple[float, int]] = {}
        self.counter = 0

    def make_store(self, tmp_path: pathlib.Path) -> PersiDict[Any]:
        """Return a fresh, empty store that may keep its data under ``tmp_path``."""
        raise NotImplementedError("subclasses of PersiDictStateMachine define make_store")

    def ground_truth(self, store: PersiDict[Any]) -> dict[Key, Any] | None:
        """Everything ``store`` holds, read around it (not through its API), or None."""
        return None

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model --------------------------------------------------------

    def fresh(self, payload: int) -> list[int]:
        self.counter += 1
        return [self.counter, payload]

    def mutable(self) -> bool:
        return self.policy == "mutable"

    def commit(self, k: Key, value: Any = MISSING) -> None:
        """Record in the model that ``k`` now holds ``value`` (MISSING: deleted)."""
        if value is MISSING:
            del self.model[k]
        else:
            self.model[k] = value
        self.version[k] += 1

    def refused(self, k: Key | None, attempt: Callable[[], Any]) -> None:
        """A mutation the store's policy forbids: MutationPolicyError, nothing changed."""
        try:
            attempt()
        except MutationPolicyError:
            pass
        else:
            raise AssertionError(f"a {self.policy} store did not refuse a mutation of {k}")
        if k is not None:
            self.check_key(k)

    def check_key(self, k: Key) -> None:
        """The store's value and etag of ``k`` are what the model says."""
        assert self.store.get(k, MISSING) == self.model.get(k, MISSING)
        self.record(k, self.store.etag(k) if k in self.model else ITEM_NOT_AVAILABLE)

    def expected_etag(self, k: Key) -> Any:
        return self.seen.get(k, (ITEM_NOT_AVAILABLE, 0))[0]

    def etag_unchanged(self, k: Key) -> bool:
        """Would the key's actual etag equal the etag we last saw for it?"""
        etag, ver = self.seen.get(k, (ITEM_NOT_AVAILABLE, 0))
        if ver == self.version[k]:
            return True
        return etag is ITEM_NOT_AVAILABLE and k not in self.model

    def satisfied(self, cond: Any, k: Key) -> bool:
        if cond is ANY_ETAG:
            return True
        same = self.etag_unchanged(k)
        return same if cond is ETAG_IS_THE_SAME else not same

    def retrieved(self, retrieve: Any, k: Key) -> Any:
        if k not in self.model:
            return ITEM_NOT_AVAILABLE
        if retrieve is NEVER_RETRIEVE:
            return VALUE_NOT_RETRIEVED
        if retrieve is ALWAYS_RETRIEVE:
            return self.model[k]
        return VALUE_NOT_RETRIEVED if self.etag_unchanged(k) else self.model[k]

    def record(self, k: Key, etag: Any) -> None:
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
    def set(self, k: Key, p: int, remember: bool) -> None:
        v = self.fresh(p)
        if k in self.model and self.policy == "append_only":
            self.refused(k, lambda: self.store.__setitem__(k, v))
            return
        self.store[k] = v
        if k not in self.model or self.mutable():  # write-once: the first value wins
            self.commit(k, v)
        if remember:
            self.record(k, self.store.etag(k))

    @rule(k=keys)
    def get(self, k: Key) -> None:
        assert self.store.get(k, MISSING) == self.model.get(k, MISSING)
        if k in self.model:
            assert self.store[k] == self.model[k]
        assert (k in self.store) == (k in self.model)

    @rule(k=keys)
    def delete(self, k: Key) -> None:
        if not self.mutable():
            self.refused(k, lambda: self.store.__delitem__(k))
        elif k in self.model:
            del self.store[k]
            self.commit(k)
        else:
            try:
                del self.store[k]
            except KeyError:
                pass
            else:
                raise AssertionError(f"del of absent key {k} did not raise KeyError")

    @rule(k=keys)
    def discard(self, k: Key) -> None:
        if not self.mutable():
            self.refused(k, lambda: self.store.discard(k))
            return
        existed = k in self.model
        assert self.store.discard(k) is existed
        if existed:
            self.commit(k)

    @rule(k=keys, p=payloads)
    def setdefault(self, k: Key, p: int) -> None:
        v = self.fresh(p)
        if k not in self.model:
            self.version[k] += 1
        assert self.store.setdefault(k, v) == self.model.setdefault(k, v)

    @rule(k=keys)
    def pop(self, k: Key) -> None:
        if not self.mutable():
            self.refused(k, lambda: self.store.pop(k, MISSING))
            return
        if k in self.model:
            self.version[k] += 1
        assert self.store.pop(k, MISSING) == self.model.pop(k, MISSING)

    @rule()
    def popitem(self) -> None:
        if not self.mutable():
            self.refused(None, self.store.popitem)
            return
        if not self.model:
            try:
                self.store.popitem()
            except KeyError:
                return
            raise AssertionError("popitem on an empty store did not raise KeyError")
        popped, v = self.store.popitem()
        k = tuple(popped)
        assert self.model[k] == v
        self.commit(k)

    @rule()
    def random_key(self) -> None:
        k = self.store.random_key()
        if self.model:
            assert k is not None and tuple(k) in self.model
        else:
            assert k is None

    @rule()
    def length(self) -> None:
        assert len(self.store) == len(self.model)
        assert bool(self.store) == bool(self.model)

    @rule(k=keys)
    def timestamp(self, k: Key) -> None:
        """Unchanged keys keep their timestamp; a key's timestamps never go back."""
        if k not in self.model:
            try:
                self.store.timestamp(k)
            except KeyError:
                return
            raise AssertionError(f"timestamp of absent key {k} did not raise KeyError")
        ts = self.store.timestamp(k)
        if k in self.times:
            old, ver = self.times[k]
            if ver == self.version[k]:
                assert ts == old, f"timestamp of unchanged {k} moved: {old} -> {ts}"
            else:
                assert ts >= old, f"timestamp of {k} went back: {old} -> {ts}"
        self.times[k] = (ts, self.version[k])

    @rule()
    def clear(self) -> None:
        if not self.mutable():
            self.refused(None, self.store.clear)
            return
        self.store.clear()
        for k in list(self.model):
            self.commit(k)

    @rule(p=payloads)
    def through_subdict(self, p: int) -> None:
        """get_subdict("a") sees the keys under ("a",) and writes land there."""
        try:
            sub = self.store.get_subdict("a")
        except NotImplementedError:  # no hierarchical key space: nothing to check
            return
        under = {k[1:]: v for k, v in self.model.items() if k[0] == "a" and len(k) > 1}
        assert {tuple(k): v for k, v in sub.items()} == under
        k, v = ("a", "b"), self.fresh(p)
        if k in self.model and self.policy == "append_only":
            self.refused(k, lambda: sub.__setitem__("b", v))
            return
        sub["b"] = v
        if k not in self.model or self.mutable():  # write-once: the first value wins
            self.commit(k, v)
        assert self.store[k] == self.model[k]
