"""On-disk interchangeability of FileDirDict with the documented layout.

DESIGN.md ("On-disk layout"): one file per key; path components from the key,
each suffixed by ``_`` + the first ``digest_len`` characters of the lower-cased
base32 of the MD5 of the component (no suffix when ``digest_len=0``); the file
is named ``<last component>.<serialization_format>``; json values are written
with jsonpickle, pkl values with pickle, other formats as UTF-8 text.

The reader and writer below implement only that rule. They deliberately do
not use conftest's helpers or anything from persidict, so they are a second,
independent implementation of the layout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import pickle
import string
from typing import Any

import jsonpickle
import pytest

from persidict import FileDirDict

Key = tuple[str, ...]
SAFE = set(string.ascii_letters + string.digits + "()_-~.=")


# ---------------------------------------------------------------------------
# The independent implementation of the layout
# ---------------------------------------------------------------------------


def _digest(component: str, digest_len: int) -> str:
    md5 = hashlib.md5(component.encode("utf-8")).digest()
    return base64.b32encode(md5).decode("ascii").lower()[:digest_len]


def _on_disk(component: str, digest_len: int) -> str:
    return component if digest_len == 0 else f"{component}_{_digest(component, digest_len)}"


def _from_disk(name: str, digest_len: int) -> str | None:
    """The key component a file/dir name stands for, or None if it is not one."""
    if digest_len == 0:
        component = name
    else:
        component, sep, suffix = name.rpartition("_")
        if not sep or suffix != _digest(component, digest_len):
            return None
    if not component or not set(component) <= SAFE or component in (".", ".."):
        return None
    return component


def layout_path(base: pathlib.Path, key: Key, fmt: str, digest_len: int) -> pathlib.Path:
    parts = [_on_disk(c, digest_len) for c in key]
    parts[-1] += "." + fmt
    return base.joinpath(*parts)


def encode(value: Any, fmt: str) -> bytes:
    if fmt == "pkl":
        return pickle.dumps(value)
    if fmt == "json":
        return jsonpickle.encode(value, indent=4).encode("utf-8")
    return value.encode("utf-8")


def decode(data: bytes, fmt: str) -> Any:
    if fmt == "pkl":
        return pickle.loads(data)
    if fmt == "json":
        return jsonpickle.decode(data.decode("utf-8"))
    return data.decode("utf-8")


def independent_write(
    base: pathlib.Path, key: Key, value: Any, fmt: str, digest_len: int
) -> pathlib.Path:
    path = layout_path(base, key, fmt, digest_len)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(value, fmt))
    return path


def independent_read(base: pathlib.Path, fmt: str, digest_len: int) -> dict[Key, Any]:
    """Every key -> value under ``base`` by the layout rule; anything else is ignored."""
    suffix = "." + fmt
    found: dict[Key, Any] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        rel = pathlib.Path(dirpath).relative_to(base).parts
        prefix = [_from_disk(p, digest_len) for p in rel]
        if any(c is None for c in prefix):
            dirnames[:] = []
            continue
        for fname in filenames:
            if not fname.endswith(suffix):
                continue
            component = _from_disk(fname[: -len(suffix)], digest_len)
            if component is None:
                continue
            key = (*prefix, component)
            found[key] = decode((pathlib.Path(dirpath) / fname).read_bytes(), fmt)  # type: ignore[arg-type]
    return found


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


class Point:
    """A user class: jsonpickle records it by its importable name."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


KEYS: list[Key] = [
    ("plain",),
    ("two", "levels"),
    ("a", "b", "c", "deep"),
    ("dots.and-dashes_under~(paren)=eq",),
    ("two", "siblings"),
    ("123",),
]
JSON_VALUES: list[Any] = [
    1,
    "héllo wörld, 日本語, emoji 🎉",
    {"nested": [1, 2.5, None, True], "text": "ü"},
    [1, "two", [3]],
    Point(1.5, -2),
    None,
]
TEXT_VALUES: list[str] = [
    "plain",
    "héllo wörld",
    "日本語のテキスト\nsecond line",
    "emoji 🎉 and ß",
    "",
    "a_b",
]


def json_data() -> dict[Key, Any]:
    return dict(zip(KEYS, JSON_VALUES, strict=True))


DIGESTS = [0, 4, 8]


def _store(base: pathlib.Path, fmt: str, digest_len: int | None) -> FileDirDict:
    # A text format must name str as its base class (neither pkl nor json).
    extra: dict[str, Any] = {} if fmt in ("pkl", "json") else {"base_class_for_values": str}
    if digest_len is None:  # the default: 4
        return FileDirDict(base_dir=str(base), serialization_format=fmt, **extra)
    return FileDirDict(base_dir=str(base), serialization_format=fmt, digest_len=digest_len,
                       **extra)


# ---------------------------------------------------------------------------
# Ours -> independent reader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("digest_len", DIGESTS)
def test_json_written_by_us_is_read_by_the_layout_rule(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    d = _store(tmp_path, "json", digest_len)
    data = json_data()
    for k, v in data.items():
        d[k] = v
    assert independent_read(tmp_path, "json", digest_len) == data
    for k, v in data.items():
        path = layout_path(tmp_path, k, "json", digest_len)
        assert path.is_file(), path
        raw = path.read_bytes()
        json.loads(raw.decode("utf-8"))  # a plain JSON document, UTF-8
        assert jsonpickle.decode(raw.decode("utf-8")) == v


def test_default_digest_len_is_4(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path, "json", None)
    d["k", "v"] = 1
    assert layout_path(tmp_path, ("k", "v"), "json", 4).is_file()
    assert independent_read(tmp_path, "json", 4) == {("k", "v"): 1}


@pytest.mark.parametrize("digest_len", DIGESTS)
def test_text_written_by_us_is_utf8_by_the_layout_rule(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    d = _store(tmp_path, "txt", digest_len)
    data = dict(zip(KEYS, TEXT_VALUES, strict=True))
    for k, v in data.items():
        d[k] = v
    for k, v in data.items():
        assert layout_path(tmp_path, k, "txt", digest_len).read_bytes() == v.encode("utf-8")
    assert independent_read(tmp_path, "txt", digest_len) == data


@pytest.mark.parametrize("digest_len", [0, 4])
def test_pkl_written_by_us_is_standard_pickle(tmp_path: pathlib.Path, digest_len: int) -> None:
    d = _store(tmp_path, "pkl", digest_len)
    data = {**json_data(), ("tuple",): (1, 2), ("set",): {1, 2}, ("bytes",): b"\x00\xff"}
    for k, v in data.items():
        d[k] = v
    assert independent_read(tmp_path, "pkl", digest_len) == data


# ---------------------------------------------------------------------------
# Independent writer -> ours
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("digest_len", DIGESTS)
def test_json_written_by_the_layout_rule_is_read_by_us(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    data = json_data()
    for k, v in data.items():
        independent_write(tmp_path, k, v, "json", digest_len)
    d = _store(tmp_path, "json", digest_len)
    assert len(d) == len(data)
    assert {tuple(k) for k in d} == set(data)
    assert {tuple(k): v for k, v in d.items()} == data
    for k, v in data.items():
        assert k in d
        assert d[k] == v
    # and we can keep working on it: overwrite one, read back by the rule
    d["plain"] = "changed ✓"
    assert independent_read(tmp_path, "json", digest_len) == {**data, ("plain",): "changed ✓"}


@pytest.mark.parametrize("digest_len", DIGESTS)
def test_text_written_by_the_layout_rule_is_read_by_us(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    data = dict(zip(KEYS, TEXT_VALUES, strict=True))
    for k, v in data.items():
        independent_write(tmp_path, k, v, "txt", digest_len)
    d = _store(tmp_path, "txt", digest_len)
    assert {tuple(k): v for k, v in d.items()} == data


@pytest.mark.parametrize("digest_len", [0, 8])
def test_pkl_written_by_the_layout_rule_is_read_by_us(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    data = {("a",): (1, 2), ("b", "c"): {"set": {3}}, ("p",): Point(0, 1)}
    for k, v in data.items():
        independent_write(tmp_path, k, v, "pkl", digest_len)
    d = _store(tmp_path, "pkl", digest_len)
    assert {tuple(k): v for k, v in d.items()} == data


def test_a_store_does_not_read_another_digest_len(tmp_path: pathlib.Path) -> None:
    """The suffix is part of the name: a digest_len=4 directory is not a digest_len=8 one."""
    independent_write(tmp_path, ("k",), 1, "json", 4)
    assert len(_store(tmp_path, "json", 8)) == 0
    assert dict(_store(tmp_path, "json", 4).items()) == {("k",): 1}


# ---------------------------------------------------------------------------
# Case, junk
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("digest_len", [4, 8])
def test_keys_differing_by_case_get_names_differing_case_insensitively(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    d = _store(tmp_path, "json", digest_len)
    variants = ["key", "Key", "KEY", "kEy"]
    for i, v in enumerate(variants):
        d[v] = i
        d[v, "leaf"] = -i
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    dirs = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("@")]
    assert len({p.name.lower() for p in files}) == len(variants)
    assert len({p.name.lower() for p in dirs}) == len(variants)
    expected = {(v,): i for i, v in enumerate(variants)}
    expected.update({(v, "leaf"): -i for i, v in enumerate(variants)})
    assert independent_read(tmp_path, "json", digest_len) == expected
    assert {tuple(k): v for k, v in d.items()} == expected


def _plant_junk(base: pathlib.Path, digest_len: int) -> None:
    """Files and directories a user or another tool may leave in base_dir."""
    good = _on_disk("good", digest_len)
    (base / "notes.txt").write_text("not a json value")
    (base / "no suffix.json").write_text("1")  # unsafe character
    (base / ".json").write_text("1")
    (base / f"{good}.pkl").write_bytes(pickle.dumps("another format"))
    (base / f"{good}.json.bak").write_text("1")
    (base / "empty_dir").mkdir()
    (base / "bad dir").mkdir()
    (base / "bad dir" / f"{good}.json").write_text("1")
    if digest_len:
        (base / "good_zzzz.json").write_text("1")  # wrong digest
        (base / "good.json").write_text("1")  # no digest
        (base / "nodigest").mkdir()
        (base / "nodigest" / f"{good}.json").write_text("1")


@pytest.mark.parametrize("digest_len", [0, 4])
def test_junk_in_base_dir_is_ignored(tmp_path: pathlib.Path, digest_len: int) -> None:
    data = {("good",): "value", ("dir", "good"): [1]}
    for k, v in data.items():
        independent_write(tmp_path, k, v, "json", digest_len)
    _plant_junk(tmp_path, digest_len)
    expected = independent_read(tmp_path, "json", digest_len)
    assert expected == data  # the reference reader also ignores the junk
    d = _store(tmp_path, "json", digest_len)
    assert len(d) == 2
    assert {tuple(k) for k in d} == set(data)
    assert {tuple(k): v for k, v in d.items()} == data
    assert d.random_key() in {*(k for k in data)}
    d.clear()  # clears the keys, leaves the junk alone
    assert len(d) == 0
    assert (tmp_path / "notes.txt").read_text() == "not a json value"
    assert (tmp_path / "bad dir" / f"{_on_disk('good', digest_len)}.json").is_file()
