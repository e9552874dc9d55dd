"""FileDirDict's write paths: duties found unchecked by mutation testing (round 14).

Each test uses real processes or real faults: another process's write
between two of ours, a write past RLIMIT_FSIZE, a FIFO planted at a key.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from persidict import ETAG_IS_THE_SAME, FileDirDict, NonEmptySafeStrTuple
from persidict.backends.key_grants import held
from persidict.concurrency.atomic import TEMP_PREFIX


def _other_process_sets(base: str, key: str, value: int) -> None:
    code = ("import sys; from persidict import FileDirDict; "
            "FileDirDict(base_dir=sys.argv[1], durable=False)[sys.argv[2]] = int(sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, base, key, str(value)], check=True, timeout=60)


def _file_of(d: FileDirDict, key: str) -> pathlib.Path:
    return pathlib.Path(d.byte_store.location(NonEmptySafeStrTuple((key,))))


def test_an_etag_known_from_a_transform_is_not_trusted_after_it(tmp_path: pathlib.Path) -> None:
    """After transform_item returns, its lock and what it knew are gone.

    Another process then writes the key: a compare-and-swap on the etag the
    transform returned must lose, not overwrite that write.
    """
    base = str(tmp_path / "s")
    d: FileDirDict[int] = FileDirDict(base_dir=base, durable=False)
    d["k"] = 1
    etag = d.transform_item("k", transformer=lambda v: v + 1).resulting_etag
    assert not held()  # this thread holds no grant outside any lock(key)
    _other_process_sets(base, "k", 100)
    result = d.set_item_if("k", value=5, condition=ETAG_IS_THE_SAME, expected_etag=etag)
    assert not result.condition_was_satisfied
    assert d["k"] == 100


def test_a_deletion_known_from_a_transform_is_not_trusted_after_it(
    tmp_path: pathlib.Path,
) -> None:
    """As above for a transform that deleted: an insert-if-absent must see the other's write."""
    from persidict import DELETE_CURRENT, ITEM_NOT_AVAILABLE

    base = str(tmp_path / "s")
    d: FileDirDict[int] = FileDirDict(base_dir=base, durable=False)
    d["k"] = 1
    d.transform_item("k", transformer=lambda v: DELETE_CURRENT)
    _other_process_sets(base, "k", 100)
    result = d.set_item_if("k", value=5, condition=ETAG_IS_THE_SAME,
                           expected_etag=ITEM_NOT_AVAILABLE)
    assert not result.condition_was_satisfied
    assert d["k"] == 100


_FSIZE_CHILD = r"""
import json, resource, signal, sys
from persidict import FileDirDict
base, limit = sys.argv[1], int(sys.argv[2])
d = FileDirDict(base_dir=base, durable=True)
d["k"] = b"old"
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    d["k"] = b"n" * (3 * limit)
    raised = None
except OSError as exc:
    raised = [type(exc).__name__, exc.errno]
print(json.dumps({"raised": raised, "value": d["k"].decode()}))
"""


def test_a_value_past_the_file_size_limit_fails_whole(tmp_path: pathlib.Path) -> None:
    """A real short write (RLIMIT_FSIZE) fails the set: the old value stays, untorn."""
    import errno

    base = tmp_path / "s"
    done = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(base), "100000"],
                          capture_output=True, text=True, timeout=60, check=True)
    out = json.loads(done.stdout)
    assert out["raised"] is not None and out["raised"][1] == errno.EFBIG
    assert out["value"] == "old"
    leftovers = [f for _, _, files in os.walk(base) for f in files if f.startswith(".")]
    assert not [f for f in leftovers if "tmp" in f.lower()]


def test_a_fifo_with_data_planted_at_a_key_is_absent(tmp_path: pathlib.Path) -> None:
    """A FIFO whose writer left bytes in it is no value: every read calls it absent."""
    d: FileDirDict[str] = FileDirDict(base_dir=str(tmp_path / "s"), serialization_format="txt",
                                         base_class_for_values=str)
    d["k"] = "v"
    path = _file_of(d, "k")
    path.unlink()
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(writer, b"planted")
        with pytest.raises(KeyError):
            d["k"]
        assert d.get("k", "default") == "default"
    finally:
        os.close(writer)


def _key_dirs(base: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")
                  if p.is_dir() and not p.relative_to(base).parts[0].startswith("@"))


@pytest.mark.parametrize("how", ["del", "discard", "pop", "transform"])
def test_deleting_a_deep_key_prunes_every_emptied_directory(
    tmp_path: pathlib.Path, how: str
) -> None:
    """Empty directories do not pile up: each delete removes those it emptied, to base."""
    from persidict import DELETE_CURRENT

    base = tmp_path / "s"
    d: FileDirDict[int] = FileDirDict(base_dir=str(base), durable=False)
    d[("a", "b", "c")] = 1
    d[("a", "other")] = 2
    d[("x", "y", "z")] = 3
    for key in [("a", "b", "c"), ("x", "y", "z")]:
        if how == "del":
            del d[key]
        elif how == "discard":
            assert d.discard(key)
        elif how == "pop":
            assert d.pop(key) in (1, 3)
        else:
            d.transform_item(key, transformer=lambda v: DELETE_CURRENT)
    dirs = _key_dirs(base)
    assert len(dirs) == 1 and dirs[0].startswith("a")  # ("a", "other") keeps its directory
    assert list(d.keys()) == [NonEmptySafeStrTuple(("a", "other"))]


def test_values_differing_only_at_the_end_get_different_etags(tmp_path: pathlib.Path) -> None:
    """The etag hashes every byte: a stale etag loses to a change in a value's last byte."""
    base = str(tmp_path / "s")
    d: FileDirDict[bytes] = FileDirDict(base_dir=base, durable=False)
    first = b"x" * 200_000
    d["k"] = first
    stale = d.etag("k")
    code = ("import sys; from persidict import FileDirDict; "
            "FileDirDict(base_dir=sys.argv[1], durable=False)['k'] = b'x' * 199_999 + b'y'")
    subprocess.run([sys.executable, "-c", code, base], check=True, timeout=60)
    assert d.etag("k") != stale
    result = d.set_item_if("k", value=b"mine", condition=ETAG_IS_THE_SAME, expected_etag=stale)
    assert not result.condition_was_satisfied
    assert d["k"] == b"x" * 199_999 + b"y"


def test_a_subdict_delete_prunes_up_to_its_base_not_the_base(tmp_path: pathlib.Path) -> None:
    """Pruning stops below the store's own base_dir, a subdict's included."""
    d: FileDirDict[int] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    sub = d.get_subdict("a")
    sub[("b", "k")] = 1
    del sub[("b", "k")]
    assert os.path.isdir(sub.base_dir)
    assert os.listdir(sub.base_dir) == []
    assert len(sub) == 0


def test_a_write_across_mounts_leaves_no_temp_in_the_journal(tmp_path: pathlib.Path) -> None:
    """Real EXDEV: a key directory is a tmpfs mounted inside the store (root only).

    The journal's temp file cannot be renamed there; the write retries with a
    temp beside the key, and the first temp is removed, not left to recovery.
    """
    base = tmp_path / "s"
    d: FileDirDict[int] = FileDirDict(base_dir=str(base), durable=True)
    d[("a", "k")] = 0
    path = pathlib.Path(d.byte_store.location(NonEmptySafeStrTuple(("a", "k"))))
    path.unlink()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path.parent)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        d[("a", "k")] = 1
        assert d[("a", "k")] == 1
        assert os.listdir(path.parent) == [path.name]
        temps = [p for p in base.rglob(f"{TEMP_PREFIX}*") if p.is_file()]
        assert temps == []
    finally:
        subprocess.run(["umount", "-l", str(path.parent)], capture_output=True, check=False)


@pytest.mark.timeout(60)
def test_a_transformer_that_forks_loses_no_update(tmp_path: pathlib.Path) -> None:
    """A child forked inside the transformer holds no lock of its own: it retries.

    Parent and child both return from the same transform_item; the child's
    commit must wait for the parent's and apply to its result (2, not 1).
    """
    d: FileDirDict[Any] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    d["k"] = 0
    parent = os.getpid()
    forked: list[int] = []

    def fork_then_increment(v: object) -> object:
        if not forked:
            forked.append(os.fork())
        assert isinstance(v, int)
        return v + 1

    try:
        d.transform_item("k", transformer=fork_then_increment)
    except BaseException:
        if os.getpid() != parent:
            os._exit(1)
        raise
    if os.getpid() != parent:
        os._exit(0)
    _, status = os.waitpid(forked[0], 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert d["k"] == 2


def test_a_file_planted_where_a_key_directory_goes_holds_no_key(
    tmp_path: pathlib.Path,
) -> None:
    """A regular file at a key's directory path (ENOTDIR below it): that key is absent."""
    d: FileDirDict[int] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    d[("a", "k")] = 1
    path = pathlib.Path(d.byte_store.location(NonEmptySafeStrTuple(("a", "k"))))
    path.unlink()
    path.parent.rmdir()
    path.parent.write_bytes(b"planted")
    assert ("a", "k") not in d
    assert d.get(("a", "k"), "default") == "default"
    assert d.discard(("a", "k")) is False
    with pytest.raises(KeyError):
        del d[("a", "k")]
    assert d.pop(("a", "k"), "default") == "default"
    assert path.parent.read_bytes() == b"planted"


def test_insert_if_absent_under_the_key_lock_uses_what_the_lock_knows(
    tmp_path: pathlib.Path,
) -> None:
    """Under lock(key) a write records the new etag: an insert-if-absent then sees the key."""
    from persidict import ITEM_NOT_AVAILABLE

    d: FileDirDict[int] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    key = NonEmptySafeStrTuple(("k",))
    with d.byte_store.lock(key):
        d["k"] = 1
        refused = d.set_item_if("k", value=2, condition=ETAG_IS_THE_SAME,
                                expected_etag=ITEM_NOT_AVAILABLE)
        assert not refused.condition_was_satisfied
        assert d["k"] == 1
        del d["k"]
        inserted = d.set_item_if("k", value=3, condition=ETAG_IS_THE_SAME,
                                 expected_etag=ITEM_NOT_AVAILABLE)
        assert inserted.condition_was_satisfied
    assert d["k"] == 3


def test_a_key_file_replaced_from_outside_mid_transform_is_deleted_all_the_same(
    tmp_path: pathlib.Path,
) -> None:
    """While a transformer runs, an outside actor (bypassing the locks) removes the key's
    file and puts a regular file where its directory was: DELETE_CURRENT still succeeds."""
    from persidict import DELETE_CURRENT, ITEM_NOT_AVAILABLE

    d: FileDirDict[Any] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
    d[("a", "k")] = 1
    path = pathlib.Path(d.byte_store.location(NonEmptySafeStrTuple(("a", "k"))))

    def outside_then_delete(v: object) -> object:
        path.unlink()
        path.parent.rmdir()
        path.parent.write_bytes(b"planted")
        return DELETE_CURRENT

    result = d.transform_item(("a", "k"), transformer=outside_then_delete)
    assert result.new_value is ITEM_NOT_AVAILABLE
    assert ("a", "k") not in d
    assert path.parent.read_bytes() == b"planted"
