"""WriteOnceDict: the first value written to a key wins, forever."""

from __future__ import annotations

import random
from typing import Any

from ..engine.contract import sorted_params
from ..engine.flags import (
    ANY_ETAG,
    DELETE_CURRENT,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    NEVER_RETRIEVE,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    RetrieveValueFlag,
)
from ..engine.keys import NonEmptySafeStrTuple, to_key
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult
from .files import FileDirDict
from .forwarding import ForwardingStore, require_persidict


class WriteOnceDict(ForwardingStore):
    """Keeps the first value written to each key; later writes are ignored.

    A later write of a key is expected to carry the same value; with
    probability ``p_consistency_checks`` it is compared with the stored one
    and a difference raises ValueError. Atomicity: the first write is an
    insert-if-absent on the wrapped store (its ``setdefault_if``), so it is
    exactly as atomic as the wrapped store's conditional insert (atomic for
    FileDirDict, LocalDict and BasicS3Dict). Deletion and ``set_item_if`` are
    refused with MutationPolicyError.
    """

    _policy_name = "write-once"

    def __init__(
        self,
        *,
        wrapped_dict: PersiDict[Any] | None = None,
        p_consistency_checks: float | None = None,
    ) -> None:
        if wrapped_dict is None:
            wrapped_dict = FileDirDict(append_only=True)
        inner = require_persidict("wrapped_dict", wrapped_dict)
        p = 0.0 if p_consistency_checks is None else p_consistency_checks
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise TypeError(f"p_consistency_checks must be a number, got {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p_consistency_checks must be within [0, 1], got {p!r}")
        self._p = float(p)
        self._attempted = 0
        self._passed = 0
        self._init_forwarding(inner, append_only=True)

    @property
    def p_consistency_checks(self) -> float:
        """Probability of checking a repeated write against the stored value."""
        return self._p

    @property
    def consistency_checks_attempted(self) -> int:
        """Number of consistency checks performed."""
        return self._attempted

    @property
    def consistency_checks_passed(self) -> int:
        """Number of consistency checks that found the same value."""
        return self._passed

    @property
    def consistency_checks_failed(self) -> int:
        """Number of consistency checks that found a different value."""
        return self._attempted - self._passed

    def get_params(self) -> dict[str, Any]:
        """Parameters: ``p_consistency_checks`` and ``wrapped_dict``, sorted."""
        return sorted_params({"p_consistency_checks": self._p, "wrapped_dict": self._inner})

    def __setitem__(self, key: Any, value: Any) -> None:
        k = to_key(key)
        if value is KEEP_CURRENT:
            return
        if value is DELETE_CURRENT:
            raise self._policy_error()
        self._check_value(k, value)
        result = self._inner.setdefault_if(
            k,
            default_value=value,
            condition=ANY_ETAG,
            expected_etag=ITEM_NOT_AVAILABLE,
            retrieve_value=NEVER_RETRIEVE,
        )
        if not result.value_was_mutated and self._p > 0 and random.random() < self._p:
            self._check_consistency(k, value)

    def _check_consistency(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        self._attempted += 1
        stored = self._inner._load(key)
        if stored != value:
            raise ValueError(
                f"key {key.strings!r}: write-once value differs from the stored one "
                f"({type(value).__name__} {value!r:.80} != {type(stored).__name__} {stored!r:.80})"
            )
        self._passed += 1

    def set_item_if(
        self,
        key: Any,
        *,
        value: Any,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Refused: conditional overwrites contradict write-once semantics."""
        raise self._policy_error()

    def get_subdict(self, prefix_key: Any) -> WriteOnceDict:
        """A WriteOnceDict over the wrapped store's subdict."""
        return WriteOnceDict(
            wrapped_dict=self._inner.get_subdict(prefix_key), p_consistency_checks=self._p
        )
