"""``persidict-stress --kill N``: SIGKILL worker processes at random moments.

N kill times are drawn uniformly over the first 90% of the run. At each,
one live worker process, chosen at random, gets SIGKILL and a replacement
worker (a fresh worker id, so fresh tokens and its own log) starts, keeping
the load constant. Workers log each intent before an op and each outcome
after it, flushed at once, so a killed worker's confirmed outcomes still
count; the oracle treats its one unconfirmed op as unknown for the keys it
named. The run must still report 0 violations: kills may lose nothing that
was confirmed, leave no torn value, and block nobody.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any


class Killer:
    """Kills and replaces worker processes on a random schedule."""

    def __init__(
        self,
        n_kills: int,
        t0: float,
        duration: float,
        seed: int,
        handles: list[Any],
        start_worker: Callable[[], None],
    ) -> None:
        self.rng = random.Random(seed ^ 0x5EED)
        self.due = sorted(t0 + self.rng.uniform(0, 0.9 * duration) for _ in range(n_kills))
        self.handles = handles
        self.start_worker = start_worker
        self.killed: set[int] = set()  # indexes into handles (= worker ids)

    def next_due(self) -> float | None:
        """Wall time of the next kill, None when all are done."""
        return self.due[0] if self.due else None

    def tick(self, now: float) -> None:
        """Perform every kill that is due by ``now``."""
        while self.due and self.due[0] <= now:
            self.due.pop(0)
            alive = [
                wid
                for wid, h in enumerate(self.handles)
                if wid not in self.killed and h.is_alive()
            ]
            if not alive:
                continue
            wid = self.rng.choice(alive)
            handle = self.handles[wid]
            try:
                os.kill(handle.pid, signal.SIGKILL)  # only our own worker, by pid
            except ProcessLookupError:
                continue
            handle.join(10)
            self.killed.add(wid)
            self.start_worker()
