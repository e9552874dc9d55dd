"""ByteStoreDict: the whole PersiDict API over any ByteStore."""

from __future__ import annotations

from typing import Any

from ..engine.contract import ByteStore
from ..engine.persidict import PersiDict
from ..engine.results import ValueType
from ..engine.values import sorted_params


class ByteStoreDict(PersiDict[ValueType]):
    """A store over a given ByteStore, such as a third party's backend.

    Codecs, value checks, append-only rules and every operation of the API
    come from the engine; the ByteStore only keeps bytes (see
    ``engine/contract.py``). The store is as atomic as the ByteStore's five
    operations are. ``get_subdict`` needs ``capabilities.subdicts``.

    Parameters
    ----------
    byte_store : ByteStore
        Where the bytes live.
    serialization_format : str, default "pkl"
        ``"pkl"``, ``"json"`` or a text format (then ``base_class_for_values=str``).
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    base_class_for_values : type or None, default None
        If given, every value written or read must be an instance of it.

    Raises
    ------
    TypeError
        ``byte_store`` is not a ByteStore, or a parameter has the wrong type.
    ValueError
        A parameter is invalid.

    Notes
    -----
    Atomic as the ByteStore: every conditional operation is linearizable if
    its conditional ``write`` and ``delete`` are.
    """

    def __init__(
        self,
        *,
        byte_store: ByteStore,
        serialization_format: str = "pkl",
        append_only: bool = False,
        base_class_for_values: type | None = None,
    ) -> None:
        if not isinstance(byte_store, ByteStore):
            raise TypeError(f"byte_store must be a ByteStore, got {type(byte_store).__name__}")
        super().__init__(
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            serialization_format=serialization_format,
        )
        self._bytes = byte_store

    def get_params(self) -> dict[str, Any]:
        # docstring inherited
        params = super().get_params()
        params["byte_store"] = self._bytes
        return sorted_params(params)
