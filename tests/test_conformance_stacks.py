"""The stores and wrapper stacks the conformance class and the state machine run on.

``KINDS`` names each one: every registered store of ``conftest`` (FileDirDict
durable and not, LocalDict, BasicS3Dict and S3Dict on the test server) and
the wrapper stacks (MutableDictCached, AppendOnlyDictCached, S3Dict
append-only, WriteOnceDict, an OverlappingMultiDict member). ``read_around``
is their ground truth: the files or bucket objects of the store at the
bottom of the stack, read without persidict. This module holds no tests.
"""

from __future__ import annotations

import pathlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpickle

from conftest import STORE_FACTORIES, make_store, read_ground_truth
from persidict import (
    AppendOnlyDictCached,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    OverlappingMultiDict,
    PersiDict,
    WriteOnceDict,
)
from persidict.backends.s3 import BasicS3Dict
from persidict.backends.s3_cached import S3Dict_FileDirCached
from s3_server import get_server

Key = tuple[str, ...]
Factory = Callable[..., PersiDict]


@dataclass(frozen=True)
class Kind:
    """How to build one kind of store, and what its conformance run expects."""

    make: Factory  # make(tmp, **params) -> a fresh, empty store
    pickle_shares_data: bool = True
    transform_item_refused: bool = False  # AppendOnlyDictCached refuses every transform
    remote: bool = False  # needs the S3 test server
    # Conformance tests this kind fails on today's code: test name -> reason.
    # They run as xfail(strict=True), so a fix shows up as XPASS and fails.
    known_failures: tuple[tuple[str, str], ...] = ()


def _registered(name: str) -> Factory:
    def make(tmp: pathlib.Path, **params: Any) -> PersiDict:
        return make_store(name, tmp, **params)

    return make


def _files(tmp: pathlib.Path, name: str, **params: Any) -> FileDirDict:
    return FileDirDict(base_dir=str(tmp / name), durable=False, **params)


def _mdc_file_mem(tmp: pathlib.Path, **params: Any) -> PersiDict:
    base = params.get("base_class_for_values")
    return MutableDictCached(main_dict=_files(tmp, "main", **params),
                             data_cache=LocalDict(base_class_for_values=base),
                             etag_cache=LocalDict())


def _mdc_mem_file(tmp: pathlib.Path, **params: Any) -> PersiDict:
    base = params.get("base_class_for_values")
    return MutableDictCached(main_dict=LocalDict(**params),
                             data_cache=_files(tmp, "data", base_class_for_values=base),
                             etag_cache=_files(tmp, "etags"))


def _aoc(main: str, cache: str) -> Factory:
    def make(tmp: pathlib.Path, **params: Any) -> PersiDict:
        params["append_only"] = True
        base = params.get("base_class_for_values")
        data: PersiDict = (_files(tmp, "data", append_only=True, base_class_for_values=base)
                           if cache == "file" else
                           LocalDict(append_only=True, base_class_for_values=base))
        root = _files(tmp, "main", **params) if main == "file" else LocalDict(**params)
        return AppendOnlyDictCached(main_dict=root, data_cache=data)

    return make


def _write_once(inner: Factory) -> Factory:
    def make(tmp: pathlib.Path, **params: Any) -> PersiDict:
        params["append_only"] = True
        return WriteOnceDict(wrapped_dict=inner(tmp, **params))

    return make


def _s3_append_only(tmp: pathlib.Path, **params: Any) -> PersiDict:
    return make_store("s3_cached", tmp, **{**params, "append_only": True})


def _multi_member(tmp: pathlib.Path, **params: Any) -> PersiDict:
    multi = OverlappingMultiDict(dict_type=FileDirDict,
                                 shared_subdicts_params={"base_dir": str(tmp / "multi"),
                                                         **params},
                                 json={}, pkl={})
    return multi.json


def _memory_inner(tmp: pathlib.Path, **params: Any) -> PersiDict:
    return LocalDict(**params)


KINDS: dict[str, Kind] = {
    **{name: Kind(_registered(name), pickle_shares_data=not name.startswith("memory"),
                  remote=name.startswith("s3"))
       for name in STORE_FACTORIES},
    "s3_cached_append": Kind(_s3_append_only, transform_item_refused=True, remote=True),
    "mdc_file_mem": Kind(_mdc_file_mem),
    "mdc_mem_file": Kind(_mdc_mem_file, pickle_shares_data=False),
    "aoc_file_mem": Kind(_aoc("file", "mem"), transform_item_refused=True),
    "aoc_file_file": Kind(_aoc("file", "file"), transform_item_refused=True),
    "aoc_mem_file": Kind(_aoc("mem", "file"), pickle_shares_data=False,
                         transform_item_refused=True),
    "wo_file": Kind(_write_once(lambda tmp, **p: _files(tmp, "main", **p))),
    "wo_memory": Kind(_write_once(_memory_inner), pickle_shares_data=False),
    "wo_aoc": Kind(_write_once(_aoc("file", "mem"))),
    "multi_json": Kind(_multi_member),
}


# ---------------------------------------------------------------------------
# Ground truth, read around every layer
# ---------------------------------------------------------------------------


def root_of(store: PersiDict) -> PersiDict:
    """The authoritative store at the bottom of a wrapper stack (through public API)."""
    while True:
        if isinstance(store, S3Dict_FileDirCached):
            store = store.main_dict
            continue
        params = store.get_params()
        inner = params.get("main_dict", params.get("wrapped_dict"))
        if not isinstance(inner, PersiDict):
            return store
        store = inner


def read_bucket(store: BasicS3Dict) -> dict[Key, Any]:
    """Every key of ``store`` read from the server with a client of our own."""
    params = store.get_params()
    prefix, fmt = params["root_prefix"], params["serialization_format"]
    suffix = "." + fmt
    client = get_server().client()
    result: dict[Key, Any] = {}
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=params["bucket_name"], Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", ()):
            name = obj["Key"]
            if not name.endswith(suffix):
                continue
            body = client.get_object(Bucket=params["bucket_name"], Key=name)["Body"].read()
            key = tuple(name[len(prefix):-len(suffix)].split("/"))
            result[key] = (pickle.loads(body) if fmt == "pkl"
                           else jsonpickle.decode(body.decode("utf-8")))
    return result


def read_around(store: PersiDict) -> dict[Key, Any] | None:
    """What the stack's bottom store really holds, or None for RAM (nothing to read)."""
    root = root_of(store)
    if isinstance(root, FileDirDict):
        return read_ground_truth(root)
    if isinstance(root, BasicS3Dict):
        return read_bucket(root)
    return None
