"""SIGKILL during every mutating operation: nothing committed is ever lost.

A victim process runs a random mix of every mutating operation (set,
set_item_if, setdefault_if, setdefault, discard_if, discard, del, pop,
popitem, clear, transform_item, update) on flat and nested keys, logging an
intent record before each call and a confirmation after it returns (one
O_APPEND write each, which survives SIGKILL). It is SIGKILLed at a random
moment, hundreds of times. After every kill, with the log as the oracle:

- every key holds a whole value (checksummed) that some call wrote;
- every confirmed write is present unless a later confirmed call changed
  it; only the one unconfirmed call may have taken effect, and only as
  single-key operations could (clear: any subset of keys; popitem: one key);
- opening the store recovers: no temp file is left anywhere;
- len() and iteration agree with an independent walk of the directory;
- no lock is held.

At the end a new process writes every key with a 1 s lock timeout, and
``check(fix=True)`` leaves the store clean. Victims are forked by a small
launcher process (cheap, and forked from a clean single-threaded parent).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import pickle
import random
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import _workers as w
from persidict import (
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    FileDirDict,
)
from persidict.concurrency import locks

N_KILLS = 240
N_EXTRA = 120  # more kills, focused on any op no kill has yet landed in (bounded)
KEYS = [("a",), ("b",), ("n", "c"), ("n", "m", "d"), ("n", "m", "e"), ("p", "f"), ("q", "r", "g")]
OPS = [
    "set", "set_item_if", "setdefault_if", "setdefault", "discard_if", "discard",
    "del", "pop", "popitem", "clear", "transform_item", "update",
]  # fmt: skip
DIGEST_LEN = 4
_FLOCK = "hhqqi4x"


def _k(key: tuple[str, ...]) -> str:
    return "/".join(key)


def _value(tag: str, rng: random.Random) -> tuple[str, bytes, str]:
    blob = rng.randbytes(rng.choice([10, 3000, 60000]))
    return tag, blob, hashlib.sha256(blob).hexdigest()


# -- the victim (runs in a forked child of the launcher) -----------------------


def _victim(base: str, durable: bool, run: int, focus: str, seed: int, log: str) -> None:
    d = FileDirDict(base_dir=base, durable=durable, digest_len=DIGEST_LEN)
    rng = random.Random(seed)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def rec(**fields: Any) -> None:
        os.write(fd, (json.dumps(fields) + "\n").encode())

    rec(t="R")
    for seq in range(100_000):
        op = focus if rng.random() < 0.8 else rng.choice(OPS)
        if op in ("discard_if", "discard", "del", "pop"):  # a delete that deletes
            key = rng.choice([k for k in KEYS if k in d] or KEYS)
        else:
            key = rng.choice(KEYS)
        tag = f"{run}.{seq}"
        v = _value(tag, rng)
        ks = _k(key)
        if op == "set":
            rec(t="I", op=op, may={ks: tag})
            d[key] = v
            rec(t="D", eff={ks: tag})
        elif op == "set_item_if":
            current = d.get_item_if(key, condition=ETAG_IS_THE_SAME, expected_etag="x").actual_etag
            expected = current if rng.random() < 0.8 else "0" * 32
            rec(t="I", op=op, may={ks: tag})
            r = d.set_item_if(key, value=v, condition=ETAG_IS_THE_SAME, expected_etag=expected)
            rec(t="D", eff={ks: tag} if r.condition_was_satisfied else {})
        elif op in ("setdefault_if", "setdefault"):
            rec(t="I", op=op, may={ks: tag})
            if op == "setdefault":
                inserted = d.setdefault(key, v) is v
            else:
                r = d.setdefault_if(
                    key, default_value=v, condition=ETAG_IS_THE_SAME,
                    expected_etag=ITEM_NOT_AVAILABLE,
                )  # fmt: skip
                inserted = r.actual_etag is ITEM_NOT_AVAILABLE
            rec(t="D", eff={ks: tag} if inserted else {})
        elif op in ("discard_if", "discard", "del", "pop"):
            rec(t="I", op=op, may={ks: None})
            if op == "discard_if":
                etag = d.get_item_if(key, condition=ETAG_IS_THE_SAME, expected_etag="x").actual_etag
                d.discard_if(key, condition=ETAG_IS_THE_SAME, expected_etag=etag)
            elif op == "discard":
                d.discard(key)
            elif op == "del":
                with contextlib.suppress(KeyError):
                    del d[key]
            else:
                d.pop(key, None)
            rec(t="D", eff={ks: None})
        elif op == "popitem":
            rec(t="I", op=op, may="popitem")
            try:
                popped, _ = d.popitem()
                rec(t="D", eff={_k(tuple(popped)): None})
            except KeyError:
                rec(t="D", eff={})
        elif op == "clear":
            rec(t="I", op=op, may="clear")
            d.clear()
            rec(t="D", eff="clear")
        elif op == "transform_item":
            new = v if rng.random() < 0.7 else DELETE_CURRENT
            after = tag if new is v else None
            rec(t="I", op=op, may={ks: after})
            d.transform_item(key, transformer=lambda _old, new=new: new)
            rec(t="D", eff={ks: after})
        else:  # update
            other = rng.choice(KEYS)
            v2 = _value(tag + "u", rng)
            pairs = {ks: tag, _k(other): tag + "u"}
            rec(t="I", op=op, may=pairs)
            d.update({key: v, other: v2})
            rec(t="D", eff=pairs)


def launcher() -> None:
    """A clean single-threaded process that forks victims and reaps them."""
    for line in sys.stdin:
        cmd, arg = line.split(" ", 1)
        if cmd == "start":
            pid = os.fork()
            if pid == 0:
                try:
                    _victim(**json.loads(arg))
                finally:
                    os._exit(3)
            print(pid, flush=True)
        elif cmd == "reap":
            print(os.waitpid(int(arg), 0)[1], flush=True)


# -- the oracle -------------------------------------------------------------------


def _read_log(path: pathlib.Path) -> tuple[list[Any], Any]:
    """(confirmed effects in order, the may-record of the unconfirmed call or None)."""
    effects, pending = [], None
    for line in path.read_bytes().split(b"\n"):
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut short by the kill
        if r["t"] == "I":
            pending = r
        elif r["t"] == "D":
            effects.append(r["eff"])
            pending = None
    return effects, pending


def _apply(model: dict[str, str], eff: Any) -> None:
    if eff == "clear":
        model.clear()
        return
    for k, tag in eff.items():
        if tag is None:
            model.pop(k, None)
        else:
            model[k] = tag


def _digest(component: str) -> str:
    raw = hashlib.md5(component.encode()).digest()
    return base64.b32encode(raw).decode().lower()[:DIGEST_LEN]


def _walk(base: pathlib.Path) -> dict[str, str]:
    """Key -> tag, read straight from disk without persidict; checks wholeness."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [n for n in dirnames if not n.startswith("@")]
        rel = pathlib.Path(dirpath).relative_to(base).parts
        for name in filenames:
            if name.startswith("@") or not name.endswith(".pkl"):
                continue
            parts = [*rel, name[: -len(".pkl")]]
            comps = [p.rsplit("_", 1)[0] for p in parts]
            assert all(p == f"{c}_{_digest(c)}" for p, c in zip(parts, comps, strict=True))
            tag, blob, digest = pickle.loads((pathlib.Path(dirpath) / name).read_bytes())
            assert hashlib.sha256(blob).hexdigest() == digest, f"torn value at {name}"
            out["/".join(comps)] = tag
    return out


def _allowed(model: dict[str, str], actual: dict[str, str], pending: Any) -> None:
    changed = {k for k in set(model) | set(actual) if model.get(k) != actual.get(k)}
    if pending is None:
        assert not changed, f"no call was in flight, yet {changed} changed"
        return
    may = pending["may"]
    if may == "clear":
        assert all(k not in actual for k in changed), changed  # clear only removes
    elif may == "popitem":
        assert len(changed) <= 1 and all(k not in actual for k in changed), changed
    else:
        for k in changed:
            assert k in may and actual.get(k) == may[k], (pending, k, actual.get(k), model.get(k))


def _entries(directory: pathlib.Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def _lock_held(lock: pathlib.Path) -> bool:
    if locks.BACKEND == "flock":
        return bool(w.stripes_are_locked(lock))
    fd = os.open(lock, os.O_RDONLY)
    try:
        req = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        return struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, req))[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


_PROBE = """
import sys
from persidict import ANY_ETAG, ITEM_NOT_AVAILABLE, FileDirDict
d = FileDirDict(base_dir=sys.argv[1], digest_len=int(sys.argv[2]))
d.lock_timeout = 1.0  # progress within a second, or LockTimeoutError
for key in eval(sys.argv[3]):
    d.set_item_if(key, value=("probe", b"", ""), condition=ANY_ETAG,
                  expected_etag=ITEM_NOT_AVAILABLE)
    assert d[key][0] == "probe"
"""


def test_sigkill_during_every_mutating_operation(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "store"
    journal = base / "@persidict" / "tmp"
    seed_rng = random.Random(4242)
    d = FileDirDict(base_dir=base, digest_len=DIGEST_LEN)
    model: dict[str, str] = {}
    for i, key in enumerate(KEYS):
        d[key] = _value(f"init.{i}", seed_rng)
        model[_k(key)] = f"init.{i}"
    tests_dir = str(pathlib.Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {tests_dir!r}); import test_sigkill_ops; "
    code += "test_sigkill_ops.launcher()"
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert launcher.stdin is not None and launcher.stdout is not None
    in_flight: Counter[str] = Counter()
    temps_reclaimed = 0
    try:
        for run in range(N_KILLS + N_EXTRA):
            missed = [op for op in OPS if op not in in_flight]
            if run >= N_KILLS and not missed:
                break
            focus = OPS[run % len(OPS)] if run < N_KILLS else missed[run % len(missed)]
            log = tmp_path / f"log{run}"
            spec = dict(base=str(base), durable=run % 3 == 0, run=run,
                        focus=focus, seed=run, log=str(log))  # fmt: skip
            launcher.stdin.write(f"start {json.dumps(spec)}\n")
            launcher.stdin.flush()
            pid = int(launcher.stdout.readline())
            for _ in range(20_000):  # wait (bounded) for the victim to start
                if log.exists() and log.stat().st_size > 0:
                    break
                time.sleep(0.0005)
            time.sleep(seed_rng.uniform(0.0, 0.02))
            os.kill(pid, signal.SIGKILL)
            launcher.stdin.write(f"reap {pid}\n")
            launcher.stdin.flush()
            status = int(launcher.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                f"run {run}: the victim died on its own (status {status})"
            )

            effects, pending = _read_log(log)
            for eff in effects:
                _apply(model, eff)
            in_flight[pending["op"] if pending else "-"] += 1
            temps_reclaimed += len(_entries(journal))
            fresh = FileDirDict(base_dir=base, digest_len=DIGEST_LEN)  # recovers
            assert not _entries(journal), f"run {run}: temp left after recovery"
            assert not list(base.rglob("@tmp*")), f"run {run}: temp left after recovery"
            actual = _walk(base)
            listed = sorted(_k(tuple(k)) for k in fresh)
            assert listed == sorted(actual) and len(fresh) == len(actual), (listed, actual)
            _allowed(model, actual, pending)
            model = actual
            assert not _lock_held(base / "@persidict" / "lock"), f"run {run}: lock held"
    finally:
        launcher.stdin.close()
        launcher.wait(30)
    kills = sum(in_flight.values())
    print(f"kills={kills} in flight={dict(in_flight)} temps reclaimed={temps_reclaimed}")
    assert set(OPS) <= set(in_flight), f"never killed during {set(OPS) - set(in_flight)}"

    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(base), str(DIGEST_LEN), repr(KEYS)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    fresh = FileDirDict(base_dir=base, digest_len=DIGEST_LEN)
    report = fresh.check()
    assert {f.kind for f in report.findings} <= {"empty_dir"}, str(report)
    fresh.check(fix=True)
    assert fresh.check().clean
    assert sorted(tuple(k) for k in fresh) == sorted(KEYS)
