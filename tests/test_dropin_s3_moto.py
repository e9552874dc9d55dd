"""The conformance suite's store tests on moto 5 in-process, one mock per test.

Each test runs inside its own ``mock_aws()`` (a fresh, empty S3, the bucket
created again by the store), the way users of the reference test with moto.
The stores come from a registry of this file only (conftest's is shared).

Sequential semantics only: moto checks a precondition and then applies the
write as two steps with no lock (``moto/s3/responses.py``), so concurrent
conditional requests on one key are not atomic there (two inserts-if-absent
can both win). Nothing concurrent is run on moto.
"""

from __future__ import annotations

import inspect
import itertools
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws

import test_conformance
from persidict import BasicS3Dict, PersiDict, S3Dict

BUCKET = "moto-conformance"
_prefixes = itertools.count()


def _basic(tmp: pathlib.Path) -> PersiDict:
    return BasicS3Dict(bucket_name=BUCKET, region="us-east-1", root_prefix=f"s{next(_prefixes)}")


def _cached(tmp: pathlib.Path) -> PersiDict:
    return S3Dict(bucket_name=BUCKET, region="us-east-1", root_prefix=f"s{next(_prefixes)}",
                  base_dir=str(tmp / f"cache{next(_prefixes)}"))


MOTO_STORE_FACTORIES: dict[str, Callable[[pathlib.Path], PersiDict]] = {
    "s3_moto": _basic,  # codecs are the same on every server: SeaweedFS runs json
    "s3_moto_cached": _cached,
}


@pytest.fixture
def moto_s3() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture(params=list(MOTO_STORE_FACTORIES), ids=list(MOTO_STORE_FACTORIES))
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _make(name: str, tmp: pathlib.Path, **overrides: Any) -> PersiDict:
    d = MOTO_STORE_FACTORIES[name](tmp)
    if overrides:
        params = dict(d.get_params())
        params.update(overrides)
        d = type(d)(**params)
    return d


@pytest.fixture
def store(store_name: str, tmp_path: pathlib.Path, moto_s3: None) -> PersiDict:
    return _make(store_name, tmp_path)


@pytest.fixture
def store_maker(
    store_name: str, tmp_path: pathlib.Path, moto_s3: None
) -> Callable[..., PersiDict]:
    def maker(**overrides: Any) -> PersiDict:
        return _make(store_name, tmp_path, **overrides)

    return maker


def _store_tests() -> dict[str, Any]:
    """The conformance tests that take a store (or a maker of stores) and nothing else
    from the shared registry."""
    chosen = {}
    for name, fn in vars(test_conformance).items():
        if not name.startswith("test_") or not inspect.isfunction(fn):
            continue
        params = set(inspect.signature(fn).parameters)
        if params & {"store", "store_maker"} and "store_name" not in params:
            chosen[name] = fn
    return chosen


globals().update(_store_tests())
