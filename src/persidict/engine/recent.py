"""Recent: a bounded memo of recently used entries that stays cheap when missed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(dict[K, V], Generic[K, V]):
    """``recent[k]``: ``make(k)``, remembered; at most about ``2 * size`` entries.

    Two generations: when this one holds ``size`` entries it becomes the old
    one (the previous old one is dropped), and an old entry used again moves
    back into the new one. So a hot set of up to ``size`` keys is never
    recomputed, however many other keys pass through, and memory stays
    bounded whatever the store's size. A hit is a plain dict lookup (in C).
    """

    def __init__(self, make: Callable[[K], V], size: int) -> None:
        super().__init__()
        self._make = make
        self._size = size
        self._old: dict[K, V] = {}

    def __missing__(self, key: K) -> V:
        old = self._old  # read once: another thread may turn the generations over meanwhile
        value = old[key] if key in old else self._make(key)
        if len(self) >= self._size:
            self._old = dict(self)
            self.clear()
        self[key] = value
        return value
