"""The engine over bytes (issue 10): LocalDict isolation, EmptyDict as a null
ByteStore, the error hierarchy, FileDirDict's OSError mapping, and a
third-party ByteStore written only against the documented contract."""

from __future__ import annotations

import errno
import itertools
import multiprocessing
import os
import pickle
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persidict
from persidict import (
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    BackendError,
    ByteStore,
    ByteStoreDict,
    ConcurrencyConflictError,
    EmptyDict,
    FileDirDict,
    LocalDict,
    LocksUnsupportedError,
    LockTimeoutError,
    MutationPolicyError,
    OutcomeUnknownError,
    PersiDict,
    PersiDictError,
    WriteOnceConsistencyError,
    WriteOnceDict,
)
from persidict.engine.contract import ABSENT, Blob, Capabilities
from persidict.engine.errors import PreconditionFailed, StorageOSError
from persidict.engine.keys import NonEmptySafeStrTuple, SafeStrTuple

# -- LocalDict: what is stored is never the caller's object --------------------


@pytest.mark.parametrize("fmt", ["pkl", "json"])
def test_local_dict_values_are_isolated_from_the_caller(fmt: str) -> None:
    d = LocalDict(serialization_format=fmt)
    written = {"list": [1, 2], "nested": {"deep": [{"x": 1}]}}
    d["k"] = written
    etag = d.etag("k")
    written["list"].append(3)  # mutate what was written
    written["nested"]["deep"][0]["x"] = 99
    read = d["k"]
    assert read == {"list": [1, 2], "nested": {"deep": [{"x": 1}]}}
    read["list"].clear()  # mutate what was read
    read["nested"]["deep"].append("junk")
    assert d["k"] == {"list": [1, 2], "nested": {"deep": [{"x": 1}]}}
    got = d.get_with_etag("k").new_value
    got["nested"]["deep"][0]["x"] = -1
    assert dict(d.items())[("k",)] == {"list": [1, 2], "nested": {"deep": [{"x": 1}]}}
    assert d.etag("k") == etag  # nothing was written meanwhile


def test_local_dict_transform_result_and_setdefault_are_isolated() -> None:
    d = LocalDict()
    result = d.transform_item("k", transformer=lambda v: [["a"]])
    result.new_value[0].append("b")
    assert d["k"] == [["a"]]
    default: list[Any] = [["x"]]
    assert d.setdefault("new", default) == [["x"]]
    default[0].append("y")
    assert d["new"] == [["x"]]
    view = d.get_subdict("p")
    inner: dict[str, list[int]] = {"v": [1]}
    view["q"] = inner
    inner["v"].append(2)
    assert d["p", "q"] == {"v": [1]}


# -- EmptyDict: the whole API is the engine's ------------------------------------

_RICH_API = {name for name in dir(PersiDict) if not name.startswith("_")} | {
    "__setitem__", "__getitem__", "__delitem__", "__contains__", "__len__", "__iter__",
}


def test_empty_dict_overrides_no_rich_api_method() -> None:
    overridden = _RICH_API & set(vars(EmptyDict))
    assert overridden == set(), f"EmptyDict re-implements {sorted(overridden)}"
    assert set(vars(EmptyDict)) - {"_bytes", "__doc__", "__module__", "__qualname__",
                                   "__firstlineno__", "__static_attributes__",
                                   "__parameters__", "__orig_bases__", "__annotations__",
                                   "__slots__", "__abstractmethods__", "_abc_impl"} == set()
    assert EmptyDict().byte_store.capabilities.discards_writes


@pytest.mark.parametrize("append_only", [False, True])
def test_empty_dict_keeps_the_documented_results(append_only: bool) -> None:
    d = EmptyDict(append_only=append_only, base_class_for_values=int)
    d["a"] = 1
    d.update({"b": 2})
    assert len(d) == 0 and not d and list(d) == [] and "a" not in d
    assert d.get("a", "dflt") == "dflt" and d.random_key() is None
    with pytest.raises(KeyError):
        d["a"]
    with pytest.raises(KeyError):
        d.timestamp("a")
    with pytest.raises(TypeError):
        d["a"] = "not an int"  # writes are still validated
    calls: list[object] = []
    res = d.transform_item("a", transformer=lambda v: calls.append(v) or 5)
    assert calls == [] and res.resulting_etag is ITEM_NOT_AVAILABLE
    assert res.new_value is ITEM_NOT_AVAILABLE
    for value in (7, KEEP_CURRENT, DELETE_CURRENT):
        if append_only and value is DELETE_CURRENT:
            continue
        r = d.set_item_if("a", value=value, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
        assert (r.condition_was_satisfied, r.actual_etag, r.resulting_etag, r.new_value) == (
            True, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
    r = d.set_item_if("a", value=7, condition=ETAG_IS_THE_SAME, expected_etag="e")  # type: ignore[arg-type]
    assert not r.condition_was_satisfied and r.new_value is ITEM_NOT_AVAILABLE
    r = d.setdefault_if("a", default_value=3, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied and r.new_value is ITEM_NOT_AVAILABLE
    r = d.setdefault_if("a", default_value=3, condition=ETAG_HAS_CHANGED,
                        expected_etag=ITEM_NOT_AVAILABLE)
    assert not r.condition_was_satisfied
    assert d.setdefault("a", 4) == 4 and "a" not in d
    assert d.discard("a") is False and d.delete_if_exists("a") is False
    sub = d.get_subdict("x")
    assert type(sub) is EmptyDict and sub.get_params() == d.get_params()


# -- one error hierarchy ------------------------------------------------------------


def _errors() -> list[BaseException]:
    mapped = StorageOSError.mapping(PermissionError)(
        "key ('k',): write of /p failed", backend="filesystem", operation="write",
        key=NonEmptySafeStrTuple("k"), path="/p", errno=errno.EACCES,
    )
    return [
        BackendError("m", backend="s3", operation="get", key="k"),
        OutcomeUnknownError("m", backend="s3", operation="put", key="k", value=[1]),
        ConcurrencyConflictError("k", 3),
        MutationPolicyError("append-only"),
        WriteOnceConsistencyError(("k",), "1 != 2"),
        LockTimeoutError("k", "/x/lock", 1.5),
        LocksUnsupportedError(errno.ENOLCK, "no locks", "/x/lock"),
        mapped,
    ]


def test_every_error_is_a_persidict_error_and_keeps_its_builtin() -> None:
    backend, unknown, conflict, policy, once, timeout, nolocks, mapped = _errors()
    for exc in _errors():
        assert isinstance(exc, PersiDictError), type(exc)
    assert isinstance(backend, RuntimeError) and isinstance(unknown, BackendError)
    assert isinstance(conflict, RuntimeError)
    assert isinstance(policy, TypeError) and isinstance(once, MutationPolicyError)
    assert isinstance(once, ValueError)
    assert isinstance(timeout, TimeoutError) and persidict.LockTimeoutError is LockTimeoutError
    assert isinstance(nolocks, OSError)
    assert isinstance(mapped, BackendError) and isinstance(mapped, PermissionError)
    assert "PersiDictError" in persidict.__all__


def test_every_error_pickles_with_its_fields() -> None:
    for exc in _errors():
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert {k: repr(v) for k, v in vars(back).items()} == {
            k: repr(v) for k, v in vars(exc).items()}, type(exc)


# -- FileDirDict maps its OSErrors at its boundary ---------------------------------


def _no_temp_left(d: FileDirDict) -> None:
    tmp = Path(d.byte_store.journal.directory)  # type: ignore[attr-defined]
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_enospc_on_write_names_key_path_and_operation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["a", "b"] = "old"
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(BackendError) as info:
        d["a", "b"] = "new"
    monkeypatch.setattr(os, "write", real_write)
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert err.operation == "write" and err.key == ("a", "b") and err.backend == "filesystem"
    path = d.byte_store.path(NonEmptySafeStrTuple("a", "b"))  # type: ignore[attr-defined]
    assert err.path == path and path in str(err) and "('a', 'b')" in str(err)
    assert isinstance(err.__cause__, OSError) and err.__cause__.errno == errno.ENOSPC
    assert d["a", "b"] == "old"  # the call raised: the store is unchanged
    _no_temp_left(d)
    assert pickle.loads(pickle.dumps(err)).path == path


def test_permission_error_stays_a_permission_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = 1
    real_unlink = os.unlink

    def refuse(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).endswith(".pkl"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(PermissionError) as info:
        del d["k"]
    monkeypatch.setattr(os, "unlink", real_unlink)
    assert isinstance(info.value, BackendError) and info.value.operation == "delete"
    assert d["k"] == 1


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, check=False)
    return done.returncode == 0


def _fill(base: str) -> None:
    FileDirDict(base_dir=base, durable=False)["small"] = b"x" * 100


def test_a_full_filesystem_is_mapped(tmp_path: Path) -> None:
    """A real fault: a 256 KiB tmpfs fills up."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        d = FileDirDict(base_dir=mnt / "s", durable=False)
        d["small"] = b"x" * 100
        with pytest.raises(BackendError) as full:
            d["big"] = b"y" * 1_000_000
        assert isinstance(full.value, OSError) and full.value.errno == errno.ENOSPC
        assert full.value.operation == "write" and full.value.key == ("big",)
        assert str(mnt) in str(full.value)
        assert "big" not in d and d["small"] == b"x" * 100
        _no_temp_left(d)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_filesystem_is_mapped(tmp_path: Path) -> None:
    """A real fault: the store's filesystem is remounted read-only."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    base = str(mnt / "s")
    try:
        # Filled by another process, so that no descriptor of ours keeps the
        # mount busy when it is remounted read-only.
        proc = multiprocessing.get_context("spawn").Process(target=_fill, args=(base,))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        d = FileDirDict(base_dir=base, durable=False)
        with pytest.raises(BackendError) as ro:
            d["small"] = b"z"
        assert isinstance(ro.value, OSError) and ro.value.errno == errno.EROFS
        assert ro.value.key == ("small",) and base in str(ro.value)
        assert d["small"] == b"x" * 100  # still readable, unchanged
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- a third-party ByteStore, written only against the documented contract ---------


class DictBytes(ByteStore):
    """About thirty lines: bytes in a dict, a lock, fresh etags."""

    name = "dict"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.items: dict[NonEmptySafeStrTuple, tuple[str, bytes, float]] = {}
        self.lock = threading.Lock()
        self.clock = itertools.count()

    def read(self, key: NonEmptySafeStrTuple, *, body: bool = True,
             if_none_match: str | None = None) -> Blob:
        item = self.items.get(key)
        if item is None:
            return Blob(ABSENT, None)
        return Blob(item[0], item[1] if body and item[0] != if_none_match else None)

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: Any) -> Any:
        with self.lock:
            current = self.items[key][0] if key in self.items else ABSENT
            if if_match is not None and current != if_match:
                raise PreconditionFailed
            etag = uuid.uuid4().hex
            self.items[key] = (etag, data, float(next(self.clock)))
            return etag

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: Any) -> bool:
        with self.lock:
            if if_match is not None and self.items.get(key, ("",))[0] != if_match:
                raise PreconditionFailed
            return self.items.pop(key, None) is not None

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        return self.items[key][2]

    def scan(self, *, with_timestamps: bool = False) -> Iterator[Any]:
        with self.lock:
            listed = list(self.items.items())
        return ((k, ts if with_timestamps else None) for k, (_, _, ts) in listed)


@pytest.mark.parametrize("fmt", ["pkl", "json"])
def test_a_third_party_byte_store_gets_the_whole_api(fmt: str) -> None:
    d = ByteStoreDict(byte_store=DictBytes(), serialization_format=fmt)
    d["a"] = 1
    d["b", "c"] = [2]
    assert d["a"] == 1 and ("b", "c") in d and len(d) == 2
    assert sorted(k.strings for k in d) == [("a",), ("b", "c")]
    e = d.etag("a")
    assert d.get_item_if("a", condition=ETAG_IS_THE_SAME, expected_etag=e).condition_was_satisfied
    r = d.set_item_if("a", value=5, condition=ETAG_IS_THE_SAME, expected_etag=e)
    assert r.condition_was_satisfied and d["a"] == 5 and r.resulting_etag != e
    assert not d.set_item_if("a", value=6, condition=ETAG_IS_THE_SAME,
                             expected_etag=e).condition_was_satisfied
    assert d.transform_item("a", transformer=lambda v: v + 1).new_value == 6
    assert d.setdefault("a", 0) == 6 and d.setdefault("z", 0) == 0
    assert d.pop("z") == 0 and d.newest_keys(max_n=1) == [SafeStrTuple("a")]
    assert d.discard_if("a", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
    key, value = d.popitem()
    assert key == ("b", "c") and value == [2] and not d
    with pytest.raises(NotImplementedError):
        d.get_subdict("p")  # it declares no subdicts
    assert d.byte_store.count() == 0


def test_a_third_party_byte_store_under_policies_and_threads() -> None:
    frozen = ByteStoreDict(byte_store=DictBytes(), append_only=True)
    frozen["k"] = 1
    with pytest.raises(MutationPolicyError):
        frozen["k"] = 2
    with pytest.raises(MutationPolicyError):
        del frozen["k"]
    once = WriteOnceDict(wrapped_dict=frozen)
    once["k"] = 1  # the first value stays, silently
    once["n"] = 3
    assert frozen["n"] == 3 and once["k"] == 1
    counter = ByteStoreDict(byte_store=DictBytes())
    counter["n"] = 0
    start = threading.Barrier(4)

    def bump() -> None:
        start.wait()
        for _ in range(200):
            counter.transform_item("n", transformer=lambda v: v + 1, n_retries=None)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter["n"] == 800  # compare-and-swap on the contract: no lost update
