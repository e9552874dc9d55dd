"""len() and iteration over many keys, and memory while streaming them.

The floor is a recursive ``os.scandir`` walk of the same directory that
keeps the names of regular files (stripped of the suffix) and skips our
``@`` entries, i.e. what a listing has to do at the least. The peer is
``len(cache)`` and ``list(cache)`` of a diskcache holding as many keys
(its len() reads a counter, O(1)).

These passes repeat over an unchanged directory, so after the first they
reuse its checked names and keys (``backends/walk_memo.py``; each pass still
reads a fresh snapshot); the first pass of a fresh interpreter is timed by
``stream`` (``_measure_stream``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import tracemalloc
from collections.abc import Callable

import diskcache

from persidict import FileDirDict

from .common import SMALL_VALUE, Config, Scratch
from .harness import Body, Case, Results, Row, interleave


def scandir_walk(root: str, suffix: str = ".pkl") -> list[str]:
    """The floor: every key-file name under ``root``, recursively."""
    out: list[str] = []
    cut = -len(suffix)
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                name = e.name
                if name[0] == "@":
                    continue
                if name.endswith(suffix) and e.is_file(follow_symlinks=False):
                    out.append(name[:cut])
                elif e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return out


def _fill(base_dir: str, start: int, stop: int) -> None:
    d = FileDirDict(base_dir=base_dir, durable=False)
    for i in range(start, stop):
        d[f"key{i}"] = SMALL_VALUE


def fill_parallel(base_dir: str, n: int, procs: int = 2) -> None:
    """Write ``n`` keys with ``procs`` forked writers (setup, not timed)."""
    FileDirDict(base_dir=base_dir, durable=False)  # create the directory once
    ctx = multiprocessing.get_context("fork")
    step = -(-n // procs)
    workers = [ctx.Process(target=_fill, args=(base_dir, i * step, min(n, (i + 1) * step)))
               for i in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
        if w.exitcode != 0:
            raise RuntimeError(f"filling {base_dir} failed (exit code {w.exitcode})")


def run_listing(cfg: Config, places: dict[str, str], scratch: Scratch, results: Results,
                log: Callable[[str], None]) -> None:
    """Time len() and full iteration over cfg.listing_keys keys."""
    n = cfg.listing_keys
    for place, parent in places.items():
        section = f"{place}/fast/{n // 1000}k keys" if n >= 1000 else f"{place}/fast/{n} keys"
        log(f"listing: {section}")
        _list_place(cfg, parent, section, scratch, results)


def _list_place(cfg: Config, parent: str, section: str, scratch: Scratch,
                results: Results) -> None:
    n = cfg.listing_keys
    base = scratch.make(parent, "list-ours")
    fill_parallel(base, n)
    d = FileDirDict(base_dir=base, durable=False)
    peer = diskcache.Cache(scratch.make(parent, "list-dc"))
    with peer.transact():
        for i in range(n):
            peer.set(f"key{i}", SMALL_VALUE)
    try:
        assert len(d) == n == len(peer) == len(scandir_walk(base))

        def fixed(body: Body) -> Callable[[int], Body]:
            return lambda rep: body

        rows = {
            "len": [Case("ours", fixed(d.__len__), 1),
                    Case("floor", fixed(lambda: len(scandir_walk(base))), 1),
                    Case("diskcache", fixed(peer.__len__), 1)],
            "iterate keys": [Case("ours", fixed(lambda: list(iter(d))), 1),
                             Case("floor", fixed(lambda: scandir_walk(base)), 1),
                             Case("diskcache", fixed(lambda: list(iter(peer))), 1)],
            # list() asks len() first for a size hint: on a store whose len()
            # walks the directory, list(d) pays for two walks.
            "list(d)": [Case("ours", fixed(lambda: list(d)), 1),
                        Case("floor", fixed(lambda: scandir_walk(base)), 1),
                        Case("diskcache", fixed(lambda: list(peer)), 1)],
        }
        for op, cases in rows.items():
            note = f"per pass over {n} keys; floor: os.scandir walk"
            if op == "iterate keys":
                note += "; list(iter(store))"
            note += "; repeated passes (memoized checks)"
            results.add(Row(section, op, interleave(cases, cfg.reps), note))
    finally:
        peer.close()


def _measure_stream(base_dir: str, mode: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    d = FileDirDict(base_dir=base_dir, durable=False)
    if mode == "time":  # the first pass of a fresh process: nothing cached yet
        t0 = time.perf_counter()
        floor = len(scandir_walk(base_dir))
        t1 = time.perf_counter()
        count = sum(1 for _ in d)
        t2 = time.perf_counter()
        assert floor == count
        queue.put({"keys": count, "cold_us_per_key": (t2 - t1) / count * 1e6,
                   "floor_us_per_key": (t1 - t0) / count * 1e6})
        return
    import psutil

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    tracemalloc.start()
    count = 0
    for _ in d:
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = proc.memory_info().rss
    queue.put({"keys": count, "peak_bytes": peak, "rss_growth_bytes": rss1 - rss0})


def stream_memory(base_dir: str) -> dict[str, float]:
    """Iterate ``base_dir`` in fresh interpreters; return memory and cold-pass figures.

    Fresh (spawned, not forked), so that no cache of this process makes the
    iteration look cheaper than it is in a new program. One child times a
    first pass (and the floor's), another traces memory.
    """
    ctx = multiprocessing.get_context("spawn")
    out: dict[str, float] = {}
    for mode in ("time", "memory"):
        queue = ctx.Queue()
        p = ctx.Process(target=_measure_stream, args=(base_dir, mode, queue))
        p.start()
        out.update(queue.get(timeout=600))
        p.join(timeout=60)
    return out


def run_stream(cfg: Config, places: dict[str, str], scratch: Scratch, results: Results,
               log: Callable[[str], None]) -> None:
    """Peak traced memory while iterating N/10 and N keys: flat means streamed."""
    parent = places.get("tmpfs") or next(iter(places.values()))
    big, small = cfg.stream_keys, cfg.stream_keys // 10
    figures = {}
    for n in (small, big):
        log(f"stream: iterating {n} keys")
        base = scratch.make(parent, f"stream{n}")
        fill_parallel(base, n)
        figures[n] = stream_memory(base)
        assert figures[n]["keys"] == n, figures[n]
    results.facts["stream"] = {"small_keys": small, "big_keys": big,
                               "small": figures[small], "big": figures[big]}
