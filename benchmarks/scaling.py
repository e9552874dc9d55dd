"""How costs grow with the key count: 10k -> 100k -> 1M keys (issue 17).

One store per (filesystem, layout), grown in place from the smallest size
to the largest; at each size, interleaved with its floor:

- ``get``: ``d[k]`` of random keys; ``floor``: open + read + close +
  unpickle of the same kind of path (another random sample, same directory
  shape) with Python's ``open``; ``os floor``: the same with ``os.open``,
  ``os.read``, ``os.close`` (the calls a get makes: what is left is ours);
- ``overwrite``: ``d[k] = v`` of random existing keys (``durable=False``);
- ``len`` and ``iterate keys``: per key; floor: a bare ``os.scandir`` walk
  of the same tree (``listing.scandir_walk``);
- peak traced memory (tracemalloc) during one full iteration.

Then how each figure grows from the smallest size to the largest (wall and
CPU time). One-component keys ``key<i>``, ~100-byte pickled values,
``durable=False``. On a disk, the dirty pages the fill left are written out
(``os.sync``) before timing: a fill to 1M keys leaves gigabytes dirty (a 4 KiB
page per file), past the kernel's background writeback threshold, and then
each overwrite waits behind that writeback (on ext4: 1190 us wall for 179 us
of CPU; the same 5x wall appears at 100k keys with 1.7 GB of unrelated dirty
data), which is the fill's cost, not the store's.

Environment, to run a part (also through ``benchmarks.ab``):
``PERSIDICT_SCALING_SIZES=10000,100000`` (instead of 10k,100k,1M) and
``PERSIDICT_SCALING_RUNS=tmpfs/hashed,disk/direct`` (filesystem/layout pairs).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import shutil
import tracemalloc
from collections.abc import Callable
from typing import Any

from persidict import FileDirDict
from persidict.engine.keys import to_key

from .common import SMALL_VALUE, Config, Scratch
from .harness import Body, Case, Results, Row, interleave
from .listing import scandir_walk

LAYOUTS = ("direct", "hashed")
SIZES = (10_000, 100_000, 1_000_000)
SMOKE_SIZES = (200, 2_000)
SAMPLE = 2000  # random keys per timed get body
WRITES = 400  # random keys per timed overwrite body


def _fill(base_dir: str, layout: str, start: int, stop: int) -> None:
    d = FileDirDict(base_dir=base_dir, durable=False, layout=layout)
    for i in range(start, stop):
        d[f"key{i}"] = SMALL_VALUE


def grow(base_dir: str, layout: str, start: int, stop: int, procs: int = 2) -> None:
    """Add keys ``key<start>`` .. ``key<stop-1>`` with ``procs`` forked writers (untimed)."""
    ctx = multiprocessing.get_context("fork")
    step = -(-(stop - start) // procs)
    workers = [ctx.Process(target=_fill, args=(base_dir, layout, start + i * step,
                                               min(stop, start + (i + 1) * step)))
               for i in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=3600)
        if w.exitcode != 0:
            raise RuntimeError(f"filling {base_dir} failed (exit code {w.exitcode})")


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


def peak_iteration_bytes(d: FileDirDict) -> tuple[int, int]:
    """(keys, peak traced bytes) of one full iteration."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in d)
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _chosen(cfg: Config) -> tuple[list[int], set[str] | None]:
    """(sizes, filesystem/layout runs or None for all), from the environment if set."""
    sizes = os.environ.get("PERSIDICT_SCALING_SIZES", "")
    runs = os.environ.get("PERSIDICT_SCALING_RUNS", "")
    default = list(SMOKE_SIZES if cfg.smoke else SIZES)
    return ([int(n) for n in sizes.split(",")] if sizes.strip() else default,
            {r.strip() for r in runs.split(",")} if runs.strip() else None)


def _cases(d: FileDirDict, n: int, rng: random.Random) -> dict[str, list[Case]]:
    base = d.base_dir

    def sample(k: int) -> list[str]:
        return [f"key{rng.randrange(n)}" for _ in range(k)]

    def get_ours(rep: int) -> Body:
        keys = sample(SAMPLE)
        return lambda: [d[k] for k in keys]

    def get_floor(rep: int) -> Body:
        paths = [d.byte_store.path(to_key(k)) for k in sample(SAMPLE)]  # found untimed
        loads = pickle.loads

        def body() -> None:
            for p in paths:
                with open(p, "rb") as f:
                    loads(f.read())
        return body

    def get_os_floor(rep: int) -> Body:
        paths = [d.byte_store.path(to_key(k)) for k in sample(SAMPLE)]
        loads, o, r, c = pickle.loads, os.open, os.read, os.close
        flags = os.O_RDONLY | os.O_CLOEXEC

        def body() -> None:
            for p in paths:
                fd = o(p, flags)
                loads(r(fd, 1 << 16))
                c(fd)
        return body

    def put_ours(rep: int) -> Body:
        keys = sample(WRITES)
        return lambda: [d.__setitem__(k, SMALL_VALUE) for k in keys]

    def fixed(body: Body) -> Callable[[int], Body]:
        return lambda rep: body

    walk = fixed(lambda: scandir_walk(base))
    return {
        "get (random key)": [Case("ours", get_ours, SAMPLE), Case("floor", get_floor, SAMPLE),
                             Case("os floor", get_os_floor, SAMPLE)],
        "overwrite (random key)": [Case("ours", put_ours, WRITES)],
        "len": [Case("ours", fixed(d.__len__), n), Case("floor", walk, n)],
        "iterate keys": [Case("ours", fixed(lambda: sum(1 for _ in d)), n),
                         Case("floor", walk, n)],
    }


def run_scaling(cfg: Config, places: dict[str, str], scratch: Scratch, results: Results,
                log: Callable[[str], None]) -> None:
    """Every size of SIZES (SMOKE_SIZES), per filesystem and layout; growth in facts."""
    sizes, runs = _chosen(cfg)
    facts: dict[str, Any] = {"sizes": sizes, "runs": {}}
    for place, parent in places.items():
        for layout in LAYOUTS:
            if runs is not None and f"{place}/{layout}" not in runs:
                continue
            base = scratch.make(parent, f"scaling-{layout}")
            d = FileDirDict(base_dir=base, durable=False, layout=layout)
            rng = random.Random(17)
            per_size: dict[str, Any] = {}
            have = 0
            for n in sizes:
                log(f"scaling: {place}/{layout}: growing to {n} keys")
                grow(base, layout, have, n)
                have = n
                if place != "tmpfs":
                    os.sync()  # the fill's dirty pages: written out, not timed (see above)
                section = f"scaling/{place}/{layout}/n={_label(n)}"
                reps = cfg.reps if n < 1_000_000 else max(3, cfg.reps // 2)
                for op, cases in _cases(d, n, rng).items():
                    results.add(Row(section, op, interleave(cases, reps),
                                    f"{n} keys; listing rows per key"))
                count, peak = peak_iteration_bytes(d)
                assert count == n, (count, n)
                per_size[str(n)] = {"peak_iter_bytes": peak,
                                    **_figures(results, section)}
            facts["runs"][f"{place}/{layout}"] = per_size
            scratch.dirs.remove(base)
            if not cfg.keep:
                shutil.rmtree(base, ignore_errors=True)  # 1M files: not kept to the end
    facts["growth"] = growth(facts)
    results.facts["scaling"] = facts


def _figures(results: Results, section: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for row in (r for r in results.rows if r.section == section):
        for label in row.timings:
            name = row.op if label == "ours" else f"{row.op} {label}"
            out[name] = row.us(label)
            out[f"{name} cpu"] = row.cpu(label)
    return out


def growth(facts: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per run: each figure at the largest size / at the smallest."""
    sizes = [str(n) for n in facts["sizes"]]
    out: dict[str, dict[str, float | None]] = {}
    for run, per_size in facts["runs"].items():
        first, last = per_size[sizes[0]], per_size[sizes[-1]]
        out[run] = {k: (last[k] / first[k] if first.get(k) and last.get(k) else None)
                    for k in first}
    return out


def scaling_lines(facts: Any) -> list[str]:
    """The scaling table (Markdown) and the growth ratios."""
    if not facts:
        return []
    sizes = [str(n) for n in facts["sizes"]]
    head = " | ".join(_label(int(n)) for n in sizes)
    lines = ["## scaling (fast mode, one-component keys)", "",
             f"| filesystem/layout | figure | {head} | growth |",
             "|---|---|" + "---:|" * (len(sizes) + 1)]
    figures = [("get (random key)", "us", 1), ("get (random key) floor", "us", 1),
               ("get (random key) os floor", "us", 1), ("get (random key) cpu", "us", 1),
               ("get (random key) os floor cpu", "us", 1),
               ("overwrite (random key)", "us", 1), ("overwrite (random key) cpu", "us", 1),
               ("len", "us/key", 1),
               ("len floor", "us/key (scandir)", 1), ("iterate keys", "us/key", 1),
               ("peak_iter_bytes", "KiB", 1 / 1024)]
    for run, per_size in facts["runs"].items():
        for name, unit, scale in figures:
            cells = []
            for n in sizes:
                v = per_size[n].get(name)
                cells.append("-" if v is None else f"{v * scale:.2f}")
            g = facts["growth"][run].get(name)
            lines.append(f"| {run} | {name} ({unit}) | {' | '.join(cells)} | "
                         f"{'-' if g is None else f'{g:.2f}x'} |")
    return [*lines, ""]


if __name__ == "__main__":  # python -m benchmarks.scaling [--smoke ...]: this section alone
    import sys

    from .run import main

    sys.exit(main(["--sections", "scaling", *sys.argv[1:]]))
