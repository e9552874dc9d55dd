"""Shared pieces of the adversarial S3 tests: the proxy, the two stores, what callers were told."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from _s3_plugin import BUCKET, fresh_prefix
from faultproxy_more import MoreFaultProxy
from persidict import ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, BasicS3Dict, OutcomeUnknownError
from persidict.backends.s3_transport import RetryPolicy
from s3_server import REGION, S3Server

QUICK = RetryPolicy(max_attempts=3, max_seconds=10.0, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[MoreFaultProxy]:
    p = MoreFaultProxy(s3_server.endpoint_url)
    yield p
    p.stop()


def through(proxy: MoreFaultProxy, prefix: str, **client_config: Any) -> BasicS3Dict:
    client = None
    if client_config:
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, region_name=REGION,
                              config=Config(retries={"total_max_attempts": 1},
                                            s3={"addressing_style": "path"}, **client_config))
    d = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                    endpoint_url=proxy.endpoint_url, client=client)
    d.retry_policy = QUICK
    return d


@pytest.fixture
def stores(s3_server: S3Server, proxy: MoreFaultProxy) -> tuple[BasicS3Dict, BasicS3Dict]:
    prefix = fresh_prefix()
    theirs = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                         endpoint_url=s3_server.endpoint_url)
    return through(proxy, prefix), theirs


def path(d: BasicS3Dict, key: str) -> str:
    return f"/{BUCKET}/{d.root_prefix}{key}.pkl"


def told(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result), ("unknown", error) or ("error", error) for any other exception."""
    try:
        return "ok", fn()
    except OutcomeUnknownError as exc:
        return "unknown", exc
    except Exception as exc:
        return "error", exc


def insert(d: BasicS3Dict, key: str, value: Any) -> Any:
    return d.setdefault_if(key, default_value=value, condition=ETAG_IS_THE_SAME,
                           expected_etag=ITEM_NOT_AVAILABLE)
