"""A FaultProxy that injects faults at random, for stress runs under a steady fault load.

Each write request (PUT, POST, DELETE) is faulted with probability
``write_rate``: half of those are dropped before the server sees them,
half have their reply dropped after the server applied them. Each read
(GET, HEAD) has its reply dropped with probability ``read_rate``. The
random stream is seeded, counted per (method, mode) in :attr:`injected`,
and can be paused (:attr:`active`) so that setup and checks run clean.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

from faultproxy import Fault, FaultProxy

WRITES = frozenset({"PUT", "POST", "DELETE"})
READS = frozenset({"GET", "HEAD"})


class RandomFaultProxy(FaultProxy):
    """The proxy of faultproxy.py, with faults drawn at random instead of armed."""

    def __init__(
        self, upstream: str, *, write_rate: float, read_rate: float = 0.0, seed: int = 0
    ) -> None:
        if not (0 <= write_rate <= 1 and 0 <= read_rate <= 1):
            raise ValueError(f"rates must be in [0, 1], got {write_rate}, {read_rate}")
        self.write_rate = write_rate
        self.read_rate = read_rate
        self.active = True
        self.injected: Counter[str] = Counter()  # "PUT before", "GET after", ...
        self.requests: Counter[str] = Counter()  # per method, faulted or not
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        super().__init__(upstream)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        armed = super()._take_fault(method, path)  # an armed fault still comes first
        with self._rng_lock:
            self.requests[method] += 1
            if armed is not None or not self.active:
                return armed
            draw = self._rng.random()
            if method in WRITES and draw < self.write_rate:
                mode = "before" if draw < self.write_rate / 2 else "after"
            elif method in READS and draw < self.read_rate:
                mode = "after"
            else:
                return None
            self.injected[f"{method} {mode}"] += 1
        return Fault(mode, method, path, None)

    @property
    def faults(self) -> int:
        """How many faults were injected so far."""
        with self._rng_lock:
            return sum(self.injected.values())
