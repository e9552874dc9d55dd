"""Adversary: FileDirDict's errors when the process runs out of file descriptors.

A child process fills its RLIMIT_NOFILE, then calls the API: every storage
failure must be a PersiDictError (a BackendError) that is still the OSError
it was, with its errno, and pickles; listings included. Afterwards the
store holds exactly what it held (a failed call changes nothing).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pickle
import subprocess
import sys

import pytest

from persidict import ETAG_IS_THE_SAME, FileDirDict
from persidict.engine.errors import StorageOSError

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


def test_a_full_disk_changes_nothing(tmp_path: pathlib.Path) -> None:
    """ENOSPC on a 256 KiB tmpfs: every failing write is a StorageOSError with errno 28 that
    pickles, and the store (values, etags, files: no temp file, no new directory) is as it was."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        d: FileDirDict = FileDirDict(base_dir=str(small / "d"))
        d["a"] = 1
        d["b", "c"] = [1]
        etag = d.etag("a")
        files = sorted(p.relative_to(small) for p in small.rglob("*"))
        big = b"x" * 400_000
        for call in (lambda: d.__setitem__("a", big), lambda: d.__setitem__("z", big),
                     lambda: d.__setitem__(("n", "m"), big),
                     lambda: d.set_item_if("a", value=big, condition=ETAG_IS_THE_SAME,
                                           expected_etag=etag),
                     lambda: d.transform_item("a", transformer=lambda v: big)):  # fmt: skip
            with pytest.raises(StorageOSError) as failed:
                call()
            assert failed.value.errno == errno.ENOSPC
            assert type(pickle.loads(pickle.dumps(failed.value))) is type(failed.value)
        assert {tuple(k): d[k] for k in d} == {("a",): 1, ("b", "c"): [1]}
        assert d.etag("a") == etag
        assert sorted(p.relative_to(small) for p in small.rglob("*")) == files
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
