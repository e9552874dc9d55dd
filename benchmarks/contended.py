"""Several processes at once: one contended counter, and disjoint keys.

Each run forks ``procs`` workers that build their own store, meet at a
barrier, then do their share of a fixed total of operations. Goodput is
completed operations per second of wall time from the first start to the
last finish. For the counter, lost updates = (sum of increments the workers
saw succeed) - (final counter value); it must be 0.

- ``ours transform_item``: FileDirDict(durable=False).transform_item(+1) with
  default arguments (the transformer runs under the key's lock); a worker that
  gets ConcurrencyConflictError stops, as a user's would, and is counted;
- ``diskcache incr``: Cache.incr on the same filesystem;
- disjoint keys: every worker writes its own keys (``d[k] = v`` / ``set``)
  and the bare-os floor (temp write + replace): scaling with processes.

Each figure is the median of ``contended_reps * RUNS_PER_REP`` runs.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import diskcache

from persidict import ITEM_NOT_AVAILABLE, ConcurrencyConflictError, FileDirDict

from .common import KINDS, SMALL_VALUE, Config, Scratch
from .files import Floor

KINDS_CONTENDED = ("ours transform_item", "diskcache incr")
KINDS_DISJOINT = ("ours set", "diskcache set", "floor write")
RUNS_PER_REP = 5
"""Runs per repetition: a run lasts ~40 ms, and on 2 shared CPUs one run's goodput
swings by 2x (the scheduler preempts a lock holder for ~1 ms), so medians need
many runs; the kinds alternate run by run, so a change of load hits them alike."""


def _worker(kind: str, root: str, key: str, ops: int, wid: int, barrier: Any,
            queue: Any) -> None:
    calls = 0

    def inc(value: object) -> int:
        nonlocal calls
        calls += 1
        return 1 if value is ITEM_NOT_AVAILABLE else value + 1  # type: ignore[operator]

    result: dict[str, Any] = {"wid": wid}
    try:
        if kind.startswith("ours"):
            store: Any = FileDirDict(base_dir=root, durable=False)
        elif kind.startswith("diskcache"):
            store = diskcache.Cache(root)
        else:
            store = Floor(root, False, KINDS["pkl100"])
        barrier.wait(timeout=60)
        c0, t0 = time.process_time(), time.perf_counter()
        done = 0
        if kind == "ours transform_item":
            try:
                for _ in range(ops):
                    store.transform_item(key, transformer=inc)  # default n_retries
                    done += 1
            except ConcurrencyConflictError:  # a user's worker would die here
                result["gave_up"] = True
        elif kind == "diskcache incr":
            for _ in range(ops):
                store.incr(key)
                done += 1
        elif kind == "ours set":
            for i in range(ops):
                store[f"w{wid}-{i}"] = SMALL_VALUE
                done += 1
        elif kind == "diskcache set":
            for i in range(ops):
                store.set(f"w{wid}-{i}", SMALL_VALUE)
                done += 1
        else:
            for i in range(ops):
                store.write(f"w{wid}-{i}", SMALL_VALUE)
                done += 1
        t1, c1 = time.perf_counter(), time.process_time()
        result.update(done=done, calls=calls, t0=t0, t1=t1, cpu=c1 - c0)
        if kind.startswith("diskcache"):
            store.close()
    except BaseException as exc:  # report, so the parent never waits forever
        result["error"] = f"{type(exc).__name__}: {exc}"
    queue.put(result)


def run_once(kind: str, root: str, procs: int, total_ops: int, tag: str) -> dict[str, Any]:
    """One timed run of ``procs`` workers; returns goodput and correctness figures."""
    ctx = multiprocessing.get_context("fork")
    key = f"counter-{tag}"
    if kind == "ours transform_item":
        FileDirDict(base_dir=root, durable=False)[key] = 0
    elif kind == "diskcache incr":
        with diskcache.Cache(root) as c:
            c.set(key, 0)
    barrier = ctx.Barrier(procs)
    queue = ctx.Queue()
    share = total_ops // procs
    workers = [ctx.Process(target=_worker, args=(kind, root, key, share, w, barrier, queue))
               for w in range(procs)]
    for w in workers:
        w.start()
    reports = [queue.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError(f"{kind} x{procs}: {errors}")
    done = sum(r["done"] for r in reports)
    wall = max(r["t1"] for r in reports) - min(r["t0"] for r in reports)
    out: dict[str, Any] = {
        "ops": done,
        "wall_s": wall,
        "goodput": done / wall,
        "cpu_us_per_op": sum(r["cpu"] for r in reports) / done * 1e6,
    }
    if kind == "ours transform_item":
        final = FileDirDict(base_dir=root, durable=False)[key]
        out["lost_updates"] = done - final
        out["retries"] = sum(r["calls"] for r in reports) - done
        out["gave_up"] = sum(1 for r in reports if r.get("gave_up"))
    elif kind == "diskcache incr":
        with diskcache.Cache(root) as c:
            out["lost_updates"] = done - c.get(key)
    return out


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["goodput"])
    best = dict(ordered[len(ordered) // 2])
    best["goodput_runs"] = [round(r["goodput"]) for r in runs]
    if "lost_updates" in best:
        best["lost_updates"] = max(r["lost_updates"] for r in runs)  # the worst, not the median
    if "gave_up" in best:
        best["gave_up"] = max(r["gave_up"] for r in runs)
    return best


def run_contended(cfg: Config, places: dict[str, str], scratch: Scratch,
                  facts: dict[str, object], log: Callable[[str], None]) -> None:
    """Goodput of 1/2/4 processes on one counter and on disjoint keys (tmpfs)."""
    parent = places.get("tmpfs") or next(iter(places.values()))
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    dirs = {k: scratch.make(parent, "mp-" + k.replace(" ", "_"))
            for k in KINDS_CONTENDED + KINDS_DISJOINT}
    reps = cfg.contended_reps * (1 if cfg.smoke else RUNS_PER_REP)
    for rep in range(reps):
        for procs in cfg.contended_procs:
            for kind in KINDS_CONTENDED + KINDS_DISJOINT:
                log(f"contended: {kind} x{procs} (run {rep + 1}/{reps})")
                root = dirs[kind] if kind in KINDS_CONTENDED else \
                    scratch.make(parent, f"mp-{rep}-{procs}-" + kind.replace(" ", "_"))
                r = run_once(kind, root, procs, cfg.contended_ops, f"{rep}-{procs}")
                runs.setdefault(kind, {}).setdefault(procs, []).append(r)
    facts["contended"] = {
        "place": parent,
        "total_ops_per_run": cfg.contended_ops,
        "cpus": os.cpu_count(),
        "runs": {kind: {str(p): _median_run(rs) for p, rs in by.items()}
                 for kind, by in runs.items()},
    }
