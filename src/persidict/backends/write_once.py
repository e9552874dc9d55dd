"""WriteOnceDict: the first value written to a key wins, forever."""

from __future__ import annotations

import hashlib
import numbers
import random
from typing import Any

from ..engine.errors import MutationPolicyError
from ..engine.flags import (
    IF_ETAG_CHANGED,
    KEEP_CURRENT,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    Joker,
    RetrieveValueFlag,
)
from ..engine.keys import NonEmptySafeStrTuple, to_key
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult, ValueType
from ..engine.values import sorted_params
from .files import FileDirDict
from .forwarding import ForwardingStore, require_persidict


class WriteOnceConsistencyError(MutationPolicyError, ValueError):
    """A write to a write-once key carried a value other than the stored one.

    Both a MutationPolicyError (the write-once policy refused it) and a
    ValueError (what the reference raises, so callers catching either work).

    Parameters
    ----------
    key : object
        The key written.
    detail : str
        The two values compared.
    """

    def __init__(self, key: Any, detail: str) -> None:
        super().__init__("write-once")
        self.key = key
        self.detail = detail
        self.args = (f"key {key!r}: write-once value differs from the stored one ({detail})",)

    def __reduce__(self) -> Any:
        return (type(self), (self.key, self.detail))


def _probability(value: Any, current: float) -> float:
    """Validate a ``p_consistency_checks`` value: KEEP_CURRENT, None (0), or in [0, 1]."""
    if value is KEEP_CURRENT:
        return current
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"p_consistency_checks must be a number, got {value!r}")
    p = float(value)
    if not 0.0 <= p <= 1.0:  # also refuses NaN
        raise ValueError(f"p_consistency_checks must be within [0, 1], got {value!r}")
    return p


class WriteOnceDict(ForwardingStore[ValueType]):
    """Keeps the first value written to each key; later writes are ignored.

    A later write of a key is expected to carry the same value. With
    probability ``p_consistency_checks`` a write (the inserting one included)
    reads the stored value back and compares the digests of the two values
    serialized in the store's format (so ``1`` and ``1.0`` differ, and values
    without a usable ``==``, such as arrays, compare; equal values that
    serialize differently, e.g. dicts in another order, differ too); a
    difference raises WriteOnceConsistencyError (a MutationPolicyError and a
    ValueError).

    Atomicity: a write is an insert-if-absent on the wrapped store's bytes
    (``byte_store.write(if_match=ABSENT)``), so it is exactly as atomic as the
    wrapped store's conditional insert (FileDirDict, LocalDict, BasicS3Dict).
    The wrapped store must be append-only. Deletion and ``set_item_if`` are
    refused with MutationPolicyError. Public attributes this wrapper lacks
    (``base_dir``, ``bucket_name``...) are read from the wrapped store.

    Parameters
    ----------
    wrapped_dict : PersiDict or None, default None
        The append-only store to wrap; ``FileDirDict(append_only=True)`` if
        None.
    p_consistency_checks : float or None, default None
        Probability in [0, 1] of checking a write against the stored value
        (None: 0).

    Raises
    ------
    TypeError
        ``wrapped_dict`` is not a PersiDict, or the probability is not a
        number.
    ValueError
        ``wrapped_dict`` is not append-only, or the probability is outside
        [0, 1].
    """

    _policy_name = "write-once"
    _keeps_first_write = True

    def __init__(
        self,
        *,
        wrapped_dict: PersiDict[ValueType] | None = None,
        p_consistency_checks: float | None = None,
    ) -> None:
        if wrapped_dict is None:
            wrapped_dict = FileDirDict(append_only=True)
        inner = require_persidict("wrapped_dict", wrapped_dict)
        if not inner.append_only:
            raise ValueError(
                "wrapped_dict must be append-only (append_only=True): a mutable store "
                "lets other handles overwrite the first value"
            )
        self._p = _probability(p_consistency_checks, 0.0)
        self._attempted = 0
        self._passed = 0
        self._init_forwarding(inner, append_only=True)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this object lacks. Private and dunder names
        # are never forwarded (copy and pickle probe them), and before
        # ``_inner`` is set (a half-built object) nothing is: no recursion.
        inner = self.__dict__.get("_inner") if not name.startswith("_") else None
        if inner is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(inner, name)

    @property
    def p_consistency_checks(self) -> float:
        """Probability of checking a write against the stored value, in [0, 1].

        Settable: KEEP_CURRENT leaves it, None means 0.0, a value outside
        [0, 1] raises ValueError and a non-number TypeError.
        """
        return self._p

    @p_consistency_checks.setter
    def p_consistency_checks(self, value: Any) -> None:
        self._p = _probability(value, self._p)

    @property
    def consistency_checks_attempted(self) -> int:
        """Number of consistency checks started."""
        return self._attempted

    @property
    def consistency_checks_passed(self) -> int:
        """Number of consistency checks that found the same value."""
        return self._passed

    @property
    def consistency_checks_failed(self) -> int:
        """Number of consistency checks that did not pass (attempted - passed)."""
        return self._attempted - self._passed

    def get_params(self) -> dict[str, Any]:
        """Return the parameters that rebuild this wrapper.

        Returns
        -------
        dict of str to object
            ``p_consistency_checks`` and ``wrapped_dict``, sorted by name.
        """
        return sorted_params({"p_consistency_checks": self._p, "wrapped_dict": self._inner})

    def __setitem__(self, key: Any, value: ValueType | Joker) -> None:
        """Insert ``value`` unless the key exists; a later write is ignored.

        Parameters
        ----------
        key : str or sequence of str
            The key to write.
        value : object
            The value; ``KEEP_CURRENT`` does nothing.

        Raises
        ------
        WriteOnceConsistencyError
            A consistency check found another value stored (a
            MutationPolicyError and a ValueError).
        MutationPolicyError
            The value is ``DELETE_CURRENT``.
        TypeError
            ``value`` is not an instance of ``base_class_for_values`` or
            cannot be serialized, or ``key`` is invalid.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The wrapped store failed.

        Notes
        -----
        Atomic: the insert is an insert-if-absent on the wrapped store's
        bytes, so of concurrent writers of one key exactly one value is kept.
        """
        # The write-once rule itself is the commit point's (_keeps_first_write).
        super().__setitem__(key, value)
        if value is not KEEP_CURRENT and self._p > 0 and random.random() < self._p:
            self._check_consistency(to_key(key), value)

    def value_digest(self, key: Any, value: Any) -> str:
        """Return the SHA-256 hex digest of ``value`` serialized as this store stores it.

        The codec is the wrapped store's (pickle for "pkl", jsonpickle for
        "json", UTF-8 text otherwise), so two values with the same digest
        are stored as the same bytes.

        Parameters
        ----------
        key : str or sequence of str
            The key (named in errors).
        value : object
            The value to digest.

        Returns
        -------
        str
            64 hex digits.

        Raises
        ------
        TypeError
            ``value`` cannot be serialized, or ``key`` is invalid.
        ValueError
            ``key`` is empty or a component is invalid.
        """
        return hashlib.sha256(self._encode(to_key(key), value)).hexdigest()

    def _check_consistency(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        self._attempted += 1
        stored = self._inner[key]
        if self.value_digest(key, value) != self.value_digest(key, stored):
            raise WriteOnceConsistencyError(
                key.strings,
                f"{type(value).__name__} {value!r:.80} != {type(stored).__name__} {stored!r:.80}",
            )
        self._passed += 1

    def set_item_if(
        self,
        key: Any,
        *,
        value: ValueType | Joker,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[ValueType]:
        """Refuse: conditional overwrites contradict write-once semantics.

        Use ``d[key] = value`` or ``setdefault_if`` to insert.

        Parameters
        ----------
        key : str or sequence of str
            Not used.
        value : object
            Not used.
        condition : ETagConditionFlag
            Not used.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            Not used.
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Not used.

        Returns
        -------
        ConditionalOperationResult
            Never returns.

        Raises
        ------
        MutationPolicyError
            Always, before anything is read or written.
        ConcurrencyConflictError, TypeError
            Never.

        Notes
        -----
        Atomic trivially: nothing happens.
        """
        raise self._policy_error()

    def get_subdict(self, prefix_key: Any) -> WriteOnceDict[ValueType]:
        """Return a WriteOnceDict over the wrapped store's subdict.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        WriteOnceDict
            With the same ``p_consistency_checks``.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        """
        return WriteOnceDict(
            wrapped_dict=self._inner.get_subdict(prefix_key), p_consistency_checks=self._p
        )
