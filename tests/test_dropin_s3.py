"""Drop-in S3 behaviours (issue 11, items 1, 2, 13), on moto in-process as users test.

- every construction (get_subdict and S3Dict included) checks the bucket and
  creates it if missing, so a mock reset between tests (``with mock_aws():``
  per test, or the decorator) does not break the next test;
- plain deletes work on a server that takes ``If-Match: *`` literally (moto 5
  answers 412 for a present key), still through one atomic conditional
  delete: the races between the HEAD and the delete are forced here;
- ``BasicS3Dict.s3_client``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from persidict import (
    ETAG_IS_THE_SAME,
    BackendError,
    BasicS3Dict,
    ConcurrencyConflictError,
    OutcomeUnknownError,
    S3Dict,
)

BUCKET = "dropin-bucket"


class Wire:
    """Records (method, If-Match) of every request a client sends."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, str | None]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        match = request.headers.get("If-Match")
        self.sent.append((request.method, match.decode() if isinstance(match, bytes) else match))

    def take(self) -> list[tuple[str, str | None]]:
        sent, self.sent = self.sent, []
        return sent


def exercise(d: Any) -> None:
    d["k"] = 1
    d[("a", "b")] = "x"
    assert d["k"] == 1 and d[("a", "b")] == "x" and len(d) == 2
    del d["k"]
    assert "k" not in d and len(d) == 1
    with pytest.raises(KeyError):
        del d["k"]


# -- item 1: the bucket is checked at every construction -------------------------


def test_a_mock_reset_between_blocks_does_not_break_the_next(tmp_path: pathlib.Path) -> None:
    for i in range(2):
        with mock_aws():
            exercise(BasicS3Dict(bucket_name=BUCKET, region="us-east-1"))
            exercise(S3Dict(bucket_name=BUCKET, region="us-east-1",
                            base_dir=str(tmp_path / f"c{i}")))


@mock_aws
def test_decorated_first(tmp_path: pathlib.Path) -> None:
    exercise(BasicS3Dict(bucket_name=BUCKET))


@mock_aws
def test_decorated_second(tmp_path: pathlib.Path) -> None:
    exercise(BasicS3Dict(bucket_name=BUCKET))  # the first test's bucket is gone


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
@mock_aws
def test_bucket_created_in_the_stores_region(region: str) -> None:
    BasicS3Dict(bucket_name=BUCKET, region=region)["k"] = 1
    location = boto3.client("s3", region_name=region).get_bucket_location(Bucket=BUCKET)
    assert location.get("LocationConstraint") == (None if region == "us-east-1" else region)


@mock_aws
def test_no_region_means_the_clients_region() -> None:
    client = boto3.client("s3", region_name="eu-central-1")
    d = BasicS3Dict(bucket_name=BUCKET, client=client)
    assert d.region is None
    d["k"] = 1
    assert client.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-central-1"


def drop_bucket(client: Any) -> None:
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", ()):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


@mock_aws
def test_get_subdict_and_s3dict_check_the_bucket(tmp_path: pathlib.Path) -> None:
    d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    d["k"] = 1
    drop_bucket(d.client)
    assert "k" not in d and len(d) == 0 and list(d) == []  # a missing bucket holds no key
    sub = d.get_subdict("p")  # creates the bucket again
    exercise(sub)
    drop_bucket(d.client)
    cached = S3Dict(bucket_name=BUCKET, region="us-east-1", base_dir=str(tmp_path))
    exercise(cached)
    drop_bucket(d.client)
    exercise(cached.get_subdict("q"))


@mock_aws
def test_a_write_into_a_bucket_gone_since_is_a_backend_error() -> None:
    d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    drop_bucket(d.client)
    for write in (lambda: d.__setitem__("k", 1), lambda: d.setdefault("k", 1)):
        with pytest.raises(BackendError, match="NoSuchBucket"):
            write()
    assert d.discard("k") is False  # nothing there to delete


def stubbed_client() -> tuple[Any, Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    return client, Stubber(client)


def test_every_construction_sends_head_bucket(tmp_path: pathlib.Path) -> None:
    client, stub = stubbed_client()
    for _ in range(4):
        stub.add_response("head_bucket", {}, {"Bucket": BUCKET})
    with stub:
        d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        d.get_subdict("p")
        S3Dict(bucket_name=BUCKET, region="us-east-1", base_dir=str(tmp_path), client=client)
        stub.assert_no_pending_responses()


def test_403_on_head_bucket_is_tolerated() -> None:
    client, stub = stubbed_client()
    stub.add_client_error("head_bucket", "403", "Forbidden", http_status_code=403)
    with stub:  # no create_bucket: any further request would be unstubbed
        d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        stub.assert_no_pending_responses()
    assert d.bucket_name == BUCKET


@pytest.mark.parametrize("code", ["BucketAlreadyOwnedByYou", "BucketAlreadyExists"])
def test_losing_the_creation_race_is_fine(code: str) -> None:
    client, stub = stubbed_client()
    stub.add_client_error("head_bucket", "404", http_status_code=404)
    stub.add_client_error("create_bucket", code, http_status_code=409)
    with stub:
        BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        stub.assert_no_pending_responses()


def test_other_head_bucket_failures_are_backend_errors() -> None:
    client, stub = stubbed_client()
    stub.add_client_error("head_bucket", "400", "Bad Request", http_status_code=400)
    with stub, pytest.raises(BackendError) as info:
        BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
    assert info.value.operation == "head_bucket"


def test_no_such_bucket_on_reads_means_a_missing_key() -> None:
    client, stub = stubbed_client()
    stub.add_response("head_bucket", {})
    stub.add_client_error("get_object", "NoSuchBucket", http_status_code=404)
    stub.add_client_error("head_object", "NoSuchBucket", http_status_code=404)
    stub.add_client_error("list_objects_v2", "NoSuchBucket", http_status_code=404)
    with stub:
        d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        assert d.get("k", "default") == "default"
        assert "k" not in d
        assert len(d) == 0
        stub.assert_no_pending_responses()


# -- item 13 ---------------------------------------------------------------------


@mock_aws
def test_s3_client_is_the_client() -> None:
    d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    assert d.s3_client is d.client
    assert d.s3_client.head_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200


# -- item 2: deletes on a server that takes If-Match: * literally ----------------


@mock_aws
def test_delete_discard_pop_on_moto(tmp_path: pathlib.Path) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
    wire = Wire(client)
    d["k"] = 1
    wire.take()
    del d["k"]
    etag_sent = wire.take()
    assert [m for m, _ in etag_sent] == ["DELETE", "HEAD", "DELETE"]
    assert etag_sent[0][1] == "*" and etag_sent[2][1] not in (None, "*")  # by its etag
    assert "k" not in d
    d["k"] = 2
    assert d.discard("k") is True and d.discard("k") is False
    d["k"] = 3
    assert d.pop("k") == 3 and d.pop("k", None) is None
    d["a"], d["b"] = 1, 2
    popped = sorted((k.strings, v) for k, v in (d.popitem(), d.popitem()))
    assert popped == [(("a",), 1), (("b",), 2)] and len(d) == 0
    d["c"] = 1
    d.clear()
    assert len(d) == 0
    d["k"] = 4
    r = d.discard_if("k", condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k"))
    assert r.condition_was_satisfied and "k" not in d
    wire.take()
    assert d.discard("k") is False
    assert [m for m, _ in wire.take()] == ["DELETE"]  # moto's 404: absent, nothing more
    cached = S3Dict(bucket_name=BUCKET, region="us-east-1", base_dir=str(tmp_path))
    cached["k"] = 5
    assert cached.pop("k") == 5 and "k" not in cached


def racing(d: BasicS3Dict, other: BasicS3Dict, act: Callable[[BasicS3Dict], None],
           monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``act(other)`` once, right after ``d``'s next HEAD (before its DELETE)."""
    real = d.byte_store.read
    done: list[bool] = []

    def read(key: Any, **kwargs: Any) -> Any:
        blob = real(key, **kwargs)
        if not done:
            done.append(True)
            act(other)
        return blob

    monkeypatch.setattr(d.byte_store, "read", read)


@mock_aws
def test_a_key_deleted_between_head_and_delete_is_reported_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    other = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    d["k"] = 1
    removed: list[bool] = []
    racing(d, other, lambda o: removed.append(o.discard("k")), monkeypatch)
    # exactly one of the two deleters removed it: a HEAD then a plain DELETE
    # (check-then-act) would report True twice
    assert d.discard("k") is False and removed == [True]


@mock_aws
def test_a_key_rewritten_between_head_and_delete_is_deleted_by_its_new_etag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    other = BasicS3Dict(bucket_name=BUCKET, region="us-east-1")
    d["k"] = 1
    racing(d, other, lambda o: o.__setitem__("k", 2), monkeypatch)
    assert d.discard("k") is True  # a plain delete deletes whatever is current
    assert "k" not in other
    other["k"] = 3
    racing(d, other, lambda o: o.__setitem__("k", 4), monkeypatch)
    assert d.pop("k") == 4 and "k" not in other  # pop deletes the version it returns


def test_the_etag_delete_fallback_keeps_the_lost_reply_rule() -> None:
    client, stub = stubbed_client()
    stub.add_response("head_bucket", {})
    stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412)
    stub.add_response("head_object", {"ETag": '"e1"'})
    stub.add_client_error("delete_object", "InternalError", http_status_code=500,
                          expected_params={"Bucket": BUCKET, "Key": "k.pkl", "IfMatch": '"e1"'})
    with stub:
        d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        with pytest.raises(OutcomeUnknownError):
            d.discard("k")
        stub.assert_no_pending_responses()  # the maybe-applied delete was not resent


def test_the_fallback_gives_up_after_bounded_rounds() -> None:
    client, stub = stubbed_client()
    stub.add_response("head_bucket", {})
    stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412)
    for i in range(16):
        stub.add_response("head_object", {"ETag": f'"e{i}"'})
        stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412)
    with stub:
        d = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", client=client)
        with pytest.raises(ConcurrencyConflictError):
            d.discard("k")
        stub.assert_no_pending_responses()
