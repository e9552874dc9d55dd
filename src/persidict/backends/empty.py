"""EmptyDict: the null device of stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..engine.conditional import check_n_retries
from ..engine.contract import Version
from ..engine.errors import PreconditionFailed
from ..engine.flags import (
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    RetrieveValueFlag,
    check_condition_args,
    condition_holds,
)
from ..engine.keys import NonEmptySafeStrTuple, to_key
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult, OperationResult


class EmptyDict(PersiDict[Any]):
    """Accepts every write and discards it; always reads as empty.

    Writes are still validated (keys, jokers, base_class_for_values), so code
    that works against EmptyDict makes the same calls a real store accepts.

    Parameters
    ----------
    append_only : bool, default False
        Kept for the parameters; nothing is ever stored to protect.
    base_class_for_values : type or None, default None
        Values written must be instances of it.
    serialization_format : str, default "pkl"
        Kept for the parameters.

    Notes
    -----
    Atomic trivially: there is no state, so every operation sees the same
    empty store.
    """

    _backend_name = "empty"

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        return Version(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        if isinstance(if_match, str):
            raise PreconditionFailed  # nothing is ever present to match
        return None

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        if if_match is not None:
            raise PreconditionFailed
        return False

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        raise KeyError(key)

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        return iter(())

    def _discarded(
        self, key: Any, value: Any, condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag, retrieve_value: RetrieveValueFlag,
    ) -> ConditionalOperationResult[Any]:
        check_condition_args(condition, expected_etag, retrieve_value)
        k = to_key(key)
        if value is not None:
            self._check_value(k, value)
        satisfied = condition_holds(condition, expected_etag, ITEM_NOT_AVAILABLE)
        return ConditionalOperationResult(
            satisfied, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE
        )

    def set_item_if(
        self, key: Any, *, value: Any, condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Evaluate the condition against an absent key; discard the write.

        Parameters
        ----------
        key : str or sequence of str
            Validated only.
        value : object
            Validated (unless a joker), then discarded.
        condition : ETagConditionFlag
            Evaluated against ``ITEM_NOT_AVAILABLE``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller expects.
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Checked for its type only: there is never a value.

        Returns
        -------
        ConditionalOperationResult
            Every etag and ``new_value`` is ``ITEM_NOT_AVAILABLE``;
            ``condition_was_satisfied`` as the condition says.

        Raises
        ------
        TypeError
            A flag argument has the wrong type, the value is not an instance
            of ``base_class_for_values``, or ``key`` is not a str or a
            sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        MutationPolicyError, ConcurrencyConflictError
            Never: nothing is stored, so nothing is refused or contended.

        Notes
        -----
        Atomic trivially: the key is always absent.
        """
        from ..engine.flags import Joker

        return self._discarded(
            key, None if isinstance(value, Joker) else value, condition, expected_etag,
            retrieve_value,
        )

    def setdefault_if(
        self, key: Any, *, default_value: Any, condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Evaluate the condition against an absent key; discard the default.

        Parameters
        ----------
        key : str or sequence of str
            Validated only.
        default_value : object
            Validated, then discarded.
        condition : ETagConditionFlag
            Evaluated against ``ITEM_NOT_AVAILABLE``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller expects.
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Checked for its type only: there is never a value.

        Returns
        -------
        ConditionalOperationResult
            Every etag and ``new_value`` is ``ITEM_NOT_AVAILABLE``;
            ``condition_was_satisfied`` as the condition says.

        Raises
        ------
        TypeError
            A flag argument has the wrong type, the value is not an instance
            of ``base_class_for_values``, or ``key`` is not a str or a
            sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        ConcurrencyConflictError
            Never: nothing is contended.

        Notes
        -----
        Atomic trivially: the key is always absent.
        """
        self._check_value(to_key(key), default_value)
        return self._discarded(key, default_value, condition, expected_etag, retrieve_value)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Return ``default`` without storing it.

        Parameters
        ----------
        key : str or sequence of str
            Validated only.
        default : object, default None
            Validated, then returned.

        Returns
        -------
        object
            ``default``.

        Raises
        ------
        TypeError
            ``default`` is not an instance of ``base_class_for_values``, or
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.

        Notes
        -----
        Atomic trivially: nothing is stored.
        """
        k = to_key(key)
        self._check_value(k, default)
        return default

    def discard(self, key: Any) -> bool:
        """Return False: no key ever exists.

        Parameters
        ----------
        key : str or sequence of str
            Validated only.

        Returns
        -------
        bool
            Always False.

        Raises
        ------
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        MutationPolicyError
            Never, even when append-only: there is nothing to delete.

        Notes
        -----
        Atomic trivially: nothing is stored.
        """
        to_key(key)
        return False

    def delete_if_exists(self, key: Any) -> bool:
        """Return False; kept for backward compatibility.

        The same as [`discard`][persidict.PersiDict.discard].

        Parameters
        ----------
        key : str or sequence of str
            Validated only.

        Returns
        -------
        bool
            Always False.

        Raises
        ------
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        """
        return self.discard(key)

    def transform_item(
        self, key: Any, *, transformer: Any, n_retries: int | None = 6
    ) -> OperationResult[Any]:
        """Do nothing: the transformer is not called.

        Parameters
        ----------
        key : str or sequence of str
            Validated only.
        transformer : callable
            Ignored.
        n_retries : int or None, default 6
            Validated only.

        Returns
        -------
        OperationResult
            ``ITEM_NOT_AVAILABLE`` for both etag and value.

        Raises
        ------
        TypeError
            ``n_retries`` is not an int or None, or ``key`` is invalid.
        ValueError
            ``n_retries`` is negative, or ``key`` is empty or invalid.
        ConcurrencyConflictError, MutationPolicyError
            Never.

        Notes
        -----
        Atomic trivially: nothing is read or stored.
        """
        check_n_retries(n_retries)
        to_key(key)
        return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)

    def get_subdict(self, prefix_key: Any) -> EmptyDict:
        """Return a new EmptyDict with the same configuration.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        EmptyDict
            An empty store.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        """
        return EmptyDict(**self.get_params())
