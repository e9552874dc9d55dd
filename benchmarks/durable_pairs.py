"""Durable writes on disk vs the fsync floor, paired write by write.

``files.py`` times a block of writes of one contender, then a block of the
other. On this VM's ext4 a durable write's cost depends on the state the
filesystem was left in (which inodes were freed recently, what writeback is
pending): the floor's own CPU time per write moved 140-1100 us from block to
block. Without a journal, ext4 does not reuse an inode freed a short while
ago and each create scans past those (``recently_deleted`` in a perf
profile: a third of a 1 MiB durable create's CPU, ours and the floor's
alike), so any deletion on the disk, by anyone, moves the figures. Here
each repetition is ONE operation of ours and one of the floor, in
alternating order, timed separately; the medians over many pairs meet the
same filesystem state. Same operations, values and floor as ``files.py``
(its durable sections: pkl100 and pkl1MiB).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from persidict import ANY_ETAG, ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, FileDirDict

from .common import KINDS, Config, Scratch
from .files import DURABLE_OPS_BY_KIND, FLOOR_NOTES, Floor, _inc
from .harness import Results, Row, Timing

Step = Callable[[int], Callable[[], object]]
"""``step(i)`` does the untimed setup of pair ``i`` and returns the timed call."""


def _ours(d: FileDirDict, op: str, v: object, n: int) -> Step:
    def step(i: int) -> Callable[[], object]:
        k = f"k{i % n}"
        if op == "set new":
            return lambda: d.__setitem__(f"new{i}", v)
        if op == "overwrite":
            return lambda: d.__setitem__(k, v)
        if op == "set_item_if":
            e = d.etag(k)
            return lambda: d.set_item_if(k, value=v, condition=ETAG_IS_THE_SAME, expected_etag=e)
        if op == "setdefault_if insert":
            return lambda: d.setdefault_if(f"ins{i}", default_value=v, condition=ANY_ETAG,
                                           expected_etag=ITEM_NOT_AVAILABLE)
        if op == "transform_item +1":
            return lambda: d.transform_item(f"c{i % n}", transformer=_inc)
        if op == "discard_if":
            d[f"del{i}"] = v
            e = d.etag(f"del{i}")
            return lambda: d.discard_if(f"del{i}", condition=ETAG_IS_THE_SAME, expected_etag=e)
        raise ValueError(op)
    return step


def _floor(f: Floor, op: str, v: object, n: int) -> Step:
    def step(i: int) -> Callable[[], object]:
        if op in ("set new", "setdefault_if insert"):
            return lambda: f.write(f"new{i}", v)
        if op in ("overwrite", "set_item_if"):
            return lambda: f.write(f"k{i % n}", v)
        if op == "transform_item +1":
            return lambda: f.write(f"c{i % n}", f.read(f"c{i % n}") + 1)  # type: ignore[operator]
        if op == "discard_if":
            f.write(f"del{i}", v)
            return lambda: f.delete(f"del{i}")
        raise ValueError(op)
    return step


def _paired(steps: dict[str, Step], pairs: int) -> dict[str, Timing]:
    """Per-op wall and CPU seconds of ``pairs`` alternating single operations."""
    timings = {label: Timing() for label in steps}
    labels = list(steps)
    for i in range(pairs):
        for label in labels if i % 2 == 0 else reversed(labels):
            call = steps[label](i)
            w0, c0 = time.perf_counter(), time.process_time()
            call()
            c1, w1 = time.process_time(), time.perf_counter()
            timings[label].wall.append(w1 - w0)
            timings[label].cpu.append(c1 - c0)
    return timings


PAIRS = {"pkl100": 400, "pkl1MiB": 200}
"""Pairs per operation; 1 MiB ``set new`` leaves 200 MiB per contender on disk."""


def run_durable_pairs(cfg: Config, places: dict[str, str], scratch: Scratch, results: Results,
                      log: Callable[[str], None]) -> None:
    """Every durable operation of each kind on the disk filesystem, paired with the floor."""
    parent = places.get("disk")
    if parent is None:
        return
    for kind_name, ops in DURABLE_OPS_BY_KIND.items():
        kind = KINDS[kind_name]
        n = 50 if kind_name == "pkl100" else 10
        pairs = 40 if cfg.smoke else PAIRS[kind_name]
        section = f"disk/durable-paired/{kind_name}"
        log(f"durable pairs: {section}, {pairs} pairs per operation")
        d = FileDirDict(base_dir=scratch.make(parent, f"pairs-ours-{kind_name}"), durable=True)
        floor = Floor(scratch.make(parent, f"pairs-floor-{kind_name}"), True, kind)
        for i in range(n):
            d[f"k{i}"] = kind.value
            d[f"c{i}"] = 0
            floor.write(f"k{i}", kind.value)
            floor.write(f"c{i}", 0)
        for op in ops:
            steps = {"ours": _ours(d, op, kind.value, n),
                     "floor": _floor(floor, op, kind.value, n)}
            note = FLOOR_NOTES.get(op, "") + f"; median of {pairs} alternating single operations"
            results.add(Row(section, op, _paired(steps, pairs), note))
