"""evict attacked: real writer processes rewrite entries while it runs.

The invariant: an entry written after the eviction started is never gone
when it ends. Writers log ``end <key> <time>`` after each write returns
(O_APPEND, outside the store); every key with a write that began after
the eviction started and ended before it returned must then be present.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import random
import time

import pytest

from persidict import FileDirDict
from persidict.eviction import evict
from test_memoize_adversary_procs import log_line, read_log

CTX = multiprocessing.get_context("spawn")
KEYS = 150


def writer(store: FileDirDict, log: str, stop: str, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while not os.path.exists(stop) and n < 20000:
        key = f"k{rng.randrange(KEYS)}"
        began = time.time()
        store[key] = (seed, n)
        log_line(log, f"end {key} {began!r} {time.time()!r}")
        n += 1
        if n % 4 == 0:
            _ = store.get(f"k{rng.randrange(KEYS)}")


def _age_everything(base: str, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d != "@persidict"]
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (t, t))


@pytest.mark.parametrize("limits", [{"older_than": 50.0}, {"max_items": 10}])
def test_eviction_never_undoes_a_concurrent_write(
    limits: dict[str, float], tmp_path: pathlib.Path
) -> None:
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    for i in range(KEYS):
        store[f"k{i}"] = i
    _age_everything(store.base_dir, 100.0)
    log, stop = str(tmp_path / "log"), str(tmp_path / "stop")
    procs = [CTX.Process(target=writer, args=(store, log, stop, s)) for s in range(3)]
    for p in procs:
        p.start()
    try:
        deadline = time.monotonic() + 30
        while len(read_log(log)) < 30:  # the writers are busy
            assert time.monotonic() < deadline and all(p.is_alive() for p in procs)
            time.sleep(0.01)
        started = time.time()
        report = evict(store, **limits)  # type: ignore[arg-type]
        ended = time.time()
        present = set(store.keys())  # writes after this only add keys
    finally:
        pathlib.Path(stop).touch()
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    concurrent = {line[1] for line in read_log(log)
                  if float(line[2]) > started and float(line[3]) < ended}
    assert concurrent, "no write overlapped the eviction: the test tested nothing"
    undone = {k for k in concurrent if (k,) not in {key.strings for key in present}}
    assert not undone, (undone, report)
    assert report.removed, report  # it did evict the old entries


def test_a_nan_limit_is_refused(tmp_path: pathlib.Path) -> None:
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    for label in ("older_than", "now"):
        with pytest.raises(ValueError, match=label):
            evict(store, **{label: float("nan")})  # type: ignore[arg-type]


def test_the_cli_refuses_what_is_not_a_store_and_a_nan_limit(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persidict.cli import main

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.pkl").write_bytes(b"not ours")
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    store["k"] = 1
    cases = [
        ([str(plain), "--older-than", "0"], "not a persidict store"),
        ([str(plain / "x.pkl"), "--older-than", "0"], "not a directory"),
        ([str(tmp_path / "missing"), "--older-than", "0"], "not a directory"),
        ([store.base_dir, "--older-than", "nan"], "older_than"),
    ]
    for argv, message in cases:
        assert main(["evict", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert (plain / "x.pkl").exists() and store["k"] == 1  # nothing touched
