"""``persidict-stress --scenario memoize``: N workers share one memoized function.

Every worker walks the same argument sequence 0, 1, 2, ... (so all of them
reach each new argument at about the same moment and race for it), now and
then re-calling an old one (a hit). The function sleeps a few milliseconds,
fails on purpose for some calls, and returns ``(x, token)`` with a token
unique to that computation. ``--kill`` SIGKILLs workers mid-run (each is
replaced), computers included.

The oracle never reads the store through memoize and never trusts a
worker's account of the store: each computation appends one line to a
shared O_APPEND log (``done x wid token`` or ``fail x wid token``) just
before it returns or raises, each caller logs the token it got back, and
the store's final entries are read at the end. A computation's token is
*observed* if a caller got it or the store holds it. Invariants:

- one observed token per argument: a second computation whose result
  anybody saw is a duplicate (the count reported as ``duplicates``, which
  must be 0);
- every result is right: ``(x, token)`` for argument x, with a token of a
  completed computation of x;
- a computation that completed but was never observed ran in a worker
  that was SIGKILLed (before its result was stored): it is not counted as
  a duplicate but reported as ``lost_to_kills``; in a live worker it is a
  violation;
- no worker is stuck: all finish by the deadline plus the grace period.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from persidict.memoization import LEASE_PREFIX, memoize

from .killer import Killer
from .options import Options
from .phases import SetupError
from .stores import StoreSpec, forget_memory_stores, make_store
from .workers import wait_for_go

NAMESPACE = "memo"
MEMO_NAME = "persidict.stress.memo.compute"
FAIL_RATE = 0.05
OLD_CALL_RATE = 0.3
MAX_DELAY = 0.02
LEASE_TIMEOUT = 3.0  # lease stores (s3): a killed computer's key is taken over after this
_STARTUP = 120.0


@dataclass(frozen=True)
class MemoWorker:
    """What one memoize worker needs; pickles for 'spawn'."""

    wid: int
    spec: StoreSpec
    log_path: str
    computations_path: str
    go_path: str
    seed: int


# The computation's context in this process (the function's arguments are
# only x, so that every worker derives the same key for each x).
_context: dict[str, Any] = {}
_context_lock = threading.Lock()


def _append(path: str, line: str) -> None:
    """One whole line per write(2) on an O_APPEND file: lines never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def compute(x: int) -> tuple[int, str]:
    """The memoized work: logs its end in the computations log, may fail on purpose."""
    wid = getattr(_worker_id, "wid", -1)
    with _context_lock:
        rng: random.Random = _context["rng"]
        token = f"{wid}-{rng.getrandbits(48):012x}"
        delay, fail = rng.uniform(0, MAX_DELAY), rng.random() < FAIL_RATE
    time.sleep(delay)
    _append(_context["computations"], f"{'fail' if fail else 'done'} {x} {wid} {token}")
    if fail:
        raise RuntimeError(f"injected failure computing {x}")
    return (x, token)


_worker_id = threading.local()


def memo_worker(cfg: MemoWorker) -> None:
    """Entry point of a worker (a process, or a thread for the memory backend)."""
    _worker_id.wid = cfg.wid
    with _context_lock:
        _context.setdefault("rng", random.Random(cfg.seed * 7919 + cfg.wid))
        _context["computations"] = cfg.computations_path
    store = make_store(cfg.spec, NAMESPACE)
    f = memoize(store, name=MEMO_NAME, lease_timeout=LEASE_TIMEOUT)(compute)
    rng = random.Random(cfg.seed ^ (cfg.wid << 20))
    with open(cfg.log_path, "a", encoding="utf-8") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()  # to the OS at once: a SIGKILL keeps what was written

        write({"ready": cfg.wid})
        go = wait_for_go(cfg.go_path, _STARTUP)
        if go is None:
            write({"abort": "no go signal"})
            return
        x = 0
        while time.time() < go["deadline"]:
            arg = rng.randrange(x) if x and rng.random() < OLD_CALL_RATE else x
            try:
                value = f(arg)
            except RuntimeError as exc:
                write({"x": arg, "error": str(exc)})
            else:
                write({"x": arg, "got": list(value)})
            if arg == x:
                x += 1
        write({"done": cfg.wid, "stats": f.stats()})


def judge(
    computations: list[list[str]],
    returns: list[dict[str, Any]],
    final: dict[int, Any],
    killed_wids: set[int],
) -> tuple[list[str], dict[str, int]]:
    """The oracle (see the module doc): violations and counts."""
    done: dict[int, dict[str, int]] = defaultdict(dict)  # x -> token -> wid
    for kind, arg, by, tok in computations:
        if kind == "done":
            done[int(arg)][tok] = int(by)
    violations: list[str] = []
    observed: dict[int, set[str]] = defaultdict(set)
    for record in returns:
        x, (rx, token) = record["x"], record["got"]
        if rx != x or token not in done[x]:
            violations.append(f"wrong result for {x}: {record['got']!r}")
        observed[x].add(token)
    for x, value in final.items():
        if not (isinstance(value, tuple) and value[0] == x and value[1] in done[x]):
            violations.append(f"the store holds a wrong result for {x}: {value!r}")
            continue
        observed[x].add(value[1])
    duplicates = lost = 0
    for x, tokens in done.items():
        seen = observed.get(x, set())
        if len(seen) > 1:
            duplicates += len(seen) - 1
            violations.append(f"duplicate computation of {x}: results {sorted(seen)} were seen")
        for token, wid in tokens.items():
            if token in seen:
                continue
            if wid in killed_wids:
                lost += 1
            else:
                violations.append(
                    f"computation {token} of {x} by live worker {wid} completed, but nobody saw it"
                )
    counts = {
        "arguments": len(done),
        "computations": sum(len(t) for t in done.values()),
        "failures": sum(1 for c in computations if c[0] == "fail"),
        "calls": len(returns),
        "duplicates": duplicates,
        "lost_to_kills": lost,
    }
    return violations, counts


def _final(spec: StoreSpec, args: set[int]) -> tuple[dict[int, Any], list[str]]:
    """The stored result of each argument, and the keys that are no argument's result."""
    store = make_store(spec, NAMESPACE)
    key_for = memoize(store, name=MEMO_NAME)(compute).key_for
    by_key = {key_for(x): x for x in args}
    final: dict[int, Any] = {}
    strays: list[str] = []
    for key, value in store.items():
        if key.strings[0] == LEASE_PREFIX:
            continue  # a lease of a killed computer (lease stores), not a result
        if key in by_key:
            final[by_key[key]] = value
        else:
            strays.append("/".join(key.strings))
    return final, strays


def format_memo(report: dict[str, Any]) -> str:
    """The report as text."""
    s, c = report["settings"], report["counts"]
    lines = [
        f"persidict-stress memoize: backend={s['backend']} workers={s['workers']} "
        f"duration={s['duration_s']}s seed={s['seed']} kills={s['kills']}",
        f"calls={c['calls']} arguments={c['arguments']} computations={c['computations']} "
        f"(failed on purpose: {c['failures']})",
        "memoize stats (summed over workers that finished): "
        + " ".join(f"{k}={v}" for k, v in sorted(report["stats"].items())),
        f"duplicate computations: {c['duplicates']} (a result seen twice for one argument); "
        f"computations lost to kills: {c['lost_to_kills']} (completed, never stored)",
        f"violations: {len(report['violations'])}",
    ]
    lines += [f"  - {v}" for v in report["violations"][:50]]
    lines.append("OK" if report["ok"] else "FAILED")
    return "\n".join(lines)


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.endswith("\n"):  # a killed worker's last line may be half written
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def run_memo(opts: Options) -> dict[str, Any]:
    """Run the memoize scenario; the report's ``ok`` is the verdict."""
    seed = opts.seed if opts.seed is not None else random.randrange(2**31)
    logdir = tempfile.mkdtemp(prefix="persidict-stress-memo-")
    root = logdir if opts.dir is None else tempfile.mkdtemp(prefix="memo-", dir=opts.dir)
    spec = StoreSpec(backend=opts.backend, root=root, durable=opts.durable,
                     endpoint_url=opts.endpoint_url, bucket=opts.bucket, region=opts.region)
    computations = os.path.join(logdir, "computations.log")
    go_path = os.path.join(logdir, "go.json")
    handles: list[Any] = []
    configs: list[MemoWorker] = []
    ctx = multiprocessing.get_context("spawn")

    def start() -> None:
        wid = len(handles)
        cfg = MemoWorker(wid, spec, os.path.join(logdir, f"memo-{wid}.jsonl"), computations,
                         go_path, seed)
        handle: Any
        if opts.backend == "memory":  # a LocalDict is shared by threads only
            handle = threading.Thread(target=memo_worker, args=(cfg,), daemon=True)
        else:
            handle = ctx.Process(target=memo_worker, args=(cfg,))
        handle.start()
        handles.append(handle)
        configs.append(cfg)

    try:
        try:
            make_store(spec, NAMESPACE)  # fail here, before any worker, if it cannot open
        except Exception as exc:  # any setup failure is reported as one, before workers start
            raise SetupError(f"cannot open the store: {exc}") from exc
        for _ in range(opts.workers):
            start()
        give_up = time.monotonic() + _STARTUP
        while time.monotonic() < give_up and not all(
            any("ready" in r for r in _read_jsonl(c.log_path)) for c in configs
        ):
            time.sleep(0.05)
        t0 = time.time() + 0.05
        with open(go_path + ".tmp", "w", encoding="utf-8") as g:
            json.dump({"t0": t0, "deadline": t0 + opts.duration}, g)
        os.replace(go_path + ".tmp", go_path)
        killer = Killer(opts.kill, t0, opts.duration, seed, handles, start)
        hard_stop = t0 + opts.duration + opts.grace
        while any(h.is_alive() for h in handles) and time.time() < hard_stop:
            killer.tick(time.time())
            time.sleep(0.05)
        violations: list[str] = []
        returns: list[dict[str, Any]] = []
        stats: Counter[str] = Counter()
        for cfg, handle in zip(configs, handles, strict=True):
            records = _read_jsonl(cfg.log_path)
            returns += [r for r in records if "got" in r]
            finished = [r for r in records if "done" in r]
            for r in finished:
                stats.update(r["stats"])
            if cfg.wid not in killer.killed and (handle.is_alive() or not finished):
                violations.append(f"worker {cfg.wid} did not finish (stuck or crashed)")
                if isinstance(handle, multiprocessing.process.BaseProcess):
                    handle.kill()
                    handle.join(5)
        lines = []
        if os.path.exists(computations):  # none: no worker got to compute anything
            with open(computations, encoding="utf-8") as c:
                lines = [line.split() for line in c if line.endswith("\n")]
        final, strays = _final(spec, {int(line[1]) for line in lines})
        violations += [f"the store holds an entry no argument maps to: {k}" for k in strays]
        found, counts = judge(lines, returns, final, set(killer.killed))
        violations += found
    finally:
        for handle in handles:
            if isinstance(handle, multiprocessing.process.BaseProcess) and handle.is_alive():
                handle.kill()
                handle.join(5)
        if opts.backend == "memory":
            forget_memory_stores(spec)
        shutil.rmtree(logdir, ignore_errors=True)
    return {
        "ok": not violations,
        "scenario": "memoize",
        "settings": {"backend": opts.backend, "workers": opts.workers,
                     "duration_s": opts.duration, "seed": seed, "kills": len(killer.killed)},
        "counts": counts,
        "stats": dict(stats),
        "violations": violations,
    }
