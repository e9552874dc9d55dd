"""Error mapping, 409 handling and bounded retries of BasicS3Dict (botocore Stubber).

No server: every response is stubbed, so the outcomes are exact.
"""

from __future__ import annotations

import io
import pickle
import socket
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from persidict import (
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    BackendError,
    BasicS3Dict,
    OutcomeUnknownError,
)
from persidict.backends.s3_transport import RetryPolicy
from persidict.engine.errors import PreconditionFailed
from persidict.engine.keys import NonEmptySafeStrTuple


class FakeTime:
    """An injectable clock and sleep: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_response("head_bucket", {})
    stub.activate()
    d = BasicS3Dict(bucket_name=f"b-{uuid.uuid4().hex[:12]}", region="us-east-1",
                    root_prefix="p", client=client)
    fake = FakeTime()
    d.retry_policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock)
    yield d, stub, fake
    stub.deactivate()


def body(value: Any) -> dict[str, Any]:
    data = pickle.dumps(value)
    return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ETag": '"e2"'}


K = NonEmptySafeStrTuple("k")


def test_409_conditional_conflict_is_a_lost_race(stubbed: Any) -> None:
    d, stub, _ = stubbed
    stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    with pytest.raises(PreconditionFailed):
        d._put(K, 1, if_match='"e1"')
    # through the API: the engine re-reads and decides again
    stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    stub.add_response("get_object", body("theirs"))
    r = d.set_item_if("k", value=1, condition=ETAG_IS_THE_SAME, expected_etag='"e1"')
    assert not r.condition_was_satisfied
    assert r.actual_etag == '"e2"' and r.new_value == "theirs"
    stub.assert_no_pending_responses()


def test_412_and_404_on_conditional_writes_are_preconditions(stubbed: Any) -> None:
    d, stub, fake = stubbed
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_client_error("put_object", "NoSuchKey", http_status_code=404)  # AWS If-Match
    stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412)
    with pytest.raises(PreconditionFailed):
        d._put(K, 1, if_match=ITEM_NOT_AVAILABLE)
    with pytest.raises(PreconditionFailed):
        d._put(K, 1, if_match='"e1"')
    with pytest.raises(PreconditionFailed):
        d._remove(K, if_match='"e1"')
    assert fake.sleeps == []  # none of these is retried


def test_missing_key_is_keyerror_not_backend_error(stubbed: Any) -> None:
    d, stub, _ = stubbed
    stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
    stub.add_client_error("head_object", "404", http_status_code=404)
    stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412)
    stub.add_client_error("head_object", "404", http_status_code=404)  # 412: absent or not?
    with pytest.raises(KeyError):
        d["k"]
    with pytest.raises(KeyError):
        d.timestamp("k")
    with pytest.raises(KeyError):
        del d["k"]


def test_native_errors_become_backend_errors(stubbed: Any) -> None:
    d, stub, fake = stubbed
    stub.add_client_error("get_object", "AccessDenied", "no", http_status_code=403)
    with pytest.raises(BackendError) as info:
        d["k"]
    err = info.value
    assert err.backend == "s3" and err.operation == "get_object" and err.key == K
    assert isinstance(err.__cause__, ClientError)
    assert "AccessDenied" in str(err) and "'k'" in str(err) and "p/k.pkl" in str(err)
    assert fake.sleeps == []  # not transient: not retried
    again = pickle.loads(pickle.dumps(err))
    assert (again.backend, again.operation, again.key) == ("s3", "get_object", K)


def test_transient_errors_are_retried_then_succeed(stubbed: Any) -> None:
    d, stub, fake = stubbed
    stub.add_client_error("put_object", "SlowDown", http_status_code=503)
    stub.add_response("put_object", {"ETag": '"e9"'})
    assert d._put(K, 1, if_match=None) == '"e9"'  # a refused write is resent
    stub.add_client_error("head_object", "InternalError", http_status_code=500)
    stub.add_response("head_object", {"ETag": '"e9"'})
    assert d.etag("k") == '"e9"'
    assert len(fake.sleeps) == 2
    stub.assert_no_pending_responses()


def test_retries_are_bounded_in_attempts(stubbed: Any) -> None:
    d, stub, fake = stubbed
    for _ in range(5):
        stub.add_client_error("head_object", "SlowDown", http_status_code=503)
    with pytest.raises(BackendError, match="after 5 attempts") as info:
        d.etag("k")
    assert isinstance(info.value.__cause__, ClientError)
    assert len(fake.sleeps) == 4
    stub.assert_no_pending_responses()


def test_retries_are_bounded_in_time(stubbed: Any) -> None:
    d, stub, fake = stubbed
    d.retry_policy = RetryPolicy(max_attempts=100, max_seconds=1.0, base_delay=0.4,
                                 max_delay=0.4, sleep=fake.sleep, clock=fake.clock)
    for _ in range(100):
        stub.add_client_error("head_object", "503", http_status_code=503)
    with pytest.raises(BackendError):
        d.etag("k")
    assert fake.now <= 1.0
    assert len(fake.sleeps) < 10


def test_serialization_is_never_sent_nor_retried(stubbed: Any) -> None:
    d, stub, fake = stubbed
    with pytest.raises(TypeError, match="cannot serialize"):
        d["k"] = lambda: 1
    stub.assert_no_pending_responses()
    assert fake.sleeps == []


def test_ambiguous_conditional_put_that_landed_is_reported_as_ours(
    stubbed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, stub, _ = stubbed
    import hashlib

    from persidict.backends import s3_bytes as s3

    monkeypatch.setattr(s3, "write_token", lambda: "t-ours")
    stub.add_client_error("put_object", "InternalError", http_status_code=500)  # not resent
    stub.add_response("head_object", {"ETag": '"e-ours"', "Metadata": {s3.WRITE_TOKEN: "t-ours"}})
    assert d._put(K, 1, if_match=ITEM_NOT_AVAILABLE) == '"e-ours"'
    # ... but the same bytes under another write's token prove nothing
    same = '"' + hashlib.md5(d._encode(K, 1)).hexdigest() + '"'
    stub.add_client_error("put_object", "InternalError", http_status_code=500)
    stub.add_response("head_object", {"ETag": same, "Metadata": {s3.WRITE_TOKEN: "t-theirs"}})
    with pytest.raises(OutcomeUnknownError, match="may or may not"):
        d._put(K, 1, if_match=ITEM_NOT_AVAILABLE)
    stub.assert_no_pending_responses()


def test_unreachable_endpoint_is_a_backend_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(BackendError) as info:
        BasicS3Dict(bucket_name=f"b-{uuid.uuid4().hex[:12]}", region="us-east-1",
                    endpoint_url=url, client=client)
    assert info.value.operation == "head_bucket"
    assert isinstance(info.value.__cause__, EndpointConnectionError)
