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
from moto import mock_aws

from persidict import BackendError, BasicS3Dict, S3Dict

# Names AWS refuses, with the reason the message must give. Only the last two
# are refused before any request (botocore cannot send them); the others reach
# the server, because moto, MinIO and old us-east-1 buckets accept them.
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
    ("b/c", "'/'"),
]
UNSENDABLE = BAD[-2:]
GOOD = ["abc", "a" * 63, "my-bucket.v2", "1bucket9", "data-s3alias", "name--usw2-az1--x-s3"]


def silent_client() -> tuple[Any, Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    return client, Stubber(client)


def assert_names_rules(message: str, name: str, why: str) -> None:
    assert repr(name) in message and why in message
    assert "lowercase letters, digits" in message and "bucketnamingrules" in message


@pytest.mark.parametrize(("name", "why"), UNSENDABLE)
def test_unsendable_names_refused_before_any_request(name: str, why: str) -> None:
    client, stub = silent_client()
    with stub, pytest.raises(ValueError) as info:
        BasicS3Dict(bucket_name=name, region="us-east-1", client=client)
    assert_names_rules(str(info.value), name, why)


@pytest.mark.parametrize(("name", "why"), UNSENDABLE)
def test_s3dict_refuses_before_any_request(name: str, why: str, tmp_path: pathlib.Path) -> None:
    client, stub = silent_client()
    with stub, pytest.raises(ValueError, match="not a valid S3 bucket name"):
        S3Dict(bucket_name=name, region="us-east-1", base_dir=str(tmp_path), client=client)
    assert not list(tmp_path.iterdir())  # no cache directory made either


@pytest.mark.parametrize(("name", "why"), BAD[:-2])
def test_server_refusing_the_name_on_head_is_a_value_error(name: str, why: str) -> None:
    client, stub = silent_client()
    stub.add_client_error("head_bucket", service_error_code="400", http_status_code=400)
    with stub, pytest.raises(ValueError) as info:
        BasicS3Dict(bucket_name=name, region="us-east-1", client=client)
    assert_names_rules(str(info.value), name, why)
    assert "refused by the server" in str(info.value)


@pytest.mark.parametrize(("name", "why"), BAD[:3])
def test_server_refusing_the_name_on_create_is_a_value_error(name: str, why: str) -> None:
    client, stub = silent_client()
    stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    stub.add_client_error(
        "create_bucket", service_error_code="InvalidBucketName", http_status_code=400
    )
    with stub, pytest.raises(ValueError) as info:
        BasicS3Dict(bucket_name=name, region="us-east-1", client=client)
    assert_names_rules(str(info.value), name, why)


def test_a_400_for_a_valid_name_stays_a_backend_error() -> None:
    client, stub = silent_client()
    stub.add_client_error("head_bucket", service_error_code="400", http_status_code=400)
    with stub, pytest.raises(BackendError):
        BasicS3Dict(bucket_name="valid-name", region="us-east-1", client=client)


def test_names_moto_accepts_still_work() -> None:
    """The reference's default bucket name works wherever the server takes it (moto)."""
    with mock_aws():
        d = BasicS3Dict(bucket_name="my_bucket", region="us-east-1")
        d["k"] = 1
        assert d["k"] == 1


@pytest.mark.parametrize("name", GOOD)
def test_valid_names_reach_the_server(name: str) -> None:
    client, stub = silent_client()
    stub.add_response("head_bucket", {}, {"Bucket": name})
    with stub:
        d = BasicS3Dict(bucket_name=name, region="us-east-1", client=client)
        stub.assert_no_pending_responses()
    assert d.bucket_name == name
