"""EmptyDict: the null device of stores."""

from __future__ import annotations

from ..engine.contract import ABSENT, Blob, ByteStore, Capabilities, IfMatch, Listed
from ..engine.errors import PreconditionFailed
from ..engine.flags import ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple, SafeStrTuple
from ..engine.persidict import PersiDict
from ..engine.results import ValueType


class NullBytes(ByteStore):
    """A ByteStore that holds nothing: writes succeed and vanish.

    It declares ``discards_writes``, so the engine reports what a write
    leaves as absent and never calls a transformer on a key that cannot exist.
    """

    name = "empty"
    capabilities = Capabilities(subdicts=True, discards_writes=True)

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited
        return Blob(ABSENT, None)

    def write(
        self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch
    ) -> ETagValue | ItemNotAvailableFlag:
        # docstring inherited
        if isinstance(if_match, str):
            raise PreconditionFailed  # nothing is ever present to match
        return ABSENT

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        if if_match is not None:
            raise PreconditionFailed
        return False

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        raise KeyError(key)

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        # docstring inherited
        return iter(())

    def count(self) -> int:
        # docstring inherited
        return 0

    def child(self, prefix: SafeStrTuple) -> NullBytes:
        # docstring inherited
        return self


class EmptyDict(PersiDict[ValueType]):
    """Accepts every write and discards it; always reads as empty.

    Writes are still validated (keys, jokers, base_class_for_values), so code
    that works against EmptyDict makes the same calls a real store accepts.
    The whole API is the engine's, over a ByteStore that keeps nothing and
    declares ``discards_writes``.

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

    _bytes = NullBytes()  # one for all: it holds nothing
