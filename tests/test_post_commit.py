"""Nothing after a commit point turns a success into an exception (issue 9.1).

The commit of a FileDirDict write is the rename, of a delete the unlink.
What follows (the durable directory fsync, pruning, lazy recovery) must not
raise: the caller would be told "failed" for a change that happened, and a
``popitem`` would lose the value it removed.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing as mp
import os
import pathlib
import traceback
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.concurrency import atomic

_real_unlink = os.unlink
_real_replace = os.replace


def _prune_parent_after(path: str, stop: str) -> None:
    """What a concurrent deleter does after our commit: prune the emptied directory."""
    directory = os.path.dirname(path)
    while directory != stop:
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


def test_durable_pop_survives_prune_between_unlink_and_fsync(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = str(tmp_path / "store")
    d = FileDirDict(base_dir=base, durable=True)
    d[("sub", "deeper", "k")] = "value"

    def unlink_then_prune(path: Any, *args: Any, **kwargs: Any) -> None:
        _real_unlink(path, *args, **kwargs)
        if str(path).startswith(base + "/"):
            _prune_parent_after(str(path), base)

    monkeypatch.setattr(os, "unlink", unlink_then_prune)
    assert d.pop(("sub", "deeper", "k")) == "value"
    assert ("sub", "deeper", "k") not in d
    d[("sub", "x")] = 1
    assert d.popitem() == (("sub", "x"), 1)
    assert len(d) == 0


def test_durable_write_survives_delete_and_prune_after_rename(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleter outside our lock (e.g. a store guarded by another lock file)
    removes the key we just wrote and prunes its directory before our fsync."""
    base = str(tmp_path / "store")
    d = FileDirDict(base_dir=base, durable=True)

    def replace_then_delete(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        _real_replace(src, dst, *args, **kwargs)
        if str(dst).startswith(base + "/") and str(dst).endswith(".pkl"):
            _real_unlink(dst)
            _prune_parent_after(str(dst), base)

    monkeypatch.setattr(os, "replace", replace_then_delete)
    d[("a", "b", "k")] = 1  # must not raise: the write committed
    assert ("a", "b", "k") not in d


def test_failing_directory_fsync_after_commit_is_logged_not_raised(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "store"), durable=True)
    d["k"] = "old"

    def eio(path: str) -> None:
        raise OSError(errno.EIO, "injected I/O error", path)

    monkeypatch.setattr(atomic, "fsync_dir", eio)
    with caplog.at_level(logging.WARNING, logger="persidict"):
        d["k"] = "new"
        assert d.pop("k") == "new"
    assert "k" not in d
    assert sum("fsync of directory" in r.getMessage() for r in caplog.records) == 2


# -- real processes ----------------------------------------------------------

_WORKERS = 4
_ROUNDS = 40
_KEYS = 6


def _popper(base: str, barrier: Any, out: Any, worker: int) -> None:
    d = FileDirDict(base_dir=base, durable=True)
    got: list[str] = []
    error = ""
    try:
        for _ in range(_ROUNDS):
            barrier.wait(60)
            while True:
                try:
                    if worker % 2:
                        _, value = d.popitem()
                    else:
                        keys = list(d.keys())
                        if not keys:
                            break
                        value = d.pop(keys[-1], None)
                        if value is None:
                            continue
                except KeyError:
                    break
                got.append(value)
            barrier.wait(60)
    except Exception:
        error = traceback.format_exc()
        barrier.abort()
    out.put((worker, got, error))


def test_durable_pops_under_one_directory_lose_nothing(tmp_path: pathlib.Path) -> None:
    """4 processes pop one sub-directory empty, again and again; each value
    reaches exactly one of them, and no pop or popitem raises."""
    base = str(tmp_path / "store")
    d = FileDirDict(base_dir=base, durable=True)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(_WORKERS + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_popper, args=(base, barrier, out, w)) for w in range(_WORKERS)
    ]
    for p in procs:
        p.start()
    written: list[str] = []
    try:
        for r in range(_ROUNDS):
            for i in range(_KEYS):
                value = f"r{r}-k{i}"
                d[("shared", "sub", f"k{i}")] = value
                written.append(value)
            barrier.wait(60)  # go
            barrier.wait(60)  # this round is popped empty
    except Exception:
        pass  # a worker aborted the barrier: its report says why
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    errors = sorted((e for _, _, e in results if e), key=lambda e: "BrokenBarrier" in e)
    assert not errors, errors[0]
    received = sorted(v for _, got, _ in results for v in got)
    assert received == sorted(written)
