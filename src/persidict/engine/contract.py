"""The backend contract: a handful of atomic primitives every store implements.

A backend works on normalized keys (NonEmptySafeStrTuple) and implements:

- ``_get(key, retrieve=, if_none_match=)``: one consistent snapshot of a key,
  its etag and (optionally) its value;
- ``_put(key, value, if_match=)``: write unconditionally (``None``), only if
  absent (``ITEM_NOT_AVAILABLE``) or only if the current etag equals
  ``if_match``; raise PreconditionFailed otherwise. Must be atomic;
- ``_remove(key, if_match=)``: delete, unconditionally or only if the current
  etag equals ``if_match`` (PreconditionFailed otherwise). Must be atomic;
- ``_timestamp(key)``, ``_iter_keys(with_timestamps=)`` and ``get_subdict``.

Everything else (the mapping API, jokers, the ``*_if`` operations,
transform_item, pop, popitem, setdefault, append-only rules) is written once
on top of these in ``conditional.py`` and ``persidict.py``. A backend that is
atomic on its primitives is therefore linearizable on the whole API.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, NamedTuple

from .codecs import codec_for, is_text_format
from .errors import BackendError, MutationPolicyError
from .flags import (
    ETagValue,
    ItemNotAvailableFlag,
    Joker,
    ValueNotRetrievedFlag,
)
from .keys import _SAFE_RE, NonEmptySafeStrTuple


class Version(NamedTuple):
    """One consistent snapshot of a key: its etag and, if fetched, its value."""

    etag: ETagValue | ItemNotAvailableFlag
    value: Any  # the value, ITEM_NOT_AVAILABLE (absent) or VALUE_NOT_RETRIEVED


class Store:
    """The plain base of every store: ``isinstance(v, Store)`` skips ABC machinery.

    Every write asks it of its value (a store is never a value), so it must
    stay cheap: an ABC's instance check costs about three times more.
    """

    __slots__ = ()


class StoreCore(Store, ABC):
    """Configuration, value checks, codecs and the abstract primitives."""

    _backend_name = "abstract"

    def __init__(
        self,
        *,
        append_only: bool = False,
        base_class_for_values: type | None = None,
        serialization_format: str = "pkl",
    ) -> None:
        if not isinstance(append_only, bool):
            raise TypeError(f"append_only must be a bool, got {append_only!r}")
        if not isinstance(serialization_format, str):
            raise TypeError(
                f"serialization_format must be a str, got {type(serialization_format).__name__}"
            )
        if _SAFE_RE.fullmatch(serialization_format) is None or serialization_format.startswith("."):
            raise ValueError(
                f"serialization_format {serialization_format!r} must be a non-empty string "
                "of safe characters (it becomes a file extension)"
            )
        if base_class_for_values is not None and not isinstance(base_class_for_values, type):
            raise TypeError(
                f"base_class_for_values must be a class or None, got {base_class_for_values!r}"
            )
        if is_text_format(serialization_format) and (
            base_class_for_values is None or not issubclass(base_class_for_values, str)
        ):
            # Asked for explicitly, so that a typo ("jsn") is not taken for a text store.
            got = "None" if base_class_for_values is None else base_class_for_values.__name__
            raise ValueError(
                f"serialization_format {serialization_format!r} is neither 'pkl' nor 'json': "
                "such a format stores plain text and needs base_class_for_values=str "
                f"(or a str subclass), got {got}"
            )
        self._append_only = append_only
        self.base_class_for_values = base_class_for_values
        self.serialization_format = serialization_format
        self._encoder, self._decoder = codec_for(serialization_format)

    @property
    def append_only(self) -> bool:
        """Whether items are immutable and non-removable once written."""
        return self._append_only

    # -- values -------------------------------------------------------------

    def _check_value(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        """Reject jokers, stores and values of the wrong class before anything is written."""
        if isinstance(value, (Joker, ItemNotAvailableFlag, ValueNotRetrievedFlag, Store)):
            if isinstance(value, Store):
                raise TypeError(
                    f"key {key.strings!r}: a {type(value).__name__} store cannot be stored "
                    "as a value (store its items, or its get_params())"
                )
            raise TypeError(f"key {key.strings!r}: {value!r} is not allowed here")
        base = self.base_class_for_values
        if base is not None and not isinstance(value, base):
            raise TypeError(
                f"key {key.strings!r}: value of type {type(value).__name__} is not an "
                f"instance of base_class_for_values {base.__name__}"
            )

    def _check_loaded(self, key: NonEmptySafeStrTuple, value: Any) -> Any:
        """Return a value read from storage, or raise TypeError if it is of the wrong class.

        Another handle without the constraint may have stored it.
        """
        base = self.base_class_for_values
        if base is not None and not isinstance(value, base):
            raise self._wrong_class(key, value)
        return value

    def _wrong_class(self, key: NonEmptySafeStrTuple, value: Any) -> TypeError:
        """The error for a stored value that is not a ``base_class_for_values``."""
        base = self.base_class_for_values
        return TypeError(
            f"key {key.strings!r}: stored value of type {type(value).__name__} is not an "
            f"instance of base_class_for_values {getattr(base, '__name__', base)}"
        )

    def _encode(self, key: NonEmptySafeStrTuple, value: Any) -> bytes:
        """Serialize a value; failures name the key and the format."""
        try:
            return self._encoder(value)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError) as exc:
            # Only what an unserializable value raises: a MemoryError or a
            # signal handler's exception must not pass for a bad value.
            raise TypeError(
                f"key {key.strings!r}: cannot serialize a {type(value).__name__} "
                f"as {self.serialization_format!r}: {exc}"
            ) from exc

    def _decode(self, key: NonEmptySafeStrTuple, data: bytes, location: str) -> Any:
        """Deserialize stored bytes; a corrupt value names the key and where it lives."""
        try:
            value = self._decoder(data)
        except Exception as exc:  # a corrupt payload can make any decoder raise anything
            raise BackendError(
                f"key {key.strings!r}: stored value at {location} cannot be decoded as "
                f"{self.serialization_format!r}: {type(exc).__name__}: {exc}",
                backend=self._backend_name,
                operation="decode",
                key=key,
            ) from exc
        return self._check_loaded(key, value)

    _policy_name = "append-only"

    def _policy_error(self) -> MutationPolicyError:
        """The error for a mutation this store's policy forbids."""
        return MutationPolicyError(self._policy_name)

    def _forbid_if_append_only(self) -> None:
        if self._append_only:
            raise self._policy_error()

    # -- the primitives -----------------------------------------------------

    @abstractmethod
    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        """Snapshot of ``key``: (etag, value) or (ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE).

        The value is VALUE_NOT_RETRIEVED when ``retrieve`` is false or the etag
        equals ``if_none_match``.
        """

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        """Return the value of ``key`` or raise KeyError (no etag needed)."""
        version = self._get(key, retrieve=True)
        if isinstance(version.etag, ItemNotAvailableFlag):
            raise KeyError(key)
        return version.value

    @abstractmethod
    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        """Atomically store ``value``; return its etag (None if not wanted).

        ``if_match``: None writes unconditionally, ITEM_NOT_AVAILABLE only if
        the key is absent, an etag only if it is the current one. Raises
        PreconditionFailed (storing nothing) when the precondition fails.
        """

    @abstractmethod
    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        """Atomically delete ``key``; return whether it existed.

        With an etag, delete only if it is current; raise PreconditionFailed if
        the key is absent or has another etag.
        """

    def _contains(self, key: NonEmptySafeStrTuple) -> bool:
        return not isinstance(self._get(key, retrieve=False).etag, ItemNotAvailableFlag)

    @abstractmethod
    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        """POSIX time of the last write of ``key``; KeyError if absent."""

    @abstractmethod
    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        """Stream (key, timestamp or None) for every key of this store's format."""

    # -- parameters, pickling, repr -----------------------------------------

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters that rebuild this store.

        ``type(d)(**d.get_params())`` is a store on the same storage; a store
        pickles as these parameters.

        Returns
        -------
        dict of str to object
            The parameters, sorted by name.
        """
        return {
            "append_only": self._append_only,
            "base_class_for_values": self.base_class_for_values,
            "serialization_format": self.serialization_format,
        }

    def __reduce__(self) -> Any:
        # A store pickles as its parameters: get_params() rebuilds it.
        return (_restore, (type(self), self.get_params()))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _restore(cls: type[StoreCore], params: dict[str, Any]) -> StoreCore:
    return cls(**params)


def sorted_params(params: dict[str, Any]) -> dict[str, Any]:
    """Return ``params`` sorted by name (get_params promises sorted keys)."""
    return dict(sorted(params.items()))


