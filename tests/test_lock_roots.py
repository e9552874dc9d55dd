"""One file, one lock: store roots decided the same way by every opener.

Catches (issue 16.1): a fresh tree first opened at a parent and at a child
at the same instant. Finding the nearest root and creating one were two
steps, and each store cached its per-directory answers for good, so both
P/@persidict and P/c/@persidict appeared and one file was guarded by two
lock files: increments were lost. Every process must report the same lock
file for the one file they all increment.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pathlib
from typing import Any

import pytest

from persidict import ITEM_NOT_AVAILABLE, FileDirDict, NonEmptySafeStrTuple
from persidict.concurrency import marker
from persidict.concurrency.locks import META_DIR
from persidict.engine.names import sign_component

N_INCR = 25
ROUNDS = 12


def _bump(v: Any) -> int:
    return 1 if v is ITEM_NOT_AVAILABLE else v + 1


def _worker(base: str, key: tuple[str, ...], barrier: Any, out: Any) -> None:
    try:
        barrier.wait(30)
        d = FileDirDict(base_dir=base, durable=False)
        for _ in range(N_INCR):
            d.transform_item(key, transformer=_bump, n_retries=None)
        out.put(d.byte_store.where(NonEmptySafeStrTuple(*key))[1].lock_path)
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put(repr(exc))
        raise


def _markers(top: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob(META_DIR))


def _opens(top: pathlib.Path, layout: str) -> list[tuple[str, tuple[str, ...]]]:
    """(base_dir, key) per process; all name the one file P/c_<d>/[d_<d>/]n."""
    c = sign_component("c", 4)
    if layout == "parent+child":
        return [(str(top), ("c", "n"))] * 2 + [(str(top / c), ("n",))] * 2
    d = sign_component("d", 4)
    return [
        (str(top), ("c", "d", "n")),
        (str(top / c), ("d", "n")),
        (str(top / c / d), ("n",)),
        (str(top / c), ("d", "n")),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout", ["parent+child", "three levels"])
def test_simultaneous_first_opens_share_one_lock(tmp_path: pathlib.Path, layout: str) -> None:
    ctx = mp.get_context("fork")
    for r in range(ROUNDS):
        top = tmp_path / f"round{r}"
        opens = _opens(top, layout)
        barrier, out = ctx.Barrier(len(opens)), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(b, k, barrier, out)) for b, k in opens]
        for p in procs:
            p.start()
        reports = {out.get(timeout=60) for _ in procs}
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs), reports
        base, key = opens[0]
        total = FileDirDict(base_dir=base, durable=False)[key]
        assert (total, len(reports)) == (len(opens) * N_INCR, 1), f"round {r}: {reports}"
        # What is left is decided markers only: a nested root when a child's
        # root was decided before its parent's existed (as if opened first),
        # a sub marker when it was decided after.
        states = {m: marker.marker_state(str((top / m).parent)) for m in _markers(top)}
        assert states.get(META_DIR) == marker.ROOT, states
        assert set(states.values()) <= {marker.ROOT, marker.SUB}, states
        assert not [p for p in top.rglob("@tmp-*")], "debris of a marker being made"


def test_a_dead_creators_pending_marker_is_decided(tmp_path: pathlib.Path) -> None:
    """A marker whose creator died before deciding it: the next opener decides."""
    (tmp_path / "s" / META_DIR).mkdir(parents=True)
    assert marker.marker_state(str(tmp_path / "s")) == marker.PENDING
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = 1
    assert marker.marker_state(str(tmp_path / "s")) == marker.ROOT


def test_a_pending_marker_below_a_root_is_decided_sub(tmp_path: pathlib.Path) -> None:
    """The race's other side, frozen: a child's marker made before the parent's
    root was decided, decided afterwards. Opening the child must use the
    parent's lock; the child's marker stays, a sub marker (not a root)."""
    top = tmp_path / "p"
    FileDirDict(base_dir=top, durable=False)
    child = top / sign_component("c", 4)
    (child / META_DIR).mkdir(parents=True)  # pending, as a racing creator left it
    parent = FileDirDict(base_dir=top, durable=False)
    sub = FileDirDict(base_dir=child, durable=False)
    assert marker.marker_state(str(child)) == marker.SUB
    assert [p.name for p in child.iterdir() if p.name.startswith("@")] == [META_DIR]
    k = NonEmptySafeStrTuple("c", "n")
    below = sub.byte_store.where(NonEmptySafeStrTuple("n"))
    assert parent.byte_store.where(k)[1].lock_path == below[1].lock_path


def test_stores_of_earlier_versions_keep_their_roots(tmp_path: pathlib.Path) -> None:
    """A marker without a state file but with a lock file or journal is a root,
    nested or not (nothing moves for stores made by earlier versions)."""
    outer = tmp_path / "nest"
    inner = outer / sign_component("models", 4)
    for directory, made in ((inner, "lock"), (outer, "tmp")):
        (directory / META_DIR).mkdir(parents=True)
        if made == "lock":
            (directory / META_DIR / made).write_bytes(b"")
        else:
            (directory / META_DIR / made).mkdir()
    d = FileDirDict(base_dir=outer, durable=False)
    where = d.byte_store.where(NonEmptySafeStrTuple("models", "k"))[1].lock_path
    assert where == os.path.realpath(inner / META_DIR / "lock")
    assert not (outer / META_DIR / marker.STATE).exists()  # nothing rewritten


def test_params_are_recorded_once(tmp_path: pathlib.Path) -> None:
    FileDirDict(base_dir=tmp_path / "s", digest_len=7)
    FileDirDict(base_dir=tmp_path / "s", digest_len=2)  # recorded, never rewritten
    FileDirDict(base_dir=tmp_path / "s" / sign_component("sub", 7), digest_len=7)  # a subdict's
    FileDirDict(base_dir=tmp_path / "s" / "sub", digest_len=3)  # another store inside
    assert marker.read_params(os.path.realpath(tmp_path / "s")) == {"digest_len": 7}
    assert marker.read_params(os.path.realpath(tmp_path / "s" / "sub")) == {"digest_len": 3}
    assert _markers(tmp_path) == [f"s/{META_DIR}", f"s/sub/{META_DIR}"]
    assert marker.marker_state(os.path.realpath(tmp_path / "s" / "sub")) == marker.SUB
