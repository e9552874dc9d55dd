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

import pytest

from persidict import ETAG_IS_THE_SAME, FileDirDict, NonEmptySafeStrTuple
from persidict.backends.key_grants import held


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
