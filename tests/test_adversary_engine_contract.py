"""Adversary: a third party's ByteStore with only the five operations gets the whole API.

Two stores written against the documented contract alone: one with a fresh
etag per write, one whose etag is a hash of the bytes (allowed: "or is a
function of the bytes"). Each runs the conformance class, the state
machine, and four threads racing on inserts and compare-and-swap.
"""

from __future__ import annotations

import hashlib
import pathlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from persidict import ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, PersiDict
from persidict.backends.bytes_dict import ByteStoreDict
from persidict.engine.contract import ABSENT, Blob, ByteStore, Capabilities
from persidict.engine.errors import PreconditionFailed
from persidict.engine.keys import NonEmptySafeStrTuple, SafeStrTuple
from persidict.testing import PersiDictConformance, PersiDictStateMachine, run_state_machine


class FiveOps(ByteStore):
    """The five operations and nothing else; a lock makes each one atomic.

    Keys live in one dict shared with stores made by ``SubFiveOps.child``,
    under their full key (``prefix`` + the key).
    """

    name = "five-ops"
    capabilities = Capabilities()

    def __init__(self, content_etags: bool = False) -> None:
        self.items: dict[tuple[str, ...], tuple[str, bytes, float]] = {}
        self.guard = threading.Lock()
        self.prefix: tuple[str, ...] = ()
        self.content_etags = content_etags

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "guard"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, guard=threading.Lock())

    def _etag(self, data: bytes) -> str:
        if self.content_etags:
            return hashlib.sha256(data).hexdigest()[:16]
        return uuid.uuid4().hex

    def read(self, key: NonEmptySafeStrTuple, *, body: bool = True,
             if_none_match: str | None = None) -> Blob:  # fmt: skip
        with self.guard:
            item = self.items.get(self.prefix + key.strings)
        if item is None:
            return Blob(ABSENT, None)
        return Blob(item[0], item[1] if body and item[0] != if_none_match else None)

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: Any) -> Any:
        full = self.prefix + key.strings
        with self.guard:
            current = self.items[full][0] if full in self.items else ABSENT
            if if_match is not None and current != if_match:
                raise PreconditionFailed
            etag = self._etag(data)
            self.items[full] = (etag, bytes(data), time.time())
            return etag

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: Any) -> bool:
        full = self.prefix + key.strings
        with self.guard:
            if full not in self.items:
                if if_match is not None:
                    raise PreconditionFailed
                return False
            if if_match is not None and self.items[full][0] != if_match:
                raise PreconditionFailed
            del self.items[full]
            return True

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        with self.guard:
            return self.items[self.prefix + key.strings][2]

    def scan(self, *, with_timestamps: bool = False) -> Iterator[Any]:
        n = len(self.prefix)
        with self.guard:
            listed = [(k[n:], ts) for k, (_, _, ts) in self.items.items()
                      if len(k) > n and k[:n] == self.prefix]  # fmt: skip
        return ((NonEmptySafeStrTuple(*k), ts if with_timestamps else None) for k, ts in listed)


class SubFiveOps(FiveOps):
    """FiveOps plus ``child``: the conformance class and the machine need subdicts."""

    capabilities = Capabilities(subdicts=True)

    def child(self, prefix: SafeStrTuple) -> ByteStore:
        sub = SubFiveOps(self.content_etags)
        sub.items, sub.guard, sub.prefix = self.items, self.guard, self.prefix + prefix.strings
        return sub


class TestFreshEtags(PersiDictConformance):
    pickle_shares_data = False

    def make_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict[Any]:
        return ByteStoreDict(byte_store=SubFiveOps(), **params)


class TestContentEtags(TestFreshEtags):
    def make_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict[Any]:
        return ByteStoreDict(byte_store=SubFiveOps(content_etags=True), **params)


@pytest.mark.parametrize("content_etags", [False, True])
def test_state_machine_on_five_operations(content_etags: bool) -> None:
    class Machine(PersiDictStateMachine):
        def make_store(self, tmp_path: pathlib.Path) -> PersiDict[Any]:
            return ByteStoreDict(byte_store=SubFiveOps(content_etags=content_etags))

    run_state_machine(Machine, max_examples=15)


@pytest.mark.parametrize("content_etags", [False, True])
def test_four_threads_insert_once_and_never_lose_a_swap(content_etags: bool) -> None:
    d: ByteStoreDict[Any] = ByteStoreDict(byte_store=FiveOps(content_etags=content_etags))
    d["n"] = 0
    start = threading.Barrier(4)
    won: list[list[int]] = [[] for _ in range(4)]
    swaps = [0] * 4

    def work(me: int) -> None:
        start.wait()
        for i in range(150):
            r = d.setdefault_if(f"k{i}", default_value=me, condition=ETAG_IS_THE_SAME,
                                expected_etag=ITEM_NOT_AVAILABLE)
            if r.condition_was_satisfied:
                won[me].append(i)
            seen = d.get_with_etag("n")
            s = d.set_item_if("n", value=seen.new_value + 1, condition=ETAG_IS_THE_SAME,
                              expected_etag=seen.actual_etag)
            swaps[me] += s.condition_was_satisfied

    threads = [threading.Thread(target=work, args=(m,)) for m in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for w in won for i in w) == list(range(150))  # each key won exactly once
    for me, mine in enumerate(won):
        assert all(d[f"k{i}"] == me for i in mine)
    assert d["n"] == sum(swaps) > 0
