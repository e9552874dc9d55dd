"""Prefixes, age and sampling: subdicts, newest/oldest keys and values, random_key."""

from __future__ import annotations

import copy
import heapq
import random
from typing import TYPE_CHECKING, Any

from .compound import CompoundOps
from .keys import NonEmptySafeStrTuple, SafeStrTuple, to_prefix
from .results import ValueType

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

    from ..eviction import EvictReport

MISSING = object()
"""What ``_get_or_missing`` returns for a key deleted since it was listed."""


class SamplingOps(CompoundOps[ValueType]):
    """Operations over the listing: prefixes, age order, sampling."""

    def _get_or_missing(self, k: NonEmptySafeStrTuple) -> Any:
        try:
            return self._load(k)
        except KeyError:
            return MISSING

    # -- prefixes ---------------------------------------------------------------

    def get_subdict(self, prefix_key: Any) -> Self:
        """Return a store restricted to the keys under ``prefix_key``.

        The subdict shares this store's storage and parameters: ``sub[k]``
        is ``self[prefix_key + k]``.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the whole key space.

        Returns
        -------
        PersiDict
            A store of the same type.

        Raises
        ------
        NotImplementedError
            The store has no hierarchical key space.
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.

        Notes
        -----
        Built on ``byte_store.child``: the same configuration over the
        child's bytes (``capabilities.subdicts``).
        """
        child = self._bytes.child(to_prefix(prefix_key))
        clone = copy.copy(self)  # rebuilt from get_params()
        clone._bytes = child  # noqa: SLF001  (a copy of self: this class's own attribute)
        return clone

    def subdicts(self) -> dict[str, Self]:
        """Map each first-level key component with keys below it to its subdict.

        Returns
        -------
        dict of str to PersiDict
            ``{name: self.get_subdict(name)}`` for every ``name`` that is the
            first of two or more components of some key.
        """
        firsts: dict[str, None] = {}
        for k, _ in self._iter_keys():
            if len(k) > 1:
                firsts.setdefault(k.strings[0], None)
        return {name: self.get_subdict(SafeStrTuple(name)) for name in firsts}

    # -- age and sampling -------------------------------------------------------

    def _by_age(self, max_n: int | None, newest: bool) -> list[NonEmptySafeStrTuple]:
        if max_n is not None and max_n <= 0:
            return []
        stamped: Any = self._iter_keys(with_timestamps=True)
        pick = heapq.nlargest if newest else heapq.nsmallest
        if max_n is None:
            return [k for k, _ in sorted(stamped, key=lambda p: p[1], reverse=newest)]
        return [k for k, _ in pick(max_n, stamped, key=lambda p: p[1])]

    def newest_keys(self, *, max_n: int | None = None) -> list[NonEmptySafeStrTuple]:
        """Return up to ``max_n`` keys by the time of their last write, newest first.

        Parameters
        ----------
        max_n : int or None, default None
            How many keys at most: all if None, none if <= 0.

        Returns
        -------
        list of NonEmptySafeStrTuple
            The keys, newest first (one listing with timestamps).
        """
        return self._by_age(max_n, newest=True)

    def oldest_keys(self, *, max_n: int | None = None) -> list[NonEmptySafeStrTuple]:
        """Return up to ``max_n`` keys by the time of their last write, oldest first.

        Parameters
        ----------
        max_n : int or None, default None
            How many keys at most: all if None, none if <= 0.

        Returns
        -------
        list of NonEmptySafeStrTuple
            The keys, oldest first (one listing with timestamps).
        """
        return self._by_age(max_n, newest=False)

    def newest_values(self, *, max_n: int | None = None) -> list[ValueType]:
        """Return the values of ``newest_keys(max_n=max_n)``, newest first.

        Parameters
        ----------
        max_n : int or None, default None
            How many values at most: all if None, none if <= 0.

        Returns
        -------
        list of object
            The values; keys deleted after the listing are skipped.
        """
        return self._values_of(self.newest_keys(max_n=max_n))

    def oldest_values(self, *, max_n: int | None = None) -> list[ValueType]:
        """Return the values of ``oldest_keys(max_n=max_n)``, oldest first.

        Parameters
        ----------
        max_n : int or None, default None
            How many values at most: all if None, none if <= 0.

        Returns
        -------
        list of object
            The values; keys deleted after the listing are skipped.
        """
        return self._values_of(self.oldest_keys(max_n=max_n))

    def _values_of(self, keys: list[NonEmptySafeStrTuple]) -> list[ValueType]:
        values = (self._get_or_missing(k) for k in keys)
        return [v for v in values if v is not MISSING]

    def random_key(self) -> NonEmptySafeStrTuple | None:
        """Return a uniformly random key, or None if the store is empty.

        Reservoir sampling over one streamed listing: memory stays constant.

        Returns
        -------
        NonEmptySafeStrTuple or None
            A key, or None for an empty store.
        """
        chosen: NonEmptySafeStrTuple | None = None
        for n, (k, _) in enumerate(self._iter_keys(), start=1):
            if random.randrange(n) == 0:
                chosen = k
        return chosen

    def clear(self) -> None:
        """Remove every item of this store's serialization format.

        Not atomic as a whole: each key is deleted on its own, so keys
        written meanwhile may survive.

        Raises
        ------
        MutationPolicyError
            The store is append-only.
        BackendError
            The storage failed (an I/O or S3 error).
        """
        self._forbid_if_append_only()
        for k, _ in list(self._iter_keys()):
            self._remove(k, if_match=None)

    def evict(
        self, *, older_than: float | None = None, max_items: int | None = None
    ) -> EvictReport:
        """Remove entries older than ``older_than`` and beyond ``max_items``, oldest first.

        The method form of :func:`persidict.evict` (the ``persidict evict``
        command): safe while other processes read and write, because an
        entry is deleted only if it is still the version that was listed, so
        a concurrent write is never undone. Memoize leases are not counted.

        Parameters
        ----------
        older_than : float, optional
            Remove entries last written more than this many seconds ago.
        max_items : int, optional
            Then remove the oldest of the rest until at most this many remain.

        Returns
        -------
        EvictReport
            The keys removed, and those kept because they changed meanwhile.

        Raises
        ------
        TypeError, ValueError
            If a limit is not a non-negative number (``max_items``: an int).
        MutationPolicyError
            If the store is append-only.
        """
        from ..eviction import evict  # eviction is built on this class

        return evict(self, older_than=older_than, max_items=max_items)  # type: ignore[arg-type]
