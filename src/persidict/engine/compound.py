"""Operations built on the etag-guarded ones: setdefault, pop, popitem, discard.

Each is a loop of snapshot and conditional commit (see ``conditional.py``),
so it is linearizable wherever the backend's primitives are atomic.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from .errors import ConcurrencyConflictError, OutcomeUnknownError, PreconditionFailed
from .flags import DELETE_CURRENT, ITEM_NOT_AVAILABLE, KEEP_CURRENT
from .keys import NonEmptySafeStrTuple, to_key
from .races import MAX_RACES, absent, races
from .results import ValueType
from .transform import TransformOps
from .values import Version

_Default = TypeVar("_Default")


class CompoundOps(TransformOps[ValueType]):
    """setdefault, pop, popitem, discard, delete_if_exists (transform_item: TransformOps)."""

    @overload
    def setdefault(self, key: Any, default: None = None) -> ValueType | None: ...
    @overload
    def setdefault(self, key: Any, default: ValueType) -> ValueType: ...
    def setdefault(self, key: Any, default: ValueType | None = None) -> ValueType | None:
        """Insert ``default`` if the key is absent; return the value now stored.

        Parameters
        ----------
        key : str or sequence of str
            The key to look up or insert.
        default : object, default None
            The value to insert if the key is absent.

        Returns
        -------
        object
            ``default`` if this call inserted it, else the present value.

        Raises
        ------
        TypeError
            ``default`` is a joker, or it would be inserted and is not an
            instance of ``base_class_for_values`` or cannot be serialized;
            or ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        MutationPolicyError
            Never: inserting into an append-only store is allowed.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic insert-if-absent: of many concurrent callers exactly one
        inserts, and every caller returns that one value.
        """
        k = to_key(key)
        if default is KEEP_CURRENT or default is DELETE_CURRENT:
            raise TypeError(f"key {k.strings!r}: {default!r} cannot be a default value")
        try:
            self._check_value(k, default)
        except TypeError:
            # An invalid default is only an error if it would be inserted.
            version = self._get(k, retrieve=True)
            if absent(version.etag):
                raise
            present: ValueType = version.value
            return present
        for _ in races():
            try:
                self._put(k, default, if_match=ITEM_NOT_AVAILABLE)
                return default
            except PreconditionFailed:
                pass
            version = self._get(k, retrieve=True)
            if not absent(version.etag):
                present = version.value
                return present
        raise ConcurrencyConflictError(k, MAX_RACES)

    def _pop_version(self, k: NonEmptySafeStrTuple) -> Version:
        """Atomically remove ``k``; return the removed snapshot (etag absent if none)."""
        self._forbid_if_append_only()
        for _ in races():
            version = self._get(k, retrieve=True)
            if absent(version.etag):
                return version
            try:
                self._remove(k, if_match=version.etag)  # type: ignore[arg-type]
                return version
            except PreconditionFailed:
                continue
            except OutcomeUnknownError as exc:
                exc.value = version.value  # what was being removed reaches the caller
                raise
        raise ConcurrencyConflictError(k, MAX_RACES)

    @overload
    def pop(self, key: Any) -> ValueType: ...
    @overload
    def pop(self, key: Any, default: ValueType, /) -> ValueType: ...
    @overload
    def pop(self, key: Any, default: _Default, /) -> ValueType | _Default: ...
    def pop(self, key: Any, *args: Any) -> Any:
        """Remove a key and return its value, or ``default`` if it is absent.

        Parameters
        ----------
        key : str or sequence of str
            The key to remove.
        *args : object
            At most one: ``default``, returned when the key is absent
            (without it, an absent key raises KeyError).

        Returns
        -------
        object
            The value removed, or ``default``.

        Raises
        ------
        KeyError
            The key is absent and no ``default`` was given.
        MutationPolicyError
            The store is append-only.
        TypeError
            More than two arguments, or ``key`` is not a str or a sequence
            of str.
        ValueError
            ``key`` is empty or a component is invalid.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the delete's reply was lost; ``exc.value`` holds the
            value being removed.

        Notes
        -----
        Atomic: the value returned is exactly the one deleted (a
        conditional delete on its etag), so of concurrent callers popping
        one key only one gets its value.
        """
        if len(args) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(args)}")
        k = to_key(key)
        version = self._pop_version(k)
        if absent(version.etag):
            if args:
                return args[0]
            raise KeyError(k)
        return version.value

    def popitem(self) -> tuple[NonEmptySafeStrTuple, ValueType]:
        """Remove and return some ``(key, value)`` pair.

        Returns
        -------
        tuple of (NonEmptySafeStrTuple, object)
            The key removed and its value.

        Raises
        ------
        KeyError
            The store is empty.
        MutationPolicyError
            The store is append-only.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic per item: each item goes to exactly one caller, and KeyError
        is raised only when a listing finds no key at all. Which item is
        taken is unspecified.
        """
        self._forbid_if_append_only()
        for _ in races():
            listed_any = False
            for k, _ in self._iter_keys():
                listed_any = True
                version = self._pop_version(k)
                if not absent(version.etag):
                    return k, version.value
            # Every key listed was popped by others first: list again. Only a
            # listing that finds no key at all shows the store empty.
            if not listed_any:
                raise KeyError("popitem(): dictionary is empty")
        raise ConcurrencyConflictError("popitem()", MAX_RACES)

    def discard(self, key: Any) -> bool:
        """Delete a key if it is present.

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.

        Returns
        -------
        bool
            Whether the key was present (and so deleted by this call).

        Raises
        ------
        MutationPolicyError
            The store is append-only.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic: of concurrent callers deleting one key, exactly one gets
        True.
        """
        k = to_key(key)
        self._forbid_if_append_only()
        return self._remove(k, if_match=None)

    def delete_if_exists(self, key: Any) -> bool:
        """Delete a key if present; kept for backward compatibility.

        The same as [`discard`][persidict.PersiDict.discard].

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.

        Returns
        -------
        bool
            Whether the key was present.

        Raises
        ------
        MutationPolicyError
            The store is append-only.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        """
        return self.discard(key)
