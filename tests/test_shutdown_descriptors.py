"""A store still alive when the interpreter tears its modules down exits quietly.

At exit, module globals are set to None module by module; an object held by
a module torn down late (here: ``os``) is freed after ``contextlib`` and our
own modules are gone. Its lock descriptors' finalizers (and a lock hold's,
still taken) must not run code that needs them: they printed "Exception
ignored in: Descriptor.__del__ ... TypeError: 'NoneType' object is not
callable" from every such process.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

_CHILD = """
import gc, os, sys
from persidict import FileDirDict
from persidict.concurrency.locks_common import Descriptor, Hold
from persidict.engine.keys import to_key
d = FileDirDict(base_dir=sys.argv[1])
d["a"] = 1
d.transform_item("a", transformer=lambda v: v + 1)
held = [o for o in gc.get_objects() if isinstance(o, Descriptor)]
assert held, "no lock descriptor was opened"
if sys.argv[2] == "hold":  # a hold still taken, as after an __exit__ cut short
    _, locks, offset = d.byte_store.where(to_key("b"))
    hold = Hold(locks, offset, "b")
    hold.__enter__()
    held.append(hold)
os._held_until_late_teardown = (d, held)
print("ok")
"""


@pytest.mark.parametrize("what", ["descriptors", "hold"])
@pytest.mark.parametrize("backend", ["ofd", "flock"])
def test_a_store_freed_during_module_teardown_exits_without_errors(
    tmp_path: pathlib.Path, backend: str, what: str
) -> None:
    if backend == "ofd" and not sys.platform.startswith("linux"):
        pytest.skip("OFD locks are Linux-only")
    env = {**os.environ, "PERSIDICT_LOCKS": backend}
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "store"), what],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    assert run.stderr == "", run.stderr
