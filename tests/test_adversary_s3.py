"""Adversarial S3 fault tests: what every caller was told against what is stored.

A MoreFaultProxy (tests/faultproxy_more.py) sits between our store and the
real SeaweedFS server; another writer ("theirs") talks to the server
directly. Rules checked: a call that returned must have taken effect exactly
once; a call that raised anything but OutcomeUnknownError changed nothing;
OutcomeUnknownError says what is known.

The resend attacks: once an attempt of a write may have been applied, a
second copy of the request can apply it twice (the first one applied, then
undone by another writer, or still in flight at the server: a zombie).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from _adversary import QUICK, insert, path, proxy, stores, through, told
from faultproxy_more import MoreFaultProxy
from persidict import (
    ANY_ETAG,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    BackendError,
    BasicS3Dict,
    OutcomeUnknownError,
)

__all__ = ["proxy", "stores"]  # fixtures


# -- a write applied, its reply lost, then undone by another writer --------------


def test_insert_applied_then_popped_is_not_inserted_again(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    popped: list[tuple[str, Any]] = []
    proxy.arm("after", "PUT", path(ours, "k"),
              hook=lambda: popped.append(told(lambda: theirs.pop("k"))))
    kind, r = told(lambda: insert(ours, "k", 5))
    assert popped == [("ok", 5)]  # our insert happened once, and its value went to them
    # acknowledged twice, the insert would be back after the pop that took it
    assert "k" not in theirs, (kind, r)
    assert kind == "unknown"


def test_delete_applied_then_rewritten_does_not_delete_their_write(
    stores: Any, proxy: Any
) -> None:
    ours, theirs = stores
    ours["k"] = 1
    proxy.arm("after", "DELETE", path(ours, "k"), hook=lambda: theirs.__setitem__("k", 2))
    kind, r = told(lambda: ours.discard("k"))
    assert theirs.get("k") == 2, (kind, r)  # their acknowledged write survives
    assert kind == "unknown"


def test_swap_applied_then_swapped_back_is_not_applied_twice(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["k"] = "A"
    e_a = ours.etag("k")

    def swap_back() -> None:  # B -> A (the same bytes, so the same etag as before)
        r = theirs.set_item_if("k", value="A", condition=ETAG_IS_THE_SAME,
                               expected_etag=theirs.etag("k"))
        assert r.condition_was_satisfied

    proxy.arm("after", "PUT", path(ours, "k"), hook=swap_back)
    kind, r = told(lambda: ours.set_item_if("k", value="B", condition=ETAG_IS_THE_SAME,
                                            expected_etag=e_a))
    assert theirs["k"] == "A", (kind, r)  # A -> B -> A happened; B again would undo theirs
    assert kind == "unknown"


def test_plain_set_seen_then_overwritten_is_not_written_again(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["k"] = 0
    seen: list[Any] = []

    def read_then_write() -> None:
        seen.append(theirs["k"])
        theirs["k"] = 2

    proxy.arm("after", "PUT", path(ours, "k"), hook=read_then_write)
    kind, r = told(lambda: ours.__setitem__("k", 1))
    assert seen == [1]
    # 1 was read before their 2 was written: our set took effect before theirs
    assert theirs["k"] == 2, (kind, r)
    assert kind == "unknown"


# -- a request held in the network past the client's timeout (a zombie) ---------


def zombie(proxy: MoreFaultProxy, stores: Any, call: Callable[[BasicS3Dict], Any],
           meanwhile: Callable[[BasicS3Dict], Any]) -> tuple[str, Any]:
    """Our call's first request is held; after the call, theirs acts, then it lands."""
    ours, theirs = stores
    slow = through(proxy, ours.root_prefix, read_timeout=1, connect_timeout=2)
    method = "DELETE" if call.__name__.startswith("del") else "PUT"
    fault = proxy.arm("hold", method, path(ours, "k"))
    outcome = told(lambda: call(slow))
    assert fault.fired.is_set()
    meanwhile(theirs)
    fault.release.set()
    assert fault.relayed.wait(10)
    return outcome


def test_zombie_plain_set_does_not_overwrite_a_later_write(stores: Any, proxy: Any) -> None:
    _ours, theirs = stores

    def set_1(d: BasicS3Dict) -> None:
        d["k"] = 1

    kind, r = zombie(proxy, stores, set_1, lambda t: t.__setitem__("k", 2))
    # acknowledged before their write started, ours cannot be the last one
    assert kind == "unknown" or theirs["k"] == 2, (kind, r, theirs["k"])
    assert kind == "unknown"


def test_zombie_insert_does_not_come_back_after_a_pop(stores: Any, proxy: Any) -> None:
    _ours, theirs = stores
    popped: list[Any] = []
    kind, _r = zombie(proxy, stores, lambda d: insert(d, "k", 5),
                     lambda t: popped.append(t.pop("k", None)))
    if kind == "ok" and popped == [5]:
        assert "k" not in theirs  # inserted once, popped once
    assert kind == "unknown"


# -- server errors, cut bodies, proofs lost -------------------------------------


def test_a_refused_write_503_is_resent_and_applied_once(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["n"] = 0
    for _ in range(QUICK.max_attempts - 1):
        proxy.arm("503", "PUT", path(ours, "n"))
    r = ours.transform_item("n", transformer=lambda v: v + 1)
    assert r.new_value == 1 and theirs["n"] == 1 and r.resulting_etag == theirs.etag("n")
    d = told(lambda: ours.discard("absent"))
    assert d == ("ok", False)


def test_a_500_after_the_write_was_applied_is_proven_or_unknown(
    stores: Any, proxy: Any
) -> None:
    ours, theirs = stores
    proxy.arm("after500", "PUT", path(ours, "k"))
    kind, r = told(lambda: insert(ours, "k", 5))
    assert kind == "ok" and r.condition_was_satisfied and theirs["k"] == 5
    ours["d"] = 1
    proxy.arm("after500", "DELETE", path(ours, "d"))
    kind, exc = told(lambda: ours.pop("d"))
    assert kind == "unknown" and exc.value == 1 and "d" not in theirs


def test_a_500_that_was_not_applied_is_unknown_not_failed(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    proxy.arm("500", "PUT", path(ours, "k"))
    kind, exc = told(lambda: insert(ours, "k", 5))
    # a 500 says nothing about whether the write happened; never a plain failure
    assert kind in ("ok", "unknown"), exc
    assert (kind == "ok") == ("k" in theirs)


def test_cut_read_bodies_are_read_again(stores: Any, proxy: Any) -> None:
    ours, _ = stores
    big = "x" * 200_000
    ours["k"] = big
    e = ours.etag("k")
    proxy.arm("cut", "GET", path(ours, "k"))
    assert ours["k"] == big
    proxy.arm("cut", "GET", path(ours, "k"))
    r = ours.get_with_etag("k")
    assert r.new_value == big and r.actual_etag == e
    for _ in range(QUICK.max_attempts):
        proxy.arm("cut", "GET", path(ours, "k"))
    kind, exc = told(lambda: ours["k"])
    assert kind == "error" and isinstance(exc, BackendError), exc


def test_the_proof_head_lost_is_retried_and_then_unknown(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    proxy.arm("after", "PUT", path(ours, "a"))
    proxy.arm("after", "HEAD", path(ours, "a"))
    kind, r = told(lambda: insert(ours, "a", 1))
    assert kind == "ok" and r.condition_was_satisfied and theirs["a"] == 1
    proxy.arm("after", "PUT", path(ours, "b"))
    for _ in range(QUICK.max_attempts):
        proxy.arm("after", "HEAD", path(ours, "b"))
    kind, _exc = told(lambda: insert(ours, "b", 1))
    assert kind == "unknown" and theirs["b"] == 1  # applied, unprovably: never "not done"


# -- every operation with its first request(s) lost ------------------------------

OPS: dict[str, tuple[str, str, Callable[[BasicS3Dict], Any]]] = {
    # name: (method lost, key, the call); "k" holds 1 before each call
    "set": ("PUT", "k", lambda d: d.__setitem__("k", 2)),
    "setdefault": ("PUT", "new", lambda d: d.setdefault("new", 2)),
    "setdefault_if": ("PUT", "new", lambda d: insert(d, "new", 2)),
    "set_item_if same": ("PUT", "k", lambda d: d.set_item_if(
        "k", value=2, condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k"))),
    "set_item_if different": ("PUT", "k", lambda d: d.set_item_if(
        "k", value=2, condition=ETAG_HAS_CHANGED, expected_etag="x")),
    "set_item_if any": ("PUT", "k", lambda d: d.set_item_if(
        "k", value=2, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)),
    "transform_item": ("PUT", "k", lambda d: d.transform_item("k", transformer=lambda v: v + 1)),
    "discard_if": ("DELETE", "k", lambda d: d.discard_if(
        "k", condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k"))),
    "pop": ("DELETE", "k", lambda d: d.pop("k")),
    "popitem": ("DELETE", "k", lambda d: d.popitem()),
    "del": ("DELETE", "k", lambda d: d.__delitem__("k")),
    "discard": ("DELETE", "k", lambda d: d.discard("k")),
    "get": ("GET", "k", lambda d: d.get("k")),
    "get_with_etag": ("GET", "k", lambda d: d.get_with_etag("k").new_value),
    "etag": ("HEAD", "k", lambda d: d.etag("k")),
    "in": ("HEAD", "k", lambda d: "k" in d),
    "keys": ("GET", "list-type", lambda d: sorted(d.keys())),
    "len": ("GET", "list-type", lambda d: len(d)),
}


@pytest.mark.parametrize("lost", [1, QUICK.max_attempts])
@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("name", list(OPS))
def test_each_operation_with_lost_requests(
    stores: Any, proxy: Any, name: str, mode: str, lost: int
) -> None:
    ours, theirs = stores
    method, key, call = OPS[name]
    ours["k"] = 1
    before = dict(theirs.items())
    for _ in range(lost):
        proxy.arm(mode, method, key if key == "list-type" else path(ours, key))
    kind, r = told(lambda: call(ours))
    after = dict(theirs.items())
    writes = method in ("PUT", "DELETE")
    if kind == "error":
        assert after == before, (name, r)  # failed: nothing changed
        assert not writes, (name, r)  # a write that may have happened is unknown
    elif kind == "unknown":
        assert writes, (name, r)  # reads are never unknown
        assert r.key is not None and r.key.strings == (key,)
        if name in ("pop", "popitem"):
            assert r.value == 1
    else:
        assert writes or after == before
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        removed = set(before) - set(after)
        if method == "PUT":
            assert changed and not removed, (name, r, before, after)
        if method == "DELETE":
            assert removed == {("k",)} and not changed, (name, r, before, after)
        if name == "transform_item":
            assert after[("k",)] == 2  # applied once


# -- cached wrappers, pickling ---------------------------------------------------


def test_unknown_pickles_with_its_value(stores: Any, proxy: Any) -> None:
    ours, _ = stores
    ours["k"] = {"v": 1}
    proxy.arm("after", "DELETE", path(ours, "k"))
    kind, exc = told(lambda: ours.pop("k"))
    assert kind == "unknown"
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, OutcomeUnknownError) and isinstance(back, BackendError)
    assert back.value == {"v": 1} and back.key == exc.key and str(back) == str(exc)
    assert back.operation == "delete_object" and back.backend == "s3"


def test_unknown_says_what_is_known_about_the_value(stores: Any, proxy: Any) -> None:
    ours, _ = stores
    ours["k"] = None
    proxy.arm("after", "DELETE", path(ours, "k"))
    kind, popped = told(lambda: ours.pop("k"))
    assert kind == "unknown" and popped.value is None  # a stored None was being removed
    proxy.arm("before", "PUT", path(ours, "k"))
    kind, written = told(lambda: ours.__setitem__("k", 1))
    assert kind == "unknown"
    assert written.value is VALUE_NOT_RETRIEVED  # nothing known, distinct from a None value
    assert pickle.loads(pickle.dumps(written)).value is VALUE_NOT_RETRIEVED
