"""``persidict-stress``: run the op mix from N workers, then check every invariant.

Example: ``persidict-stress --workers 4 --duration 20`` (file backend, worker
processes, fresh temp dir). ``--dir /mnt/nfs`` tests your own mount, ``--json``
prints a machine-readable report. ``--backend s3 --worker-endpoint-url URL
--expect-faults`` sends the workers' requests through a fault-injecting proxy
(tests/faultproxy_random.py, or any other) and judges the errors they get.
``--scenario memoize`` runs memo.py's scenario instead: workers share one
memoized function, and no argument may be computed twice.
Exit status: 0 if every invariant held, 1 if any was violated (each is
listed), 2 on bad usage or a setup error (the store cannot be opened or
reached: no worker starts), 130 if interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .history import History
from .killer import Killer
from .memo import format_memo, run_memo
from .options import Options, WorkerConfig, parse_args
from .oracle import Oracle
from .phases import SetupError, check_history, prepare, read_final
from .report import build_report, format_json, format_text
from .stores import BACKENDS, StoreSpec, forget_memory_stores, make_store
from .tally import Tally
from .workers import run_worker, worker_process

STARTUP_TIMEOUT = 120.0  # spawn + import on a loaded 2-core CI box can be slow
POLL_SECONDS = 0.1
PROGRESS_SECONDS = 1.0


def _start_workers(
    opts: Options, spec: StoreSpec, logdir: str, seed: int, handles: list[Any]
) -> dict[int, str]:
    """Start the workers (appending each to ``handles`` at once); return their logs."""
    logs: dict[int, str] = {}
    for _ in range(opts.workers):
        _start_worker(opts, spec, logdir, seed, handles, logs)
    return logs


def _start_worker(
    opts: Options,
    spec: StoreSpec,
    logdir: str,
    seed: int,
    handles: list[Any],
    logs: dict[int, str],
) -> None:
    """Start one more worker; its id is its index in ``handles``."""
    ctx = multiprocessing.get_context("spawn")
    wid = len(handles)
    log_path = logs[wid] = os.path.join(logdir, f"worker-{wid}.jsonl")
    if opts.worker_endpoint_url is not None:
        spec = dataclasses.replace(spec, endpoint_url=opts.worker_endpoint_url)
    cfg = WorkerConfig(
        wid=wid,
        spec=spec,
        log_path=log_path,
        go_path=os.path.join(logdir, "go.json"),
        seed=seed,
        max_ops=opts.max_ops,
        startup_timeout=STARTUP_TIMEOUT,
        history=opts.history,
        expect_faults=opts.expect_faults,
        factory=opts.store_factory,
    )
    handle: Any
    if spec.backend == "memory":
        # LocalDict is atomic across threads only: one process, N threads.
        handle = threading.Thread(target=run_worker, args=(cfg, cfg.factory or make_store),
                                  daemon=True)
    else:
        handle = ctx.Process(target=worker_process, args=(cfg,), name=f"stress-{wid}")
    handle.start()
    handles.append(handle)


class _Progress:
    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.last = time.monotonic()  # first line after a second, not at t0

    def show(self, elapsed: float, ops: int, violations: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (not force and now - self.last < PROGRESS_SECONDS):
            return
        self.last = now
        rate = ops / elapsed if elapsed > 0 else 0.0
        line = f"[{elapsed:6.1f}s] ops={ops} ({rate:.0f} ops/s) violations={violations}"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_stress(opts: Options, progress_stream: TextIO | None = None) -> dict[str, Any]:
    """Run one stress session and return the report (``report["ok"]`` is the verdict)."""
    if opts.backend not in BACKENDS:
        raise ValueError(f"unknown backend {opts.backend!r}; expected one of {BACKENDS}")
    seed = opts.seed if opts.seed is not None else random.randrange(2**31)
    logdir = tempfile.mkdtemp(prefix="persidict-stress-logs-")
    if opts.dir is not None and opts.backend == "file":
        # A fresh subdirectory: never mix our keys with what the user keeps there.
        root = os.path.join(os.path.abspath(opts.dir), f"persidict-stress-{os.getpid()}-{seed}")
        try:
            os.makedirs(root)
        except OSError as exc:
            shutil.rmtree(logdir, ignore_errors=True)
            raise SetupError(f"cannot create a directory in {opts.dir}: {exc}") from exc
    else:
        root = tempfile.mkdtemp(prefix="persidict-stress-") if opts.backend == "file" else logdir
    spec = StoreSpec(backend=opts.backend, root=root, durable=opts.durable,
                     endpoint_url=opts.endpoint_url, bucket=opts.bucket, region=opts.region)
    oracle = Oracle()
    history = History() if opts.history else None
    tally = Tally(oracle, history)
    factory = opts.store_factory or make_store
    progress = _Progress(progress_stream if opts.progress else None)
    switch_interval = sys.getswitchinterval()
    if opts.backend == "memory":
        # Threads switch every 5 ms by default, far longer than a LocalDict op:
        # switch often so that threads really interleave inside operations.
        sys.setswitchinterval(1e-5)
    handles: list[Any] = []
    try:
        prepare(spec, factory, history, oracle)
        logs = _start_workers(opts, spec, logdir, seed, handles)
        t0, t0_ns = _await_ready(tally, logs, handles, logdir, opts.duration)
        killer = Killer(
            opts.kill, t0, opts.duration, seed, handles,
            lambda: _start_worker(opts, spec, logdir, seed, handles, logs),
        )  # fmt: skip
        end = _await_done(opts, tally, logs, handles, t0, progress, killer)
        progress.close()
        tally.poll(logs)
        _check_workers(opts, tally, handles, oracle, killer.killed)
        final_start = time.monotonic_ns()
        final = read_final(spec, factory, oracle)
        violations = oracle.check_final(final)
        checked = check_history(history, spec, factory, final, final_start, t0_ns)
        violations += checked.get("violations", [])
    except SetupError:
        if opts.backend == "file" and opts.dir is not None:
            shutil.rmtree(root, ignore_errors=True)  # created above, holds nothing
        raise
    finally:
        for handle in handles:
            # Only after an exception (e.g. Ctrl-C) can a worker process be left here.
            if isinstance(handle, multiprocessing.process.BaseProcess) and handle.is_alive():
                handle.kill()
                handle.join(5)
        sys.setswitchinterval(switch_interval)
        if opts.backend == "memory":
            forget_memory_stores(spec)
        shutil.rmtree(logdir, ignore_errors=True)
        if opts.dir is None and opts.backend == "file":
            shutil.rmtree(root, ignore_errors=True)
    settings = {
        "backend": opts.backend,
        "workers": opts.workers,
        "duration_s": opts.duration,
        "seed": seed,
        "durable": opts.durable if opts.backend == "file" else None,
        "dir": root if opts.dir is not None else None,
        "kills": len(killer.killed),
        "expect_faults": opts.expect_faults,
    }
    return build_report(
        settings=settings,
        elapsed_s=max(end - t0, 1e-9),
        ops_by_kind=tally.ops,
        hists=tally.hists,
        conflicts=tally.conflicts,
        races_lost=tally.races_lost,
        violations=violations,
        history=checked,
        faults=tally.faults if opts.expect_faults else None,
    )


def _await_ready(
    tally: Tally, logs: dict[int, str], handles: list[Any], logdir: str, duration: float
) -> tuple[float, int]:
    """Wait until every worker has opened its stores, then publish the start time.

    Returns the start as wall time and as ``time.monotonic_ns()`` (the clock
    of the history records).
    """
    give_up = time.monotonic() + STARTUP_TIMEOUT
    while len(tally.ready) < len(handles) and time.monotonic() < give_up:
        if not all(h.is_alive() for h in handles):
            break  # a worker died during startup; _check_workers reports it
        tally.poll(logs)
        time.sleep(POLL_SECONDS)
    t0 = time.time() + 0.05
    t0_ns = time.monotonic_ns() + 50_000_000
    tmp = os.path.join(logdir, "go.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"t0": t0, "deadline": t0 + duration}, f)
    os.replace(tmp, os.path.join(logdir, "go.json"))  # workers never see half a file
    return t0, t0_ns


def _await_done(
    opts: Options,
    tally: Tally,
    logs: dict[int, str],
    handles: list[Any],
    t0: float,
    progress: _Progress,
    killer: Killer,
) -> float:
    """Wait for the workers, showing progress; return the wall time they finished."""
    hard_stop = t0 + opts.duration + opts.grace
    while any(h.is_alive() for h in handles) and time.time() < hard_stop:
        killer.tick(time.time())
        tally.poll(logs)
        progress.show(time.time() - t0, sum(tally.ops.values()), len(tally.oracle.violations))
        due = killer.next_due()
        time.sleep(POLL_SECONDS if due is None else min(POLL_SECONDS, max(0, due - time.time())))
    end = time.time()
    tally.poll(logs)
    progress.show(end - t0, sum(tally.ops.values()), len(tally.oracle.violations), force=True)
    return end


def _check_workers(
    opts: Options,
    tally: Tally,
    handles: list[Any],
    oracle: Oracle,
    killed: frozenset[int] | set[int] = frozenset(),
) -> None:
    for wid, handle in enumerate(handles):
        if wid in killed:
            continue  # SIGKILLed on purpose (--kill): its logged outcomes still count
        if handle.is_alive():
            oracle.violation(
                "straggler",
                f"worker {wid} still running {opts.grace:.0f}s after the deadline"
                + ("; killed" if isinstance(handle, multiprocessing.process.BaseProcess) else ""),
            )
            if isinstance(handle, multiprocessing.process.BaseProcess):
                handle.kill()  # SIGKILL: it is stuck, and its logged outcomes still count
                handle.join(5)
            continue
        exitcode = getattr(handle, "exitcode", 0)
        if exitcode:
            oracle.violation("worker-crashed", f"worker {wid} exited with code {exitcode}")
        elif wid not in tally.done:
            oracle.violation("worker-incomplete", f"worker {wid} stopped without finishing")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: exit status 0 if every invariant held, 1 otherwise.

    2 if the set-up failed (nothing was tested), 130 if interrupted.
    """
    opts = parse_args(argv)
    try:
        if opts.scenario == "memoize":  # memo.py
            report = run_memo(opts)
            text = json.dumps(report, indent=2) if opts.json else format_memo(report)
        else:
            report = run_stress(opts, progress_stream=sys.stderr)
            text = format_json(report) if opts.json else format_text(report)
    except SetupError as exc:
        print(f"persidict-stress: setup error, nothing was tested: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npersidict-stress: interrupted; workers stopped, no verdict", file=sys.stderr)
        return 130
    print(text)
    return 0 if report["ok"] else 1


__all__ = ["Options", "SetupError", "main", "parse_args", "run_stress"]


if __name__ == "__main__":
    raise SystemExit(main())
