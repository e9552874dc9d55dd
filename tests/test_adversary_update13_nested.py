"""Adversary of the locked transform: what the transformer does to the key
(writes through other handles and spellings, nested transforms, no-op
deletes) and what is planted at its path (see test_adversary_update13.py)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from persidict import ITEM_NOT_AVAILABLE, FileDirDict
from persidict.backends.key_grants import held
from persidict.engine.keys import to_key


def _store(tmp_path: pathlib.Path, **kw: Any) -> FileDirDict[Any]:
    return FileDirDict(base_dir=str(tmp_path / "s"), durable=False, **kw)


def test_a_transformer_discarding_the_absent_key_commits(tmp_path: pathlib.Path) -> None:
    """A discard that finds nothing changes nothing: the commit must not lose to it
    (it did, every attempt, until ConcurrencyConflictError)."""
    d = _store(tmp_path)

    def clears_first(v: Any) -> Any:
        d.discard("k")
        return 1 if v is ITEM_NOT_AVAILABLE else v + 1

    assert d.transform_item("k", transformer=clears_first, n_retries=3).new_value == 1
    # Present: the nested discard deletes it (the first commit loses), the retry commits.
    assert d.transform_item("k", transformer=clears_first, n_retries=3).new_value == 1
    assert d["k"] == 1 and held() == {}
    assert not d.discard("gone")


def _handles(tmp_path: pathlib.Path, layout: str) -> list[tuple[FileDirDict[Any], Any]]:
    """(store, key) pairs that all name one file: ('a', 'b') of the store, 'b' of
    its subdict 'a', of a second handle, of a handle through a symlinked base_dir."""
    d = _store(tmp_path, layout=layout)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "s")
    other = FileDirDict(base_dir=str(tmp_path / "s") + "/", durable=False, layout=layout)
    linked = FileDirDict(base_dir=str(link), durable=False, layout=layout)
    return [(d, ("a", "b")), (d.get_subdict("a"), "b"), (other, ("a", "b")),
            (linked.get_subdict(["a"]), ["b"])]


@pytest.mark.parametrize("layout", ["direct", "hashed"])
def test_a_nested_write_through_another_handle_makes_the_commit_lose(
    tmp_path: pathlib.Path, layout: str
) -> None:
    """Every handle of the file shares its grant: the nested write is seen (the
    outer retries on it), not overwritten, refused or deadlocked."""
    pairs = _handles(tmp_path, layout)
    for (outer, ok), (inner, ik) in [(p, q) for p in pairs for q in pairs]:
        outer[ok] = 0
        calls: list[Any] = []

        def tr(v: Any, inner: Any = inner, ik: Any = ik, calls: list[Any] = calls) -> Any:
            calls.append(v)
            if len(calls) == 1:
                inner[ik] = 10  # the transformer's own write, through another handle
            return v + 1

        r = outer.transform_item(ok, transformer=tr, n_retries=1)
        assert calls == [0, 10] and r.new_value == 11 == inner[ik], (outer, inner, calls)
        assert r.resulting_etag == inner.etag(ik)
        assert held() == {}


@pytest.mark.parametrize("layout", ["direct", "hashed"])
def test_threads_transforming_through_every_handle_lose_nothing(
    tmp_path: pathlib.Path, layout: str
) -> None:
    import threading

    pairs = _handles(tmp_path, layout)
    pairs[0][0][pairs[0][1]] = 0
    errors: list[BaseException] = []

    def run(store: Any, key: Any) -> None:
        try:
            for _ in range(150):
                store.transform_item(key, transformer=lambda v: v + 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pairs[i % len(pairs)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert pairs[0][0][pairs[0][1]] == 8 * 150


def test_nested_keep_and_delete_combinations(tmp_path: pathlib.Path) -> None:
    """Outer and inner transforms of one key, each keeping, deleting or writing:
    an inner change makes the outer retry on it; an inner no-op does not."""
    from persidict import DELETE_CURRENT, KEEP_CURRENT

    d = _store(tmp_path)
    results = {"keep": KEEP_CURRENT, "delete": DELETE_CURRENT, "write": "inner"}
    for start in ("x", None):
        for inner in results:
            for outer in ("keep", "delete", "write"):
                if start is None:
                    d.discard("k")
                else:
                    d["k"] = start
                calls: list[Any] = []

                def tr(v: Any, inner: str = inner, outer: str = outer,
                       calls: list[Any] = calls) -> Any:
                    calls.append(v)
                    if len(calls) == 1:
                        d.transform_item("k", transformer=lambda w: results[inner])
                    return {"keep": KEEP_CURRENT, "delete": DELETE_CURRENT,
                            "write": "outer"}[outer]

                r = d.transform_item("k", transformer=tr, n_retries=1)
                inner_changed = inner == "write" or (inner == "delete" and start is not None)
                case = (start, inner, outer, calls)
                assert len(calls) == (2 if inner_changed else 1), case
                after_inner = ("inner" if inner == "write" else
                               None if inner == "delete" else start)
                assert calls[-1] == (ITEM_NOT_AVAILABLE if after_inner is None
                                     else after_inner), case
                want = {"keep": after_inner, "delete": None, "write": "outer"}[outer]
                assert d.get("k") == want, case
                if want is None:
                    assert r.new_value is ITEM_NOT_AVAILABLE is r.resulting_etag, case
                else:
                    assert r.new_value == want and r.resulting_etag == d.etag("k"), case
                assert held() == {}


def test_a_thread_timing_out_on_the_lock_holds_nothing_after(tmp_path: pathlib.Path) -> None:
    import threading

    from persidict import LockTimeoutError

    d = _store(tmp_path)
    d["k"] = 0
    inside, go = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def slow(v: Any) -> Any:
        inside.set()
        go.wait(20)
        return v + 1

    t = threading.Thread(target=lambda: d.transform_item("k", transformer=slow))
    t.start()
    assert inside.wait(20)

    def impatient() -> None:
        waiter: FileDirDict[Any] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
        waiter.lock_timeout = 0.2
        try:
            waiter.transform_item("k", transformer=lambda v: v + 100)
        except LockTimeoutError:
            outcome.append(held() == {})
        go.set()  # the holder commits; this thread's lock is taken afresh
        waiter.lock_timeout = 10
        outcome.append(waiter.transform_item("k", transformer=lambda v: v + 10).new_value)

    w = threading.Thread(target=impatient)
    w.start()
    w.join(20)
    t.join(20)
    assert d["k"] == 11 and outcome == [True, 11]


def test_a_planted_directory_symlink_is_refused_and_outside_untouched(
    tmp_path: pathlib.Path,
) -> None:
    import os

    from persidict import DELETE_CURRENT, BackendError

    d = _store(tmp_path)
    d["a", "k"] = 1
    path = pathlib.Path(d.byte_store.location(to_key(("a", "k"))))
    outside = tmp_path / "outside"
    path.parent.rename(outside)
    os.symlink(outside, path.parent)  # the key's directory, now a link out of the store
    before = (outside / path.name).read_bytes()
    seen: list[Any] = []
    with pytest.raises(BackendError, match="symlink"):
        d.transform_item(("a", "k"), transformer=lambda v: seen.append(v) or 2)
    r = d.transform_item(("a", "k"), transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert seen == [ITEM_NOT_AVAILABLE] and (outside / path.name).read_bytes() == before
    assert held() == {}


def test_a_transformer_raising_after_its_nested_write_keeps_that_write(
    tmp_path: pathlib.Path,
) -> None:
    d = _store(tmp_path)
    d["k"] = 0

    def tr(v: Any) -> Any:
        d["k"] = 5
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        d.transform_item("k", transformer=tr)
    assert d["k"] == 5 and held() == {}
    r = d.transform_item("k", transformer=lambda v: v + 1, n_retries=0)
    assert r.new_value == 6 and r.resulting_etag == d.etag("k")


def test_write_once_and_append_only_transforms(tmp_path: pathlib.Path) -> None:
    from persidict import DELETE_CURRENT, KEEP_CURRENT, MutationPolicyError, WriteOnceDict

    for d in (_store(tmp_path, append_only=True),
              WriteOnceDict(wrapped_dict=_store(tmp_path / "w", append_only=True))):
        r = d.transform_item("k", transformer=lambda v: 1 if v is ITEM_NOT_AVAILABLE else v)
        assert r.new_value == 1 == d["k"] and r.resulting_etag == d.etag("k")
        for change in (lambda v: v + 1, lambda v: v, lambda v: DELETE_CURRENT):
            with pytest.raises(MutationPolicyError):
                d.transform_item("k", transformer=change)
        assert d.transform_item("k", transformer=lambda v: KEEP_CURRENT).new_value == 1
        assert d.transform_item("gone", transformer=lambda v: DELETE_CURRENT).new_value is (
            ITEM_NOT_AVAILABLE)
        with pytest.raises(TypeError):
            d.transform_item("k", transformer=lambda v: KEEP_CURRENT, n_retries="x")
        assert d["k"] == 1 and held() == {}


def test_a_directory_or_fifo_planted_at_the_key_path(tmp_path: pathlib.Path) -> None:
    """Not values: the transformer sees the key absent; writing over a planted
    directory fails mapped (nothing held after), a FIFO is replaced, not opened."""
    import os

    from persidict import DELETE_CURRENT, BackendError

    d = _store(tmp_path)
    path = d.byte_store.location(to_key("k"))
    os.makedirs(path)
    seen: list[Any] = []
    with pytest.raises(BackendError):
        d.transform_item("k", transformer=lambda v: seen.append(v) or 1)
    assert seen == [ITEM_NOT_AVAILABLE] and os.path.isdir(path) and held() == {}
    assert d.transform_item("k", transformer=lambda v: DELETE_CURRENT).new_value is (
        ITEM_NOT_AVAILABLE)
    os.rmdir(path)
    os.mkfifo(path)
    r = d.transform_item("k", transformer=lambda v: [v])
    assert r.new_value == [ITEM_NOT_AVAILABLE] == d["k"] and r.resulting_etag == d.etag("k")


def test_nested_operations_that_change_nothing_do_not_make_the_commit_lose(
    tmp_path: pathlib.Path,
) -> None:
    """Reads, refused conditionals and deletes that find nothing, of the key and
    of an absent one of its directory: the commit wins at the first attempt."""
    from persidict import ETAG_HAS_CHANGED, ETAG_IS_THE_SAME, KEEP_CURRENT

    d = _store(tmp_path)
    d["a", "k"] = 1
    sub = d.get_subdict("a")

    def quiet(v: Any) -> Any:
        etag = d.etag(("a", "k"))
        assert sub.setdefault("k", 99) == 1
        assert not sub.set_item_if("k", value=7, condition=ETAG_HAS_CHANGED,
                                   expected_etag=etag).condition_was_satisfied
        assert not d.discard_if(("a", "k"), condition=ETAG_IS_THE_SAME,
                                expected_etag=ITEM_NOT_AVAILABLE).condition_was_satisfied
        assert sub.set_item_if("k", value=KEEP_CURRENT, condition=ETAG_IS_THE_SAME,
                               expected_etag=etag).condition_was_satisfied
        assert not sub.setdefault_if("k", default_value=5, condition=ETAG_IS_THE_SAME,
                                     expected_etag=ITEM_NOT_AVAILABLE).condition_was_satisfied
        assert ("a", "k") in d and sub.get_with_etag("k").new_value == 1
        for absent in (("a", "gone"), "gone"):
            assert not d.discard(absent)
            assert d.pop(absent, None) is None
            with pytest.raises(KeyError):
                del d[absent]
        return v + 1

    r = d.transform_item(("a", "k"), transformer=quiet, n_retries=0)
    assert r.new_value == 2 == d["a", "k"] and r.resulting_etag == d.etag(("a", "k"))
    assert held() == {}
