"""A cached call that raises leaves main unchanged; refusals come in the reference's order.

Only the public API is used here (and main read through a handle of its
own), so these tests run unchanged against any version of the wrappers.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from _s3_plugin import BUCKET, fresh_prefix
from persidict import (
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    AppendOnlyDictCached,
    BasicS3Dict,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    MutationPolicyError,
    PersiDict,
    S3Dict_FileDirCached,
)
from s3_server import REGION, S3Server, get_server

LONG = "a" * 250  # fits a file name without a digest suffix, not with one


def _file_main(tmp: pathlib.Path, append_only: bool) -> PersiDict:
    return FileDirDict(base_dir=str(tmp / "main"), digest_len=0, append_only=append_only)


def _s3_main(tmp: pathlib.Path, append_only: bool) -> PersiDict:
    return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                       endpoint_url=get_server().endpoint_url, append_only=append_only)


MAINS: dict[str, Callable[[pathlib.Path, bool], PersiDict]] = {"file": _file_main, "s3": _s3_main}


def _cache(tmp: pathlib.Path, name: str, append_only: bool) -> FileDirDict:
    return FileDirDict(base_dir=str(tmp / name), append_only=append_only)  # digest suffix: 4


def _wrapper(kind: str, main: PersiDict, tmp: pathlib.Path) -> PersiDict:
    if kind == "append_only":
        return AppendOnlyDictCached(main_dict=main, data_cache=_cache(tmp, "data", True))
    return MutableDictCached(main_dict=main, data_cache=_cache(tmp, "data", False),
                             etag_cache=_cache(tmp, "etags", False))  # fmt: skip


WRITES: dict[str, Callable[[PersiDict], Any]] = {
    "setitem": lambda d: d.__setitem__(LONG, 1),
    "set_item_if": lambda d: d.set_item_if(LONG, value=1, condition=ANY_ETAG,
                                           expected_etag=ITEM_NOT_AVAILABLE),
    "set_item_if_same": lambda d: d.set_item_if(LONG, value=1, condition=ETAG_IS_THE_SAME,
                                                expected_etag=ITEM_NOT_AVAILABLE),
    "setdefault_if": lambda d: d.setdefault_if(LONG, default_value=1, condition=ANY_ETAG,
                                               expected_etag=ITEM_NOT_AVAILABLE),
    "setdefault": lambda d: d.setdefault(LONG, 1),
    "update": lambda d: d.update({LONG: 1}),
}
MUTABLE_WRITES: dict[str, Callable[[PersiDict], Any]] = {
    **WRITES,
    "transform_item": lambda d: d.transform_item(LONG, transformer=lambda v: 1),
}


def _refused_before_main(d: PersiDict, main: PersiDict, write: Callable[[PersiDict], Any]) -> None:
    with pytest.raises(ValueError, match="too long"):
        write(d)
    assert LONG not in main  # the call raised: main is as it was
    assert list(d.keys()) == [] and len(d) == 0
    with pytest.raises(ValueError, match="too long"):
        d[LONG]  # the key is one this store cannot hold, as FileDirDict says of it


@pytest.mark.parametrize("main_kind", list(MAINS))
@pytest.mark.parametrize("write", list(WRITES))
def test_append_only_key_the_cache_cannot_hold_is_refused_before_main(
    tmp_path: pathlib.Path, main_kind: str, write: str
) -> None:
    main = MAINS[main_kind](tmp_path, True)
    _refused_before_main(_wrapper("append_only", main, tmp_path), main, WRITES[write])


@pytest.mark.parametrize("main_kind", list(MAINS))
@pytest.mark.parametrize("write", list(MUTABLE_WRITES))
def test_mutable_key_the_cache_cannot_hold_is_refused_before_main(
    tmp_path: pathlib.Path, main_kind: str, write: str
) -> None:
    main = MAINS[main_kind](tmp_path, False)
    _refused_before_main(_wrapper("mutable", main, tmp_path), main, MUTABLE_WRITES[write])


@pytest.mark.parametrize("append_only", [False, True], ids=["mutable", "append_only"])
def test_s3dict_key_the_cache_cannot_hold_is_refused_before_s3(
    s3_server: S3Server, tmp_path: pathlib.Path, append_only: bool
) -> None:
    d = S3Dict_FileDirCached(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                             base_dir=str(tmp_path), endpoint_url=s3_server.endpoint_url,
                             append_only=append_only)  # fmt: skip
    for write in WRITES.values():
        _refused_before_main(d, d.main_dict, write)


_BAD_N_RETRIES: list[tuple[Any, type[Exception]]] = [
    ("3", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError),
]


@pytest.mark.parametrize(("n_retries", "error"), _BAD_N_RETRIES, ids=repr)
def test_append_only_transform_item_checks_n_retries_before_refusing(
    n_retries: Any, error: type[Exception]
) -> None:
    """The reference checks n_retries first: a bad one is a plain TypeError/ValueError."""
    main = LocalDict(append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=LocalDict(append_only=True))
    calls: list[Any] = []
    with pytest.raises(error) as info:
        d.transform_item("k", transformer=calls.append, n_retries=n_retries)
    assert not isinstance(info.value, MutationPolicyError)
    assert calls == [] and "k" not in main


@pytest.mark.parametrize("n_retries", [None, 0, 6])
def test_append_only_transform_item_with_good_n_retries_is_refused(n_retries: Any) -> None:
    main = LocalDict(append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=LocalDict(append_only=True))
    with pytest.raises(MutationPolicyError):
        d.transform_item("k", transformer=lambda v: 1, n_retries=n_retries)
    assert "k" not in main


@pytest.mark.parametrize(
    ("condition", "expected"),
    [(ANY_ETAG, ITEM_NOT_AVAILABLE), (ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE),
     (ETAG_HAS_CHANGED, "old")],
    ids=["any", "same-absent", "changed-old"],
)
def test_delete_current_of_a_key_missing_in_main_purges_the_cache(
    tmp_path: pathlib.Path, condition: Any, expected: Any
) -> None:
    """Another handle deleted the key; a DELETE_CURRENT through the wrapper finds
    it missing in main, and the cache must not go on answering for it."""
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    data, etags = LocalDict(), LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=data, etag_cache=etags)
    d["k"] = 1
    old = d.etag("k")
    del FileDirDict(base_dir=str(tmp_path / "main"))["k"]  # behind the wrapper
    r = d.set_item_if("k", value=DELETE_CURRENT, condition=condition,
                      expected_etag=old if expected == "old" else expected)  # fmt: skip
    assert r.condition_was_satisfied and r.actual_etag is ITEM_NOT_AVAILABLE
    assert "k" not in data and "k" not in etags
    with pytest.raises(KeyError):
        d.etag("k")  # a stale cache would answer the deleted version's etag
