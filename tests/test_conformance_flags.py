"""Conformance of what is not a store: keys, flags, results and exceptions."""

from __future__ import annotations

import copy
import pickle

import pytest

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
    AlwaysRetrieveFlag,
    AnyETagFlag,
    BackendError,
    ConcurrencyConflictError,
    ConditionalOperationResult,
    DeleteCurrentFlag,
    ETagHasChangedFlag,
    ETagIsTheSameFlag,
    IfETagChangedRetrieveFlag,
    ItemNotAvailableFlag,
    KeepCurrentFlag,
    MutationPolicyError,
    NeverRetrieveFlag,
    NonEmptySafeStrTuple,
    OperationResult,
    SafeStrTuple,
    ValueNotRetrievedFlag,
)

FLAGS = {
    "KEEP_CURRENT": (KEEP_CURRENT, KeepCurrentFlag),
    "DELETE_CURRENT": (DELETE_CURRENT, DeleteCurrentFlag),
    "ANY_ETAG": (ANY_ETAG, AnyETagFlag),
    "ETAG_IS_THE_SAME": (ETAG_IS_THE_SAME, ETagIsTheSameFlag),
    "ETAG_HAS_CHANGED": (ETAG_HAS_CHANGED, ETagHasChangedFlag),
    "ITEM_NOT_AVAILABLE": (ITEM_NOT_AVAILABLE, ItemNotAvailableFlag),
    "VALUE_NOT_RETRIEVED": (VALUE_NOT_RETRIEVED, ValueNotRetrievedFlag),
    "ALWAYS_RETRIEVE": (ALWAYS_RETRIEVE, AlwaysRetrieveFlag),
    "NEVER_RETRIEVE": (NEVER_RETRIEVE, NeverRetrieveFlag),
    "IF_ETAG_CHANGED": (IF_ETAG_CHANGED, IfETagChangedRetrieveFlag),
}




def test_safe_str_tuple() -> None:
    t = SafeStrTuple("a", "b")
    assert t.strings == ("a", "b") == t.str_chain
    assert len(t) == 2 and t[0] == "a" and list(t) == ["a", "b"]
    assert tuple(t) == ("a", "b")
    assert t == SafeStrTuple("a", "b") and hash(t) == hash(SafeStrTuple("a", "b"))
    assert t != SafeStrTuple("b", "a")
    assert SafeStrTuple(["a", "b"]) == t
    assert SafeStrTuple(t) == t
    assert len(SafeStrTuple()) == 0
    n = NonEmptySafeStrTuple("a", "b")
    assert isinstance(n, SafeStrTuple) and tuple(n) == ("a", "b")
    assert {t: 1}[SafeStrTuple("a", "b")] == 1
    for bad in (("a/b",), ("",), ("a", 1), ("..",)):
        with pytest.raises((ValueError, TypeError)):
            SafeStrTuple(*bad)



@pytest.mark.parametrize("name", list(FLAGS))
def test_flags_are_singletons(name: str) -> None:
    flag, cls = FLAGS[name]
    assert isinstance(flag, cls)
    assert cls() is flag
    assert pickle.loads(pickle.dumps(flag)) is flag
    assert copy.copy(flag) is flag
    assert copy.deepcopy(flag) is flag
    assert flag == flag
    hash(flag)
    others = [f for n, (f, _) in FLAGS.items() if n != name]
    assert all(flag is not o and flag != o for o in others)


def test_condition_and_retrieve_flag_hierarchy() -> None:
    from persidict import ETagConditionFlag, Joker, RetrieveValueFlag

    for f in (ANY_ETAG, ETAG_IS_THE_SAME, ETAG_HAS_CHANGED):
        assert isinstance(f, ETagConditionFlag)
        assert not isinstance(f, RetrieveValueFlag)
    for f in (ALWAYS_RETRIEVE, NEVER_RETRIEVE, IF_ETAG_CHANGED):
        assert isinstance(f, RetrieveValueFlag)
        assert not isinstance(f, ETagConditionFlag)
    for f in (KEEP_CURRENT, DELETE_CURRENT):
        assert isinstance(f, Joker)
    assert not isinstance(ITEM_NOT_AVAILABLE, Joker)


def test_results_value_was_mutated() -> None:
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag="e1", resulting_etag="e2", new_value=1
    )
    assert r.value_was_mutated is True
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag="e1", resulting_etag="e1",
        new_value=VALUE_NOT_RETRIEVED,
    )
    assert r.value_was_mutated is False
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag=ITEM_NOT_AVAILABLE,
        resulting_etag=ITEM_NOT_AVAILABLE, new_value=ITEM_NOT_AVAILABLE,
    )
    assert r.value_was_mutated is False
    o = OperationResult(resulting_etag="e", new_value=3)
    assert (o.resulting_etag, o.new_value) == ("e", 3)
    assert pickle.loads(pickle.dumps(r)) == r


def test_exceptions_carry_attributes_and_pickle() -> None:
    cause = OSError(28, "No space left on device")
    try:
        try:
            raise cause
        except OSError as exc:
            raise BackendError(
                "disk full while writing", backend="filesystem", operation="put", key=("a", "b")
            ) from exc
    except BackendError as be:
        err = be
    assert isinstance(err, RuntimeError)
    assert err.__cause__ is cause
    assert (err.backend, err.operation, err.key) == ("filesystem", "put", ("a", "b"))
    assert "disk full" in str(err)
    err2 = pickle.loads(pickle.dumps(err))
    assert type(err2) is BackendError
    assert (err2.backend, err2.operation, err2.key) == ("filesystem", "put", ("a", "b"))
    assert str(err2) == str(err)
    assert BackendError("m", backend="s3", operation="init").key is None

    cc = ConcurrencyConflictError(("k",), 7)
    assert isinstance(cc, RuntimeError)
    assert (cc.key, cc.attempts) == (("k",), 7)
    assert "k" in str(cc)
    cc2 = pickle.loads(pickle.dumps(cc))
    assert type(cc2) is ConcurrencyConflictError
    assert (cc2.key, cc2.attempts) == (("k",), 7)
    assert str(cc2) == str(cc)

    mp = MutationPolicyError("append-only")
    assert isinstance(mp, TypeError)
    assert mp.policy == "append-only"
    assert "append-only" in str(mp)
    mp2 = pickle.loads(pickle.dumps(mp))
    assert type(mp2) is MutationPolicyError
    assert mp2.policy == "append-only"
    assert str(mp2) == str(mp)

