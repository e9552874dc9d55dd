"""Worker functions for the wrapper tests that run in real child processes.

They live at module top level so ``multiprocessing`` can start them with the
'spawn' method (the child imports this module by name). Every worker reports
what *it* did and saw; the tests compare the reports with each other and with
the end state read around the store.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from persidict import MutationPolicyError, WriteOnceDict

BARRIER_TIMEOUT = 60.0


def exercise_pickled_stores(pickled: bytes, queue: Any) -> None:
    """Unpickle a list of (name, store) pairs and use each one.

    For each store: report every item seen, then write ``("from_child",)``.
    Mutable stores also increment ``("counter",)`` with transform_item.
    """
    try:
        report: dict[str, Any] = {}
        for name, d in pickle.loads(pickled):
            seen = {tuple(k): v for k, v in d.items()}
            d["from_child"] = f"hello from {name}"
            if not d.append_only:
                d.transform_item("counter", transformer=lambda v: v + 1)
            report[name] = (type(d).__name__, seen, d["from_child"])
        queue.put(("ok", report))
    except BaseException:  # report anything to the parent
        queue.put(("error", traceback.format_exc()))


def write_once_writer(
    worker_id: int,
    pickled_store: bytes,
    keys: list[str],
    n_rounds: int,
    barrier: Any,
    queue: Any,
) -> None:
    """Write this worker's own value to every key, round after round.

    Every round starts on the barrier, so the workers really race. After its
    writes a worker reads every key back. With p_consistency_checks=1 a write
    whose value differs from the stored one raises ValueError: the worker
    records, per round, for which keys its write was accepted (no error).

    Reports ``{"accepted": [set of keys per round], "read": [dict per round]}``.
    """
    try:
        d: WriteOnceDict = pickle.loads(pickled_store)
        accepted: list[list[str]] = []
        reads: list[dict[str, Any]] = []
        other_errors: list[str] = []
        for rnd in range(n_rounds):
            barrier.wait(BARRIER_TIMEOUT)
            ok: list[str] = []
            for key in keys:
                try:
                    d[key] = f"w{worker_id}:{key}"
                    ok.append(key)
                except ValueError:
                    pass  # divergent value found by the consistency check
                except MutationPolicyError as exc:  # never expected from __setitem__
                    other_errors.append(f"round {rnd} key {key}: {exc!r}")
            accepted.append(ok)
            reads.append({key: d[key] for key in keys})
        queue.put(
            (
                "ok",
                worker_id,
                {
                    "accepted": accepted,
                    "read": reads,
                    "errors": other_errors,
                    "checks": (d.consistency_checks_attempted, d.consistency_checks_passed),
                },
            )
        )
    except BaseException:  # report anything to the parent
        queue.put(("error", worker_id, traceback.format_exc()))
