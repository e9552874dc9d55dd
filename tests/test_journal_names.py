"""Temp names (journal entries) stay their owner's across every kind of fork.

temp_name() formats its owner prefix once per process; these tests pin that
the cache never outlives the process it was made for.
"""

from __future__ import annotations

import ctypes
import os

from persidict.concurrency.journal import parse_temp_name, temp_name


def _name_from_child(fork: object) -> tuple[int, str]:
    """(child pid, the temp name the child made) for a child made by ``fork()``."""
    temp_name()  # the parent's prefix is cached now
    r, w = os.pipe()
    pid = fork()  # type: ignore[operator]
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(w, temp_name().encode())
        finally:
            os._exit(0)
    assert pid > 0, ctypes.get_errno()
    os.close(w)
    name = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return pid, name


def test_a_child_of_os_fork_names_itself() -> None:
    pid, name = _name_from_child(os.fork)
    child = parse_temp_name(name)
    assert child is not None and child.pid == pid != os.getpid()


def test_a_child_of_a_fork_that_ran_no_at_fork_hooks_names_itself() -> None:
    """libc's fork() called from C (here through ctypes) skips
    os.register_at_fork: the cached prefix must still not name the parent,
    or recovery would judge the child's orphans by the parent's liveness."""
    pid, name = _name_from_child(ctypes.CDLL(None, use_errno=True).fork)
    child = parse_temp_name(name)
    assert child is not None and child.pid == pid != os.getpid()
    assert temp_name() != name
