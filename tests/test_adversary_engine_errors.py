"""Adversary: FileDirDict's errors when the process runs out of file descriptors.

A child process fills its RLIMIT_NOFILE, then calls the API: every storage
failure must be a PersiDictError (a BackendError) that is still the OSError
it was, with its errno, and pickles; listings included. Afterwards the
store holds exactly what it held (a failed call changes nothing).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

CHILD = r"""
import errno, json, os, pickle, resource, sys
from persidict import BackendError, FileDirDict, PersiDictError
d = FileDirDict(base_dir=sys.argv[1])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
while True:
    try:
        held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
calls = {
    "get": lambda: d["k1"], "set": lambda: d.__setitem__("k1", 100),
    "insert": lambda: d.setdefault("new", 1), "len": lambda: len(d),
    "keys": lambda: list(d.keys()), "iter": lambda: list(d),
    "keys_and_timestamps": lambda: list(d.keys_and_timestamps()),
    "items": lambda: list(d.items()), "bool": lambda: bool(d),
}
report = {}
for name, call in calls.items():
    try:
        call()
        report[name] = "ok"
    except Exception as exc:
        again = pickle.loads(pickle.dumps(exc))
        report[name] = [type(exc).__name__, isinstance(exc, PersiDictError),
                        isinstance(exc, BackendError), isinstance(exc, OSError),
                        getattr(exc, "errno", None), type(again) is type(exc)]
for fd in held:
    os.close(fd)
print(json.dumps(report))
"""


def test_out_of_file_descriptors(tmp_path: pathlib.Path) -> None:
    from persidict import FileDirDict

    d: FileDirDict = FileDirDict(base_dir=str(tmp_path))
    for i in range(5):
        d[f"k{i}", "sub"] = i
        d[f"k{i}"] = i
    before = {k: d[k] for k in d}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=60, check=True)  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    failed = {name: r for name, r in report.items() if r != "ok"}
    assert failed, "the descriptors were not exhausted"
    for name, (kind, rooted, backend, oserror, code, pickles) in failed.items():
        assert (rooted, backend, oserror, code, pickles) == (True, True, True, 24, True), (
            name, kind)  # fmt: skip
    assert {k: d[k] for k in d} == before
