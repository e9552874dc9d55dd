"""Pytest plugin: S3 stores against a real SeaweedFS server on loopback.

Loaded from conftest.py (``pytest_plugins``); ``S3_STORE_FACTORIES`` is merged
into conftest's ``STORE_FACTORIES`` so the conformance suite and the state
machine run on BasicS3Dict and S3Dict too. Each store gets a fresh root
prefix in one shared bucket. The server starts on first use (or with the
``s3_server`` fixture) and is stopped by its pid when the session ends.
"""

from __future__ import annotations

import itertools
import pathlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from persidict import PersiDict
from persidict.backends.s3 import BasicS3Dict
from persidict.backends.s3_cached import S3Dict_FileDirCached
from s3_server import REGION, S3Server, get_server, stop_server

BUCKET = "persidict-tests"
_run = uuid.uuid4().hex[:8]
_prefixes = itertools.count()


def fresh_prefix() -> str:
    """A root prefix no other store of this session uses."""
    return f"run-{_run}/s{next(_prefixes)}"


def _basic(**kwargs: Any) -> Callable[[pathlib.Path], PersiDict]:
    def factory(tmp: pathlib.Path) -> PersiDict:
        server = get_server()
        return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                           endpoint_url=server.endpoint_url, **kwargs)

    return factory


def _cached(**kwargs: Any) -> Callable[[pathlib.Path], PersiDict]:
    def factory(tmp: pathlib.Path) -> PersiDict:
        server = get_server()
        return S3Dict_FileDirCached(bucket_name=BUCKET, region=REGION,
                                    root_prefix=fresh_prefix(), base_dir=str(tmp / "cache"),
                                    endpoint_url=server.endpoint_url, **kwargs)

    return factory


S3_STORE_FACTORIES: dict[str, Callable[[pathlib.Path], PersiDict]] = {
    "s3_basic": _basic(),
    "s3_basic_json": _basic(serialization_format="json"),
    "s3_cached": _cached(),
}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's SeaweedFS server (skips only if the binary is not installed)."""
    yield get_server()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_server()
