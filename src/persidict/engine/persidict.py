"""PersiDict: the dict-like API over the backend primitives."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import BackendError
from .flags import DELETE_CURRENT, KEEP_CURRENT, Joker
from .keys import NonEmptySafeStrTuple, to_key
from .results import ValueType
from .sampling import MISSING, SamplingOps

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

_Default = TypeVar("_Default")


class PersiDict(SamplingOps[ValueType], MutableMapping[NonEmptySafeStrTuple, ValueType]):
    """Abstract dict-like interface for durable key-value stores.

    Generic in the type of its values: ``FileDirDict[int](base_dir=...)``
    tells mypy that ``d[k]`` is an int (unparameterized: ``Any``). Checked
    at runtime only through ``base_class_for_values``.

    Keys are non-empty sequences of URL/filename-safe strings (a str is a
    one-component key). Insertion order is not preserved. Subclasses
    provide a ByteStore (``byte_store``, see ``contract.py``); every
    operation here is built on it, so it is as atomic as it is.

    Parameters
    ----------
    append_only : bool, default False
        Items can be inserted but never changed or deleted; a refused
        mutation raises MutationPolicyError.
    base_class_for_values : type or None, default None
        If given, every value written or read must be an instance of it
        (TypeError otherwise). Required to be ``str`` (or a subclass) for
        text formats.
    serialization_format : str, default "pkl"
        ``"pkl"`` (pickle), ``"json"`` (jsonpickle) or any other safe name,
        which stores plain text and is the file extension.

    Notes
    -----
    Atomicity: every conditional operation (``get_item_if``,
    ``set_item_if``, ``setdefault_if``, ``discard_if``) and everything built
    on them (``transform_item``, ``pop``, ``popitem``, ``setdefault``,
    ``discard``) is linearizable: it takes effect at one instant between
    call and return, and its result reports the etag seen then. A plain
    ``d[k] = v`` never tears. Listing (``len``, iteration, ``clear``) is not
    atomic. Each store class says how far its atomicity reaches (threads,
    processes, machines).

    A call that raises has not changed the store, except where the outcome
    cannot be known (``OutcomeUnknownError``, S3 only).
    """

    _abstract = True  # PersiDict() itself has no backend (StoreCore.__init__ refuses it)

    # -- item access ----------------------------------------------------------

    def __getitem__(self, key: Any) -> ValueType:
        """Return the value stored under ``key`` (``d[key]``).

        Parameters
        ----------
        key : str or sequence of str
            A str is a one-component key.

        Returns
        -------
        object
            The value, decoded from its stored form.

        Raises
        ------
        KeyError
            The key is absent.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        TypeError
            The stored value is not an instance of ``base_class_for_values``.
        BackendError
            The storage failed, or the stored value is corrupt (the message
            names the key and where it lives).
        """
        return self._load(to_key(key))

    @overload
    def get(self, key: Any) -> ValueType | None: ...
    @overload
    def get(self, key: Any, default: ValueType) -> ValueType: ...
    @overload
    def get(self, key: Any, default: _Default) -> ValueType | _Default: ...
    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default`` if it is absent.

        Parameters
        ----------
        key : str or sequence of str
            The key to read.
        default : object, default None
            Returned for an absent key.

        Returns
        -------
        object
            The value, or ``default``.

        Raises
        ------
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error).
        """
        try:
            return self._load(to_key(key))
        except KeyError:
            return default

    def __setitem__(self, key: Any, value: ValueType | Joker) -> None:
        """Store ``value`` under ``key`` (``d[key] = value``).

        ``KEEP_CURRENT`` leaves the key as it is; ``DELETE_CURRENT`` deletes
        it (a no-op if absent). Readers see the whole old or the whole new
        value, never a torn one.

        Parameters
        ----------
        key : str or sequence of str
            The key to write.
        value : object
            The value, or a joker.

        Raises
        ------
        MutationPolicyError
            The store is append-only and the key exists (an insert is
            atomic: of concurrent writers of a new key exactly one wins), or
            the value is ``DELETE_CURRENT`` on an append-only store.
        TypeError
            ``value`` is not an instance of ``base_class_for_values``, cannot
            be serialized, or is a store; or ``key`` is not a str or a
            sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The storage failed (an I/O or S3 error).
        OutcomeUnknownError
            S3 only: the reply was lost and the write cannot be proven.
        """
        k = to_key(key)
        if value is KEEP_CURRENT:
            return
        if value is DELETE_CURRENT:
            self.discard(k)
            return
        self._set(k, value)

    def __delitem__(self, key: Any) -> None:
        """Delete ``key`` (``del d[key]``).

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.

        Raises
        ------
        KeyError
            The key is absent.
        MutationPolicyError
            The store is append-only.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error).
        """
        k = to_key(key)
        self._forbid_if_append_only()
        if not self._remove(k, if_match=None):
            raise KeyError(k)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is present (``key in d``).

        Parameters
        ----------
        key : str or sequence of str
            The key to look up.

        Returns
        -------
        bool
            True if the key holds a value now.
        """
        return self._contains(to_key(key))

    # -- listing --------------------------------------------------------------

    def __iter__(self) -> Iterator[NonEmptySafeStrTuple]:
        """Iterate over the keys (``iter(d)``), streamed from a listing.

        Returns
        -------
        Iterator of NonEmptySafeStrTuple
            Every key of this store's serialization format, in no particular
            order. Not atomic: keys written or deleted while iterating may
            or may not appear.
        """
        return map(itemgetter(0), self._iter_keys())

    def __len__(self) -> int:
        """The number of keys (``len(d)``): a full listing, not atomic.

        Returns
        -------
        int
            The number of keys of this store's serialization format.
        """
        return self._bytes.count()

    def __bool__(self) -> bool:
        return next(iter(self._iter_keys()), None) is not None

    def keys(self) -> Iterator[NonEmptySafeStrTuple]:  # type: ignore[override]
        """Iterate over the keys (streamed, never listed in memory).

        Returns
        -------
        Iterator of NonEmptySafeStrTuple
            The keys, in no particular order (like ``iter(d)``).
        """
        return iter(self)

    def keys_and_timestamps(self) -> Iterator[tuple[NonEmptySafeStrTuple, float]]:
        """Iterate over ``(key, timestamp)`` pairs from one listing.

        Yields
        ------
        tuple of (NonEmptySafeStrTuple, float)
            Each key and the POSIX time of its last write.
        """
        yield from self._iter_keys(with_timestamps=True)  # type: ignore[misc]

    def items(self) -> Iterator[tuple[NonEmptySafeStrTuple, ValueType]]:  # type: ignore[override]
        """Iterate over ``(key, value)`` pairs.

        Each value is read when its key is reached; keys deleted while
        iterating are skipped.

        Yields
        ------
        tuple of (NonEmptySafeStrTuple, object)
            Each key and its value.
        """
        for k, _ in self._iter_keys():
            value = self._get_or_missing(k)
            if value is not MISSING:
                yield k, value

    def values(self) -> Iterator[ValueType]:  # type: ignore[override]
        """Iterate over the values (keys deleted while iterating are skipped).

        Yields
        ------
        object
            Each value.
        """
        for _, v in self.items():
            yield v

    def values_and_timestamps(self) -> Iterator[tuple[ValueType, float]]:
        """Iterate over ``(value, timestamp)`` pairs; keys deleted meanwhile are skipped.

        Yields
        ------
        tuple of (object, float)
            Each value and the POSIX time of its key's last write.
        """
        for _, value, ts in self.items_and_timestamps():
            yield value, ts

    def items_and_timestamps(self) -> Iterator[tuple[NonEmptySafeStrTuple, ValueType, float]]:
        """Iterate over ``(key, value, timestamp)`` triples; deleted keys are skipped.

        Yields
        ------
        tuple of (NonEmptySafeStrTuple, object, float)
            Each key, its value and the POSIX time of its last write.
        """
        for k, ts in self._iter_keys(with_timestamps=True):
            value = self._get_or_missing(k)
            if value is not MISSING:
                yield k, value, ts  # type: ignore[misc]

    def update(self, other: Any = (), /, **kwargs: ValueType | Joker) -> None:
        """Set items from a mapping or an iterable of pairs, then from ``kwargs``.

        Each item is one ``d[k] = v``; the update as a whole is not atomic.

        Parameters
        ----------
        other : Mapping or iterable of (key, value), optional
            The items to store first.
        **kwargs : object
            More items, keyed by one-component keys.

        Raises
        ------
        MutationPolicyError
            The store is append-only and a key exists (items before it are
            stored).
        TypeError
            A value is not an instance of ``base_class_for_values`` or cannot
            be serialized, or a key is not a str or a sequence of str.
        ValueError
            A key is empty or a component is invalid.
        """
        pairs = other.items() if isinstance(other, Mapping) else other
        for k, v in pairs:
            self[k] = v
        for k, v in kwargs.items():
            self[k] = v

    def __ior__(self, other: Any) -> Self:
        self.update(other)
        return self

    def __eq__(self, other: object) -> bool:
        """Equal to a mapping with the same content (any store, a dict...).

        Two stores of one type with the same parameters are the same store.
        Otherwise the lengths must agree and every key of ``other``, taken as
        a key, must hold an equal value here; a key or value that cannot be
        compared (KeyError, TypeError, AttributeError, ValueError, or a
        BackendError for bytes that do not decode) means unequal.
        """
        if self is other:
            return True
        if not isinstance(other, Mapping):
            return NotImplemented
        if type(other) is type(self):
            try:
                if other.get_params() == self.get_params():
                    return True
            except (TypeError, ValueError):
                pass
        try:
            if len(self) != len(other):
                return False
            for k in other:
                key = to_key(k)
                try:
                    mine = self._load(key)
                except BackendError:
                    if self._same_bytes(other, key):
                        continue  # what no value decodes from, held alike (cache records)
                    raise
                theirs = other[k]
                if mine is not theirs and not mine == theirs:
                    return False
        except (KeyError, TypeError, AttributeError, ValueError, BackendError):
            return False  # BackendError: a stored value that cannot be decoded
        return True

    def _same_bytes(self, other: object, key: NonEmptySafeStrTuple) -> bool:
        """Whether ``other`` is a store holding exactly this store's bytes under ``key``."""
        if not isinstance(other, PersiDict):
            return False
        data = self.byte_store.read(key).data
        return data is not None and data == other.byte_store.read(key).data

    # A mutable mapping, like dict: equal stores may hold other content later.
    __hash__ = None  # type: ignore[assignment]
