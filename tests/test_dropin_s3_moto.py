"""The conformance suite's store tests on moto 5 in-process, one mock per test.

Each test runs inside its own ``mock_aws()`` (a fresh, empty S3, the bucket
created again by the store), the way users of the reference test with moto.

Sequential semantics only: moto checks a precondition and then applies the
write as two steps with no lock (``moto/s3/responses.py``), so concurrent
conditional requests on one key are not atomic there (two inserts-if-absent
can both win). Nothing concurrent is run on moto.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from persidict import BasicS3Dict, PersiDict, S3Dict
from persidict.testing import PersiDictConformance

BUCKET = "moto-conformance"
_prefixes = itertools.count()


class _OnMoto(PersiDictConformance):
    """The whole conformance suite, each test inside a fresh ``mock_aws()``."""

    @pytest.fixture(autouse=True)
    def _fresh_moto(self) -> Iterator[None]:
        with mock_aws():
            yield


class Test_s3_moto(_OnMoto):
    def make_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict:
        # codecs are the same on every server: SeaweedFS runs json
        return BasicS3Dict(bucket_name=BUCKET, region="us-east-1",
                           root_prefix=f"s{next(_prefixes)}", **params)


class Test_s3_moto_cached(_OnMoto):
    def make_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict:
        return S3Dict(bucket_name=BUCKET, region="us-east-1", root_prefix=f"s{next(_prefixes)}",
                      base_dir=str(tmp_path / "cache"), **params)
