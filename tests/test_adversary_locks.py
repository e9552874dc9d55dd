"""Adversarial tests of lock-root markers, nested stores and ``check``.

Catches (each failed on the code before its fix):

- a store opened *inside* an existing store (``nest`` first, then
  ``nest/models`` with its own digest_len) got no marker of its own, so
  ``persidict check nest --fix`` moved the inner store's values into the
  quarantine, and ``check nest/models`` judged them by the outer digest_len;
- an opener SIGKILLed between making its marker and writing ``params.json``
  left a store whose digest_len nobody recorded (seen in about half of the
  rounds of random kills), so ``check`` guessed;
- on a read-only mount, a pending marker left by a killed opener made every
  read below it fail with EROFS (reads tried to decide it), and ``check``
  died with a traceback.
"""

from __future__ import annotations

import contextlib
import gc
import io
import multiprocessing as mp
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from persidict import FileDirDict, NonEmptySafeStrTuple
from persidict.cli import main
from persidict.concurrency import marker
from persidict.concurrency.locks import META_DIR, KeyLocks
from persidict.engine.errors import LockTimeoutError
from persidict.engine.names import sign_component


def _tree(top: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(top)): p.read_bytes()
        for p in top.rglob("*")
        if p.is_file() and META_DIR not in p.parts
    }


@pytest.mark.parametrize("via", ["cli", "api"])
@pytest.mark.parametrize("inner_digest_len", [0, 4])
def test_a_store_opened_inside_an_existing_store_is_left_alone(
    tmp_path: pathlib.Path, via: str, inner_digest_len: int
) -> None:
    nest, models = tmp_path / "nest", tmp_path / "nest" / "models"
    outer = FileDirDict(base_dir=nest)  # made first: models is no root
    outer["k"] = "outer"
    inner = FileDirDict(base_dir=models, digest_len=inner_digest_len)
    for i in range(5):
        inner[("m", f"w{i}")] = i
    inner[sign_component("looks", 4)] = "a key whose name looks signed"
    inner_files = _tree(models)
    if via == "cli":
        assert main(["check", str(nest), "--fix"]) == 0
        assert main(["check", str(models), "--fix"]) == 0  # by its own digest_len
    else:
        report = outer.check(fix=True)
        assert report.clean and report.nested_stores == [str(models)], str(report)
        assert inner.check(fix=True).clean
    assert _tree(models) == inner_files
    reopened = FileDirDict(base_dir=models, digest_len=inner_digest_len)
    assert len(reopened) == 6
    # the locks are still the outer store's: one file, one lock
    assert inner.byte_store.where(_key("m", "w0"))[1].lock_path == os.path.realpath(
        nest / META_DIR / "lock"
    )


def _key(*strings: str) -> NonEmptySafeStrTuple:
    return NonEmptySafeStrTuple(*strings)


def _open_killed_at(base: pathlib.Path, nth: int, digest_len: int) -> None:
    """Fork an opener of ``base`` that SIGKILLs itself at its nth audited
    syscall on a path inside ``base`` (mkdir, open, rename, listdir...)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        prefix, seen = str(base), [0]

        def hook(event: str, args: tuple[object, ...]) -> None:
            if event.startswith(("os.", "open")) and any(
                isinstance(a, str) and a.startswith(prefix + "/") for a in args
            ):
                if seen[0] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
                seen[0] += 1

        sys.addaudithook(hook)
        try:
            FileDirDict(base_dir=base, digest_len=digest_len)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_a_marker_is_never_seen_without_its_params(tmp_path: pathlib.Path) -> None:
    """SIGKILL an opener at each step of its first open in turn: any marker
    left behind records the digest_len, so check never guesses."""
    for nth in range(25):
        base = tmp_path / f"s{nth}"
        base.mkdir()
        _open_killed_at(base, nth, digest_len=0)
        state = marker.marker_state(str(base))
        if state != marker.ABSENT:
            assert marker.read_params(str(base)) == {"digest_len": 0}, (nth, state)
    # What a guess would cost: keys of a digest_len=0 store that look signed.
    base = tmp_path / f"s{1}"
    d = FileDirDict(base_dir=base, digest_len=0)
    for name in ("a", "b", "c"):
        d[(name, sign_component(name, 4))] = name
    assert main(["check", str(base), "--fix"]) == 0
    assert len(FileDirDict(base_dir=base, digest_len=0)) == 3


@contextlib.contextmanager
def _tmpfs(where: pathlib.Path) -> Iterator[pathlib.Path]:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        gc.collect()
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: pathlib.Path, mode: str) -> None:
    gc.collect()  # lock descriptors open for writing keep a remount busy
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def test_a_read_only_store_with_an_undecided_marker_is_readable(tmp_path: pathlib.Path) -> None:
    with _tmpfs(tmp_path / "mnt") as mnt:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: make the store, then go
            try:
                d = FileDirDict(base_dir=mnt / "s")
                d["k"], d[("c", "x")] = 1, 2
                # an opener of s/c_<d> killed before deciding its marker
                (mnt / "s" / sign_component("c", 4) / META_DIR).mkdir()
                (mnt / "p" / META_DIR).mkdir(parents=True)  # and one of p
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        _remount(mnt, "ro")
        d = FileDirDict(base_dir=mnt / "s")
        assert {tuple(k): v for k, v in d.items()} == {("k",): 1, ("c", "x"): 2}
        assert d[("c", "x")] == 2 and ("c", "x") in d
        assert dict(FileDirDict(base_dir=mnt / "s" / sign_component("c", 4)).items()) == {
            ("x",): 2
        }
        assert len(FileDirDict(base_dir=mnt / "p")) == 0
        assert main(["check", str(mnt / "s")]) == 0
        with pytest.raises(OSError):
            d[("c", "y")] = 3  # read-only: no lock is guessed
        _remount(mnt, "rw")
        d[("c", "y")] = 3  # the same instance settles its lock now
        assert marker.marker_state(str(mnt / "s" / sign_component("c", 4))) == marker.SUB
        other = FileDirDict(base_dir=mnt / "s" / sign_component("c", 4))
        mine, theirs = d.byte_store.where(_key("c", "y")), other.byte_store.where(_key("y"))
        assert mine[1].lock_path == theirs[1].lock_path
        del d, other


def _make_nested(nest: str, n: int) -> None:
    for i in range(n):
        base = f"{nest}/models{i}" if i % 2 else f"{nest}/x{i}/models"
        d = FileDirDict(base_dir=base, digest_len=0, durable=False)
        for j in range(3):
            d[("m", f"w{j}")] = j


def _check_until(nest: str, stop: Any) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        while not stop.is_set():
            main(["check", nest, "--fix"])


@pytest.mark.timeout(60)
def test_check_fix_while_nested_stores_are_created(tmp_path: pathlib.Path) -> None:
    """Two ``check --fix`` loops on ``nest`` while another process opens
    stores inside it (with their own digest_len) and writes to them: no
    inner store loses a value (before: 170 of 300 stores came out short)."""
    nest, n = str(tmp_path / "nest"), 30
    FileDirDict(base_dir=nest, durable=False)["k"] = 1
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    checkers = [ctx.Process(target=_check_until, args=(nest, stop)) for _ in range(2)]
    for p in checkers:
        p.start()
    try:
        maker = ctx.Process(target=_make_nested, args=(nest, n))
        maker.start()
        maker.join(50)
        assert maker.exitcode == 0
    finally:
        stop.set()
        for p in checkers:
            p.join(20)
    short = {}
    for i in range(n):
        base = f"{nest}/models{i}" if i % 2 else f"{nest}/x{i}/models"
        found = len(FileDirDict(base_dir=base, digest_len=0, durable=False))
        if found != 3:
            short[base] = found
    assert not short, short


def test_a_planted_marker_symlink_changes_no_lock(tmp_path: pathlib.Path) -> None:
    """An outside hand plants ``@persidict`` -> another store's marker in a
    key directory of a live store: stores opened before and after must still
    agree on the lock of a file there (before: the new ones took the other
    store's lock file, the old one kept its own - two locks, one file)."""
    other = FileDirDict(base_dir=tmp_path / "q")
    other["z"] = 1
    before = FileDirDict(base_dir=tmp_path / "p")
    before[("a", "n")] = 1
    os.symlink(tmp_path / "q" / META_DIR, tmp_path / "p" / sign_component("a", 4) / META_DIR)
    after = FileDirDict(base_dir=tmp_path / "p")
    sub = FileDirDict(base_dir=tmp_path / "p" / sign_component("a", 4))
    locks = {
        before.byte_store.where(_key("a", "n"))[1].lock_path,
        after.byte_store.where(_key("a", "n"))[1].lock_path,
        sub.byte_store.where(_key("n"))[1].lock_path,
    }
    assert locks == {os.path.realpath(tmp_path / "p" / META_DIR / "lock")}
    assert main(["check", str(tmp_path / "p"), "--fix"]) == 1  # the link is a stray
    assert not os.path.lexists(tmp_path / "p" / sign_component("a", 4) / META_DIR)
    assert before[("a", "n")] == 1 and other["z"] == 1


def _probe_lock(locks: KeyLocks, offset: int) -> str:
    """From another thread (its own descriptor): is the lock at ``offset`` free?"""
    out: list[str] = []

    def probe() -> None:
        try:
            with locks.hold_at(offset, "probe"):
                out.append("free")
        except LockTimeoutError:
            out.append("held")

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out[0]


def test_a_signal_handler_cannot_silently_drop_a_held_lock(tmp_path: pathlib.Path) -> None:
    """Instances of one lock file share one descriptor per thread, and an OFD
    lock taken twice through one descriptor is one lock: a handler that
    writes the key through another instance, while the interrupted code
    holds that key's lock, took it again and released it on the way out -
    the interrupted code went on unprotected (before: the probe got it)."""
    a = FileDirDict(base_dir=tmp_path / "s", durable=False)
    b = FileDirDict(base_dir=tmp_path / "s", durable=False)
    a["k"] = 0
    _, locks, offset = a.byte_store.where(_key("k"))
    locks.timeout = 0.2
    seen: list[str] = []

    def handler(signum: int, frame: object) -> None:
        try:
            b["k"] = 1
            seen.append("wrote")
        except RuntimeError as exc:
            seen.append(f"refused: {exc}")

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with locks.hold_at(offset, "k"):
            os.kill(os.getpid(), signal.SIGUSR1)
            assert seen and seen[0].startswith("refused"), seen
            assert _probe_lock(locks, offset) == "held"
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert _probe_lock(locks, offset) == "free" and a["k"] == 0
    b["k"] = 2  # and the lock works again for everyone
    assert a["k"] == 2


def test_a_marker_a_dead_opener_was_making_is_removed_by_check(tmp_path: pathlib.Path) -> None:
    """Markers are made in a temp directory, then renamed: an opener killed
    in between leaves the temp directory. check reports it as the dead
    writer's debris it is and removes it (not a stray moved to quarantine)."""
    left = 0
    for nth in range(25):
        base = tmp_path / f"s{nth}"
        base.mkdir()
        _open_killed_at(base, nth, digest_len=4)
        left += len(list(base.glob("@tmp-*")))
        d = FileDirDict(base_dir=base)
        report = d.check(fix=True)
        assert report.counts()["stray"] == 0, str(report)
        assert not list(base.glob("@tmp-*")), str(report)
    assert left > 0  # the sweep did kill some openers mid-way


def test_a_nested_store_moved_out_of_its_parent_opens(tmp_path: pathlib.Path) -> None:
    """A store opened inside another records a sub marker; moved (or copied)
    out of that tree it has no root above: it must open as a root of its own
    (before: "no lock root settled" - the sub marker could not be replaced),
    keep its digest_len for check, and agree on one lock with its subdicts."""
    nest = tmp_path / "nest"
    FileDirDict(base_dir=nest)["k"] = 1
    inner = FileDirDict(base_dir=nest / "models", digest_len=0)
    inner[("m", "n")] = 2
    del inner
    os.rename(nest / "models", tmp_path / "models")
    moved = FileDirDict(base_dir=tmp_path / "models", digest_len=0)
    assert moved[("m", "n")] == 2
    moved[("m", "o")] = 3
    assert marker.marker_state(str(tmp_path / "models")) == marker.ROOT
    sub = moved.get_subdict("m")
    here, there = sub.byte_store.where(_key("n")), moved.byte_store.where(_key("m", "n"))
    assert here[1].lock_path == there[1].lock_path
    assert main(["check", str(tmp_path / "models"), "--fix"]) == 0
    assert dict(sub.items()) == {("n",): 2, ("o",): 3}
