"""Reads of one consistent snapshot: get_item_if, get_with_etag, etag, timestamp."""

from __future__ import annotations

from typing import Any

from .flags import (
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    RetrieveValueFlag,
    check_condition_args,
    condition_holds,
)
from .keys import NonEmptySafeStrTuple, to_key
from .races import absent, wants_value
from .results import ConditionalOperationResult, ValueType
from .values import StoreCore, Version


class ReadOps(StoreCore[ValueType]):
    """The snapshot reads every etag-guarded operation starts from."""

    def _snapshot(
        self,
        key: NonEmptySafeStrTuple,
        retrieve_value: RetrieveValueFlag,
        expected: ETagValue | ItemNotAvailableFlag,
        need_value: bool = True,
    ) -> Version:
        """Read a key fetching only what the retrieve_value rule may report."""
        if not need_value or retrieve_value is NEVER_RETRIEVE:
            return self._get(key, retrieve=False)
        if retrieve_value is IF_ETAG_CHANGED and isinstance(expected, str):
            return self._get(key, retrieve=True, if_none_match=expected)
        return self._get(key, retrieve=True)

    @staticmethod
    def _as_read(
        version: Version,
        condition: ETagConditionFlag,
        expected: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag,
    ) -> ConditionalOperationResult[Any]:
        """The result of an operation that wrote nothing: ``condition`` on the snapshot read."""
        if absent(version.etag):
            reported = ITEM_NOT_AVAILABLE
        elif wants_value(retrieve_value, expected, version.etag):
            reported = version.value
        else:
            reported = VALUE_NOT_RETRIEVED
        satisfied = condition_holds(condition, expected, version.etag)
        return ConditionalOperationResult(satisfied, version.etag, version.etag, reported)

    def get_item_if(
        self,
        key: Any,
        *,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[ValueType]:
        """Read a key and evaluate an etag condition against it, atomically.

        Nothing is written: the result says whether ``condition`` held at the
        instant of the read, and the etag and value seen then.

        Parameters
        ----------
        key : str or sequence of str
            The key to read.
        condition : ETagConditionFlag
            ``ANY_ETAG``, ``ETAG_IS_THE_SAME`` or ``ETAG_HAS_CHANGED``: how the
            actual etag must compare with ``expected_etag``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller last saw, or ``ITEM_NOT_AVAILABLE`` for
            "the key was absent".
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Whether ``new_value`` reports a present value: ``ALWAYS_RETRIEVE``,
            ``NEVER_RETRIEVE`` (``VALUE_NOT_RETRIEVED`` instead) or
            ``IF_ETAG_CHANGED`` (only if ``expected_etag`` differs from the
            actual etag, so an unchanged value is not transferred again).

        Returns
        -------
        ConditionalOperationResult
            ``condition_was_satisfied``; ``actual_etag`` and ``resulting_etag``
            (both the etag read, ``ITEM_NOT_AVAILABLE`` if absent); and
            ``new_value``: ``ITEM_NOT_AVAILABLE`` if the key is absent, else
            the value or ``VALUE_NOT_RETRIEVED`` as ``retrieve_value`` says.

        Raises
        ------
        TypeError
            A flag argument has the wrong type (the message names it), or
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.

        Notes
        -----
        Atomic: etag, value and condition come from one snapshot of the key
        (one request on S3; a ``GET If-None-Match`` for ``IF_ETAG_CHANGED``).
        """
        check_condition_args(condition, expected_etag, retrieve_value)
        k = to_key(key)
        version = self._snapshot(k, retrieve_value, expected_etag)
        return self._as_read(version, condition, expected_etag, retrieve_value)

    def get_with_etag(self, key: Any) -> ConditionalOperationResult[ValueType]:
        """Return the value of a key together with its etag, from one snapshot.

        Parameters
        ----------
        key : str or sequence of str
            The key to read.

        Returns
        -------
        ConditionalOperationResult
            ``condition_was_satisfied`` is True; ``actual_etag`` and
            ``resulting_etag`` are the etag read; ``new_value`` is the value
            (``ITEM_NOT_AVAILABLE`` for both if the key is absent).

        Raises
        ------
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.

        Notes
        -----
        Atomic: the etag belongs to exactly the value returned, so it can be
        passed as ``expected_etag`` to a later ``set_item_if``.
        """
        k = to_key(key)
        version = self._get(k, retrieve=True)
        return ConditionalOperationResult(True, version.etag, version.etag, version.value)

    def etag(self, key: Any) -> ETagValue:
        """Return the current etag of a key.

        Parameters
        ----------
        key : str or sequence of str
            The key to look up.

        Returns
        -------
        ETagValue
            An opaque tag that changes with every write of the key.

        Raises
        ------
        KeyError
            The key is absent.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        """
        k = to_key(key)
        etag = self._get(k, retrieve=False).etag
        if isinstance(etag, ItemNotAvailableFlag):
            raise KeyError(k)
        return etag

    def timestamp(self, key: Any) -> float:
        """Return the POSIX time of the last write of ``key``.

        Parameters
        ----------
        key : str or sequence of str
            The key to look up.

        Returns
        -------
        float
            Seconds since the epoch (file mtime, S3 LastModified, or the
            RAM store's write clock).

        Raises
        ------
        KeyError
            The key is absent.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error).
        """
        return self._timestamp(to_key(key))
