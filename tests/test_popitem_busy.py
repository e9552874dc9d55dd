"""popitem() on a store that is never empty must never raise KeyError.

Issue 16.2: popitem listed the keys once and gave up when others had popped
every listed key first, so a busy store looked empty. KeyError must mean the
store was empty at some instant during the call. Each popped value reaches
exactly one caller.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _workers as w
from persidict import FileDirDict, LocalDict

N_WORKERS = 4
N_START = 6  # > N_WORKERS: at least 2 keys are stored at every instant


def _fill(d: Any) -> None:
    for i in range(N_START):
        d[f"start-{i}"] = f"start-{i}"


def _check(results: list[dict[str, Any]], final: dict[str, Any]) -> None:
    empties = sum(r["empty"] for r in results)
    popped = [v for r in results for v in r["popped"]]
    pops = sum(r["pops"] for r in results)
    assert pops > 0
    assert empties == 0, f"popitem raised KeyError {empties} times in {pops} pops"
    dupes = [v for v, n in Counter(popped).items() if n > 1]
    assert not dupes, f"values popped twice: {dupes[:5]}"
    inserted = N_START + pops + empties
    assert len(final) + pops == inserted
    assert not set(popped) & set(final.values()), "a popped value is still stored"


@pytest.mark.timeout(120)
def test_popitem_never_empty_threads_localdict() -> None:
    d = LocalDict()
    _fill(d)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave inside popitem
    try:
        results = w.run_threads(
            w.w_popitem_refill, [dict(store=d, n_ops=15_000, time_limit=20.0)] * N_WORKERS
        )
    finally:
        sys.setswitchinterval(switch)
    _check(results, dict(d.items()))


@pytest.mark.timeout(120)
def test_popitem_never_empty_processes_filedirdict(tmp_path: Path) -> None:
    spec = w.file_spec(tmp_path / "store")
    d = FileDirDict(**spec)
    _fill(d)
    results = w.run_processes(
        w.w_popitem_refill,
        [dict(store=spec, n_ops=3_000, time_limit=20.0)] * N_WORKERS,
        tmp_path / "results",
    )
    _check(results, dict(d.items()))
