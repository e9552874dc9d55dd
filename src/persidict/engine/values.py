"""The value layer: configuration, codecs and policy over a ByteStore.

Every mutation goes through the commit points ``_put``, ``_set`` (a plain
``d[k] = v``) and ``_remove``: there jokers and stores are refused,
``base_class_for_values`` is checked, the append-only and write-once rules
are applied, and a value is encoded before the backend is called. Reads
decode in ``_decode``, which checks ``base_class_for_values`` again (another
handle without the constraint may have written the key). The engine modules
above this one (``reads.py`` to ``persidict.py``) build the whole API on
these and never encode or decode a value themselves.
"""

from __future__ import annotations

import pickle
from abc import ABC
from collections.abc import Iterator
from typing import Any, Generic, NamedTuple

from .codecs import codec_for, is_text_format
from .contract import ABSENT, ByteStore, IfMatch
from .errors import BackendError, MutationPolicyError, PreconditionFailed
from .flags import (
    VALUE_NOT_RETRIEVED,
    ETagValue,
    ItemNotAvailableFlag,
    Joker,
    ValueNotRetrievedFlag,
)
from .keys import NonEmptySafeStrTuple, is_safe_component
from .results import ValueType


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


_NOT_VALUES = (Joker, ItemNotAvailableFlag, ValueNotRetrievedFlag, Store)


# What decoding corrupt or foreign bytes raises (pickle; jsonpickle, whose
# fallbacks may warn: an error under -W error; UTF-8 text). Anything else (a signal
# handler's exception; a MemoryError, also when a corrupt length asked for too
# much) goes through unchanged, not disguised as a corrupt value.
_DECODE_ERRORS = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
    IndexError, KeyError, OverflowError, RecursionError, SystemError, Warning,
)


class StoreCore(Store, ABC, Generic[ValueType]):
    """Configuration, value checks, codecs and the two commit points.

    Generic in the type of the values (``ValueType``): for mypy only, the
    runtime check is ``base_class_for_values``.
    """

    _bytes: ByteStore
    _policy_name = "append-only"
    # Write-once: a plain write of a present key keeps the first value (no error).
    _keeps_first_write = False

    def __init__(
        self,
        *,
        append_only: bool = False,
        base_class_for_values: type | None = None,
        serialization_format: str = "pkl",
    ) -> None:
        if type(self).__dict__.get("_abstract"):  # the class itself, not a subclass
            raise TypeError(
                f"Can't instantiate abstract class {type(self).__name__}: use a concrete store"
            )
        if not isinstance(append_only, bool):
            raise TypeError(f"append_only must be a bool, got {append_only!r}")
        if not isinstance(serialization_format, str):
            raise TypeError(
                f"serialization_format must be a str, got {type(serialization_format).__name__}"
            )
        if not is_safe_component(serialization_format) or serialization_format.startswith("."):
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

    @property
    def byte_store(self) -> ByteStore:
        """The backend holding this store's bytes (the contract of ``engine/contract.py``).

        Wrappers and tools reach what a store keeps through this object.
        """
        return self._bytes

    # -- values -------------------------------------------------------------

    def _check_value(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        """Reject jokers, stores and values of the wrong class before anything is written."""
        if isinstance(value, _NOT_VALUES):
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

    def _decode(self, key: NonEmptySafeStrTuple, data: bytes) -> ValueType:
        """Deserialize stored bytes; a corrupt or wrong-class value names the key and where."""
        try:
            value: ValueType = self._decoder(data)
        except _DECODE_ERRORS as exc:
            raise BackendError(
                f"key {key.strings!r}: stored value at {self._bytes.location(key)} cannot be "
                f"decoded as {self.serialization_format!r}: {type(exc).__name__}: {exc}",
                backend=self._bytes.name,
                operation="decode",
                key=key,
            ) from exc
        base = self.base_class_for_values
        if base is not None and not isinstance(value, base):
            raise TypeError(
                f"key {key.strings!r}: stored value of type {type(value).__name__} is not an "
                f"instance of base_class_for_values {base.__name__}"
            )
        return value

    def _policy_error(self) -> MutationPolicyError:
        """The error for a mutation this store's policy forbids."""
        return MutationPolicyError(self._policy_name)

    def _forbid_if_append_only(self) -> None:
        """Refuse a removal up front (nothing can be removed from a null store)."""
        if self._append_only and not self._bytes.capabilities.discards_writes:
            raise self._policy_error()

    # -- reads ----------------------------------------------------------------

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        """Snapshot of ``key``: (etag, value) or (ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE).

        The value is VALUE_NOT_RETRIEVED when ``retrieve`` is false or the etag
        equals ``if_none_match``.
        """
        blob = self._bytes.read(key, body=retrieve, if_none_match=if_none_match)
        if blob.data is not None:
            return Version(blob.etag, self._decode(key, blob.data))
        if blob.etag is ABSENT:
            return Version(ABSENT, ABSENT)
        return Version(blob.etag, VALUE_NOT_RETRIEVED)

    def _load(self, key: NonEmptySafeStrTuple) -> ValueType:
        """Return the value of ``key`` or raise KeyError (no etag needed)."""
        data = self._bytes.read(key)[1]
        if data is None:
            raise KeyError(key)
        return self._decode(key, data)

    def _contains(self, key: NonEmptySafeStrTuple) -> bool:
        return self._bytes.contains(key)

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        return self._bytes.timestamp(key)

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        return self._bytes.scan(with_timestamps=with_timestamps)

    # -- the commit points ---------------------------------------------------

    def _put(
        self, key: NonEmptySafeStrTuple, value: Any, *, if_match: IfMatch
    ) -> ETagValue | ItemNotAvailableFlag:
        """Check, encode and atomically store ``value``; return its etag.

        ``if_match``: None writes unconditionally, ITEM_NOT_AVAILABLE only if
        the key is absent, an etag only if it is the current one; otherwise
        PreconditionFailed (nothing stored). Append-only: overwriting raises
        MutationPolicyError, a plain write becomes an insert (write-once: a
        plain write of a present key keeps the first value). A store that
        discards writes returns ITEM_NOT_AVAILABLE.
        """
        self._check_value(key, value)
        if self._append_only and if_match is not ABSENT:
            if if_match is not None:
                raise self._policy_error()
            data = self._encode(key, value)
            try:
                return self._bytes.write(key, data, if_match=ABSENT)
            except PreconditionFailed:
                if self._keeps_first_write:
                    return self._bytes.read(key, body=False).etag
                raise self._policy_error() from None
        return self._bytes.write(key, self._encode(key, value), if_match=if_match)

    def _set(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        """``d[k] = v``: ``_put(if_match=None)`` without the etag, which may cost a hash."""
        if self._append_only:  # the policy of a plain write is _put's
            self._put(key, value, if_match=None)
            return
        self._check_value(key, value)
        self._bytes.put(key, self._encode(key, value))

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        """Atomically delete ``key``; return whether it existed.

        With an etag, delete only if it is current (PreconditionFailed if the
        key is absent or has another etag). Append-only: MutationPolicyError.
        """
        self._forbid_if_append_only()
        return self._bytes.delete(key, if_match=if_match)

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


def _restore(cls: type[StoreCore[Any]], params: dict[str, Any]) -> StoreCore[Any]:
    return cls(**params)


def sorted_params(params: dict[str, Any]) -> dict[str, Any]:
    """Return ``params`` sorted by name (get_params promises sorted keys)."""
    return dict(sorted(params.items()))
