"""Shared fixtures for the black-box test suite.

``STORE_FACTORIES`` is the registry of stores every conformance / state-machine
test runs against. Each factory takes a fresh, empty directory (a
``pathlib.Path``) it may use for its data and returns an empty store. Other
test modules (e.g. the S3 tests) may add entries to it at import time.

``read_ground_truth`` reads a FileDirDict directory *around* the store (it
never calls the code under test), following the on-disk layout of DESIGN.md.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import pathlib
import pickle
from collections.abc import Callable
from typing import Any

import jsonpickle
import pytest

from persidict import FileDirDict, LocalDict, PersiDict

StoreFactory = Callable[[pathlib.Path], PersiDict]


def _file(**kwargs: Any) -> StoreFactory:
    def factory(tmp: pathlib.Path) -> PersiDict:
        return FileDirDict(base_dir=str(tmp / "store"), **kwargs)

    return factory


def _memory(**kwargs: Any) -> StoreFactory:
    def factory(tmp: pathlib.Path) -> PersiDict:
        return LocalDict(**kwargs)

    return factory


STORE_FACTORIES: dict[str, StoreFactory] = {
    "file": _file(),
    "file_json": _file(serialization_format="json"),
    "file_nodigest": _file(digest_len=0),
    "file_nodurable": _file(durable=False),
    "memory": _memory(),
    "memory_json": _memory(serialization_format="json"),
}

pytest.register_assert_rewrite("_s3_plugin")
from _s3_plugin import S3_STORE_FACTORIES  # noqa: E402 - S3 stores, real server

STORE_FACTORIES.update(S3_STORE_FACTORIES)
pytest_plugins = ["_s3_plugin", "_listing_memo"]

FILE_STORE_NAMES = [n for n in STORE_FACTORIES if n.startswith("file")]

_counter = itertools.count()


def make_store(name: str, tmp: pathlib.Path, **overrides: Any) -> PersiDict:
    """Build a fresh store of the registered kind ``name`` in its own subdir.

    Overrides (e.g. ``append_only=True``) are applied by rebuilding the store
    from its ``get_params()``, which works for every registered store.
    """
    sub = tmp / f"s{next(_counter)}"
    sub.mkdir(parents=True, exist_ok=True)
    d = STORE_FACTORIES[name](sub)
    if overrides:
        params = dict(d.get_params())
        params.update(overrides)
        d = type(d)(**params)
    return d


@pytest.fixture(params=list(STORE_FACTORIES), ids=list(STORE_FACTORIES))
def store_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(store_name: str, tmp_path: pathlib.Path) -> PersiDict:
    """A fresh, empty store of every registered kind."""
    return make_store(store_name, tmp_path)


@pytest.fixture
def store_maker(store_name: str, tmp_path: pathlib.Path) -> Callable[..., PersiDict]:
    """Build further fresh stores of the same kind: ``store_maker(append_only=True)``."""

    def maker(**overrides: Any) -> PersiDict:
        return make_store(store_name, tmp_path, **overrides)

    return maker


@pytest.fixture(params=FILE_STORE_NAMES, ids=FILE_STORE_NAMES)
def file_store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> FileDirDict:
    """A fresh, empty FileDirDict of every registered file flavour."""
    return make_store(request.param, tmp_path)


# ---------------------------------------------------------------------------
# Independent reader of the FileDirDict on-disk layout
# ---------------------------------------------------------------------------


def digest(component: str, digest_len: int) -> str:
    """First ``digest_len`` chars of lower-cased base32 of MD5(component)."""
    raw = hashlib.md5(component.encode("utf-8")).digest()
    return base64.b32encode(raw).decode("ascii").lower()[:digest_len]


def encode_component(component: str, digest_len: int) -> str:
    if digest_len == 0:
        return component
    return f"{component}_{digest(component, digest_len)}"


def decode_component(name: str, digest_len: int) -> str | None:
    """Return the key component of an on-disk name, None if it does not match."""
    if digest_len == 0:
        return name
    comp, sep, suffix = name.rpartition("_")
    if not sep or not comp or suffix != digest(comp, digest_len):
        return None
    return comp


def store_layout(d: PersiDict) -> tuple[pathlib.Path, str, int]:
    params = d.get_params()
    return (
        pathlib.Path(params["base_dir"]),
        params.get("serialization_format", "pkl"),
        params.get("digest_len", 4),
    )


def path_for_key(d: PersiDict, key: tuple[str, ...] | str) -> pathlib.Path:
    """Where a key of FileDirDict ``d`` lives on disk, per the documented layout."""
    if isinstance(key, str):
        key = (key,)
    base, fmt, dlen = store_layout(d)
    parts = [encode_component(c, dlen) for c in key]
    parts[-1] += f".{fmt}"
    return base.joinpath(*parts)


def decode_file(path: pathlib.Path, fmt: str) -> Any:
    data = path.read_bytes()
    if fmt == "pkl":
        return pickle.loads(data)
    if fmt == "json":
        return jsonpickle.decode(data.decode("utf-8"))
    return data.decode("utf-8")


def read_ground_truth(d: PersiDict) -> dict[tuple[str, ...], Any]:
    """All key -> value pairs of FileDirDict ``d``, read straight from disk."""
    base, fmt, dlen = store_layout(d)
    suffix = f".{fmt}"
    result: dict[tuple[str, ...], Any] = {}
    if not base.exists():
        return result
    for dirpath, _dirnames, filenames in os.walk(base):
        rel = pathlib.Path(dirpath).relative_to(base).parts
        dir_comps = [decode_component(p, dlen) for p in rel]
        if any(c is None for c in dir_comps):
            continue
        for fname in filenames:
            if not fname.endswith(suffix):
                continue
            comp = decode_component(fname[: -len(suffix)], dlen)
            if comp is None:
                continue
            key = (*dir_comps, comp)
            result[key] = decode_file(pathlib.Path(dirpath) / fname, fmt)  # type: ignore[arg-type]
    return result


def is_file_store(d: PersiDict) -> bool:
    return isinstance(d, FileDirDict)


def snapshot(d: PersiDict) -> dict[tuple[str, ...], Any]:
    """Contents of ``d`` as a plain dict (read through the store)."""
    return {tuple(k): v for k, v in d.items()}


def assert_state(d: PersiDict, expected: dict[tuple[str, ...], Any]) -> None:
    """The store holds exactly ``expected``: through the API and, for files, on disk."""
    assert snapshot(d) == expected
    assert len(d) == len(expected)
    if is_file_store(d):
        assert read_ground_truth(d) == expected


def all_files(root: pathlib.Path) -> set[pathlib.Path]:
    """Every file and directory under ``root`` (for 'nothing created outside' checks)."""
    return {p for p in root.rglob("*")}
