"""Adversary of ``Hold`` (a hold looks up its descriptor once): re-entry,
signals landing between the descriptor look-up and the take, fork() inside a
hold and from another thread, on both lock backends (constructed directly,
so no PERSIDICT_LOCKS is needed in this process)."""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.backends.key_grants import held
from persidict.concurrency import locks_flock, locks_ofd
from persidict.concurrency.locks_common import KeyLocksBase, lock_offset
from persidict.engine.errors import LockTimeoutError
from persidict.engine.keys import to_key

_BACKENDS: dict[str, Callable[..., KeyLocksBase]] = {
    "ofd": locks_ofd.KeyLocks, "flock": locks_flock.KeyLocks,
}
if not hasattr(__import__("fcntl"), "F_OFD_SETLK"):  # pragma: no cover - not Linux
    del _BACKENDS["ofd"]


@pytest.fixture(params=sorted(_BACKENDS))
def make_locks(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[
    Callable[[float], KeyLocksBase]
]:
    (tmp_path / "@persidict").mkdir()
    path = str(tmp_path / "@persidict" / "lock")
    yield lambda timeout: _BACKENDS[request.param](path, timeout=timeout)


def _done_elsewhere(action: Callable[[], object]) -> bool:
    """Whether ``action``, run in another thread, finishes without LockTimeoutError."""
    out: list[bool] = []

    def probe() -> None:
        try:
            action()
            out.append(True)
        except LockTimeoutError:
            out.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join(10)
    return out[0]


def _free_elsewhere(make: Callable[[float], KeyLocksBase], name: str) -> bool:
    """Whether another thread (own descriptor, own KeyLocks) takes ``name``'s lock at once."""

    def take() -> None:
        with make(0.2).hold(name):
            pass

    return _done_elsewhere(take)


def _names_on_one_stripe(n: int) -> list[str]:
    by: dict[int, list[str]] = {}
    for i in range(5000):
        names = by.setdefault(lock_offset(f"n{i}") % locks_flock.STRIPES, [])
        names.append(f"n{i}")
        if len(names) == n:
            return names
    raise AssertionError("unreachable")


def _names_on_other_stripes(stripe: int) -> list[str]:
    """_OPEN_MAX names, each on its own stripe, none on ``stripe``: holding
    them in turn evicts every other unheld descriptor of the thread."""
    others: list[str] = []
    seen = {stripe}
    for i in range(5000):
        s = lock_offset(f"o{i}") % locks_flock.STRIPES
        if s not in seen and len(others) < locks_flock._OPEN_MAX:
            seen.add(s)
            others.append(f"o{i}")
    return others


def _wait_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_refused_reentry_keeps_the_outer_hold(
    make_locks: Callable[[float], KeyLocksBase],
) -> None:
    """A handler taking the lock its thread holds gets RuntimeError; the
    refused Hold, entered or dropped, releases nothing of the outer one."""
    locks = make_locks(0.2)
    refused: list[BaseException] = []

    def handler(signum: int, frame: Any) -> None:
        try:
            with locks.hold("k"):
                refused.append(AssertionError("re-entered"))
        except RuntimeError as exc:
            refused.append(exc)

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with locks.hold("k"):
            signal.raise_signal(signal.SIGUSR1)
            inner = locks.hold("k")
            with pytest.raises(RuntimeError, match="already held"):
                inner.__enter__()
            del inner  # a refused hold owes no release, not even when dropped
            assert len(refused) == 1 and isinstance(refused[0], RuntimeError), refused
            assert not _free_elsewhere(make_locks, "k")
            assert lock_offset("k") in locks._held(lock_offset("k"))
        assert _free_elsewhere(make_locks, "k")
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_handler_evicting_the_stripe_before_the_take(tmp_path: pathlib.Path) -> None:
    """flock: a signal landing right after a hold looked its descriptor up runs
    a handler that writes _OPEN_MAX keys of other stripes, which evicts that
    unheld descriptor. The hold then took the flock through a descriptor the
    thread no longer knew of, and a nested hold of another name of the stripe
    (allowed: see test_two_names_of_one_stripe_nest_in_one_thread) opened a
    second one and waited for itself until LockTimeoutError."""
    (tmp_path / "@persidict").mkdir()
    locks = locks_flock.KeyLocks(str(tmp_path / "@persidict" / "lock"), timeout=0.3)
    a, b = _names_on_one_stripe(2)
    stripe = lock_offset(a) % locks_flock.STRIPES
    others = _names_on_other_stripes(stripe)

    def handler(signum: int, frame: Any) -> None:
        for name in others:
            with locks.hold(name):
                pass

    stripes = locks._stripes
    real = stripes.descriptor
    armed = [True]

    def descriptor(offset: int) -> Any:
        d = real(offset)
        if armed[0]:
            armed[0] = False
            signal.raise_signal(signal.SIGUSR1)  # the handler runs before the take
        return d

    old = signal.signal(signal.SIGUSR1, handler)
    stripes.descriptor = descriptor  # type: ignore[method-assign]
    try:
        with locks.hold(a):
            assert not armed[0]
            with locks.hold(b):  # no LockTimeoutError: one flock, one descriptor
                pass
            assert not _free_from(locks, b)
        assert _free_from(locks, a) and _free_from(locks, b)
    finally:
        del stripes.descriptor
        signal.signal(signal.SIGUSR1, old)


def test_a_handler_evicting_the_stripe_inside_the_release(tmp_path: pathlib.Path) -> None:
    """flock: the same, landing inside the release (no name of the stripe held
    any more, its flock not yet dropped): the handler's hold of another name
    of the stripe waited for the flock of the evicted descriptor, i.e. for
    itself."""
    import fcntl

    (tmp_path / "@persidict").mkdir()
    locks = locks_flock.KeyLocks(str(tmp_path / "@persidict" / "lock"), timeout=0.3)
    a, b = _names_on_one_stripe(2)
    stripe = lock_offset(a) % locks_flock.STRIPES
    others = _names_on_other_stripes(stripe)
    out: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        for name in others:
            with locks.hold(name):
                pass
        try:
            with locks.hold(b):
                out.append("took")
                out.append("free" if _free_from(locks, b) else "exclusive")
        except LockTimeoutError:
            out.append("waited for itself")

    real = locks._flock
    armed = [False]

    def flock(d: Any, operation: int) -> bool:
        if operation == fcntl.LOCK_UN and armed[0]:
            armed[0] = False
            signal.raise_signal(signal.SIGUSR1)  # the handler runs before the unlock
        return real(d, operation)

    old = signal.signal(signal.SIGUSR1, handler)
    locks._flock = flock  # type: ignore[method-assign]
    try:
        with locks.hold(a):
            armed[0] = True
    finally:
        del locks._flock
        signal.signal(signal.SIGUSR1, old)
    assert out == ["took", "exclusive"]
    assert _free_from(locks, a) and _free_from(locks, b)


def test_a_handler_right_after_the_unlock_takes_the_flock_again(tmp_path: pathlib.Path) -> None:
    """flock: a handler landing just after the stripe's unlock, before the
    release has finished, holds another name of the stripe exclusively."""
    import fcntl

    (tmp_path / "@persidict").mkdir()
    locks = locks_flock.KeyLocks(str(tmp_path / "@persidict" / "lock"), timeout=0.3)
    a, b = _names_on_one_stripe(2)
    out: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        with locks.hold(b):
            out.append("free" if _free_from(locks, b) else "exclusive")

    real = locks._flock
    armed = [False]

    def flock(d: Any, operation: int) -> bool:
        done = real(d, operation)
        if operation == fcntl.LOCK_UN and armed[0]:
            armed[0] = False
            signal.raise_signal(signal.SIGUSR1)  # the handler runs after the unlock
        return done

    old = signal.signal(signal.SIGUSR1, handler)
    locks._flock = flock  # type: ignore[method-assign]
    try:
        with locks.hold(a):
            armed[0] = True
    finally:
        del locks._flock
        signal.signal(signal.SIGUSR1, old)
    assert out == ["exclusive"]
    assert _free_from(locks, a) and _free_from(locks, b)


def _free_from(locks: locks_flock.KeyLocks, name: str) -> bool:
    return _free_elsewhere(lambda t: locks_flock.KeyLocks(locks.lock_path, timeout=t), name)


def test_two_names_of_one_stripe_interleaved(tmp_path: pathlib.Path) -> None:
    """flock: holds of three names of one stripe ended out of order; the stripe
    stays locked until the last one ends, and re-entry of each is refused."""
    (tmp_path / "@persidict").mkdir()
    locks = locks_flock.KeyLocks(str(tmp_path / "@persidict" / "lock"), timeout=0.2)
    names = _names_on_one_stripe(3)
    holds = [locks.hold(n) for n in names]
    for h in holds:
        h.__enter__()
    for n in names:
        with pytest.raises(RuntimeError), locks.hold(n):
            pass
    for h in (holds[1], holds[0]):
        h.__exit__(None, None, None)
        assert not _free_from(locks, names[2])
    holds[2].__exit__(None, None, None)
    assert all(_free_from(locks, n) for n in names)


def test_a_child_forked_inside_a_hold(make_locks: Callable[[float], KeyLocksBase]) -> None:
    """The child leaves the parent's hold without error and without ending the
    lock it takes itself afterwards (its own descriptor may reuse the closed
    one's number); the parent's hold stayed exclusive meanwhile."""
    locks = make_locks(0.2)
    go_r, go_w = os.pipe()
    with locks.hold("k"):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 9
            try:
                code = 2
                try:
                    with make_locks(0.2).hold("k"):
                        code = 3  # took a lock the parent holds
                except LockTimeoutError:
                    code = 4
                os.read(go_r, 1)  # the parent has left its hold
                mine = make_locks(5.0).hold("k")  # the child's own, across the exit below
                mine.__enter__()
                code = 5
            except BaseException:
                os._exit(code)
        else:
            assert not _free_elsewhere(make_locks, "k")
    if pid == 0:  # pragma: no cover - the child, out of the parent's hold
        try:
            code = 6
            if not _free_elsewhere(make_locks, "k"):  # still the child's
                code = 0
            mine.__exit__(None, None, None)
        finally:
            os._exit(code)
    os.write(go_w, b"x")
    assert _wait_child(pid) == 0
    os.close(go_r)
    os.close(go_w)
    assert _free_elsewhere(make_locks, "k")


def test_a_thread_forks_while_main_holds(make_locks: Callable[[float], KeyLocksBase]) -> None:
    """Another thread forks while this one holds a lock: the child cannot take
    it, takes others, and this thread's hold stays exclusive."""
    locks = make_locks(0.2)
    codes: list[int] = []

    def forker() -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: only this thread
            code = 1
            try:
                try:
                    with make_locks(0.2).hold("k"):
                        code = 2
                except LockTimeoutError:
                    with make_locks(0.2).hold("other"):
                        code = 0
            finally:
                os._exit(code)
        codes.append(_wait_child(pid))

    with locks.hold("k"):
        t = threading.Thread(target=forker)
        t.start()
        t.join(15)
        assert codes == [0]
        assert not _free_elsewhere(make_locks, "k")
    assert _free_elsewhere(make_locks, "k")


def _store(tmp_path: pathlib.Path) -> FileDirDict[Any]:
    return FileDirDict(base_dir=str(tmp_path / "s"), durable=False)


def _written_elsewhere(tmp_path: pathlib.Path, key: str, value: Any) -> bool:
    """Whether another thread, through another handle, writes ``key`` at once."""
    probe = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    probe.lock_timeout = 0.2
    return _done_elsewhere(lambda: probe.__setitem__(key, value))


def test_fork_inside_lock_key_block(tmp_path: pathlib.Path) -> None:
    """``with lock(key)``, fork: the child's write of the key waits for the
    parent (LockTimeoutError), it leaves the block cleanly, and the parent's
    hold stays exclusive until the parent leaves it."""
    d = _store(tmp_path)
    d["k"] = 0
    with d.byte_store.lock(to_key("k")):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                d.lock_timeout = 0.2
                try:
                    d["k"] = 99
                    code = 2
                except LockTimeoutError:
                    code = 3
            except BaseException:
                os._exit(code)
        else:
            d["k"] = 1  # the parent's own write under its lock
            assert _wait_child(pid) == 0  # the parent holds the lock meanwhile
            assert not _written_elsewhere(tmp_path, "k", 5)
            d["k"] = 2
    if pid == 0:  # pragma: no cover - the child, out of the block
        os._exit(0 if code == 3 and held() == {} else code)  # leaving it raised nothing
    assert d["k"] == 2 and held() == {}
    assert _written_elsewhere(tmp_path, "k", 5)


def test_fork_inside_a_transformer(tmp_path: pathlib.Path) -> None:
    """A transformer forks on its first call: the child's commit is no commit
    under the parent's lock; it retries under its own, after the parent's."""
    d = _store(tmp_path)
    d["k"] = 0
    calls: list[int] = []

    def tr(v: Any) -> Any:
        calls.append(v)
        if len(calls) == 1:
            pid = os.fork()
            calls.append(pid)
            if pid != 0:
                time.sleep(0.3)  # the child's chance to commit under our lock
        return v + 1

    d.lock_timeout = 10.0
    try:
        r = d.transform_item("k", transformer=tr)
    except BaseException:
        if calls[1:2] == [0]:  # pragma: no cover - the child
            os._exit(7)
        raise
    if calls[1] == 0:  # pragma: no cover - the child: it waited for the parent
        os._exit(0 if (r.new_value, calls) == (2, [0, 0, 1]) else 8)
    assert r.new_value == 1 and calls == [0, calls[1]]
    assert _wait_child(calls[1]) == 0
    assert d["k"] == 2


def test_no_grant_outlives_an_update(tmp_path: pathlib.Path) -> None:
    """After transform_item returns (or its transformer raised), this thread
    holds no grant: its next write of the key takes the lock again, so waits
    for another holder."""
    d = _store(tmp_path)
    d["k"] = 0
    d.transform_item("k", transformer=lambda v: v + 1)
    with pytest.raises(ZeroDivisionError):
        d.transform_item("k", transformer=lambda v: 1 / 0)
    assert held() == {}
    _, locks, offset = d.byte_store.where(to_key("k"))
    taken, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with type(locks)(locks.lock_path).hold_at(offset, "k"):
            taken.set()
            leave.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert taken.wait(10)
        d.lock_timeout = 0.2
        with pytest.raises(LockTimeoutError):
            d["k"] = 5
        with pytest.raises(LockTimeoutError), d.byte_store.lock(to_key("k")):
            pass
    finally:
        leave.set()
        t.join(10)
    assert d["k"] == 1


def test_a_hold_whose_init_was_interrupted_drops_silently(
    make_locks: Callable[[float], KeyLocksBase], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signal landing at the start of Hold.__init__ (before ``taken`` is set)
    leaves an object without attributes: dropping it must hold, release and
    report nothing (it printed AttributeError from __del__ as unraisable)."""
    from persidict.concurrency.locks_common import Hold

    locks = make_locks(0.2)
    raised: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: raised.append(u.exc_value))

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    real_init = Hold.__init__

    def interrupted_init(self: Hold, *args: Any) -> None:
        signal.raise_signal(signal.SIGUSR1)  # lands before the first attribute is set
        real_init(self, *args)

    old = signal.signal(signal.SIGUSR1, handler)
    monkeypatch.setattr(Hold, "__init__", interrupted_init)
    try:
        with pytest.raises(KeyboardInterrupt), locks.hold("k"):
            pass
    finally:
        signal.signal(signal.SIGUSR1, old)
    monkeypatch.undo()
    assert raised == []
    assert lock_offset("k") not in locks._held(lock_offset("k"))
    assert _free_elsewhere(make_locks, "k")
