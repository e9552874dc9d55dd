"""An invalid bucket name fails at construction, before any request (issue 15.3).

The client is a botocore Stubber with no responses queued: any request the
store sent would raise ``StubResponseError`` instead of the ValueError that
names the bucket and S3's naming rules.
"""

from __future__ import annotations

import pathlib
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from persidict import BasicS3Dict, S3Dict

BAD = [
    ("my_bucket", "'_'"),  # the reference's default
    ("MyBucket", "'BM'"),
    ("ab", "2 characters"),
    ("a" * 64, "64 characters"),
    ("-bucket", "begin and end"),
    ("bucket.", "begin and end"),
    ("a..b", "'..'"),
    ("192.168.5.4", "IP address"),
    ("xn--bucket", "reserved prefix"),
    ("sthree-bucket", "reserved prefix"),
    ("buck et", "' '"),
]
GOOD = ["abc", "a" * 63, "my-bucket.v2", "1bucket9", "data-s3alias", "name--usw2-az1--x-s3"]


def silent_client() -> tuple[Any, Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    return client, Stubber(client)


@pytest.mark.parametrize(("name", "why"), BAD)
def test_basic_s3dict_refuses_before_any_request(name: str, why: str) -> None:
    client, stub = silent_client()
    with stub, pytest.raises(ValueError) as info:
        BasicS3Dict(bucket_name=name, region="us-east-1", client=client)
    message = str(info.value)
    assert repr(name) in message and why in message
    assert "lowercase letters, digits" in message and "bucketnamingrules" in message


@pytest.mark.parametrize(("name", "why"), BAD[:3])
def test_s3dict_refuses_before_any_request(name: str, why: str, tmp_path: pathlib.Path) -> None:
    client, stub = silent_client()
    with stub, pytest.raises(ValueError, match="not a valid S3 bucket name"):
        S3Dict(bucket_name=name, region="us-east-1", base_dir=str(tmp_path), client=client)
    assert not list(tmp_path.iterdir())  # no cache directory made either


@pytest.mark.parametrize("name", GOOD)
def test_valid_names_reach_the_server(name: str) -> None:
    client, stub = silent_client()
    stub.add_response("head_bucket", {}, {"Bucket": name})
    with stub:
        d = BasicS3Dict(bucket_name=name, region="us-east-1", client=client)
        stub.assert_no_pending_responses()
    assert d.bucket_name == name
