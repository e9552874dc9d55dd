"""BasicS3Dict's S3 primitives: duties found unchecked by mutation testing (round 15).

The SeaweedFS server of the other S3 tests takes ``DELETE If-Match: *`` as
"delete if present"; AWS answers 404 for a missing key and moto 5 answers
412 for a present one. The plain delete has a path for each, so these tests
run on moto 5 in-process (sequential use only: moto's preconditions are not
atomic), with a second store as the other writer. Its writes are made from
botocore's ``before-parameter-build`` event, i.e. between our HEAD and our DELETE.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from _s3_plugin import BUCKET as S3_BUCKET
from _s3_plugin import fresh_prefix
from persidict import ETAG_IS_THE_SAME, BasicS3Dict
from persidict.backends.s3_bytes import S3Bytes
from persidict.backends.s3_transport import RetryPolicy
from persidict.engine.flags import ETagValue
from s3_server import REGION, S3Server

moto = pytest.importorskip("moto")

BUCKET = "mutants15"


@pytest.fixture
def stores() -> Iterator[tuple[BasicS3Dict, BasicS3Dict]]:
    """(ours, another writer's), one prefix of one moto bucket."""
    with moto.mock_aws():
        ours = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", root_prefix="p/")
        theirs = BasicS3Dict(bucket_name=BUCKET, region="us-east-1", root_prefix="p/")
        yield ours, theirs


def _before_each_delete(d: BasicS3Dict, hook: Any) -> list[dict[str, Any]]:
    """Run ``hook(params)`` before each DeleteObject of ``d``; the params seen."""
    seen: list[dict[str, Any]] = []

    def handler(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))
        hook(params)

    store = d.byte_store
    assert isinstance(store, S3Bytes)
    store.client.meta.events.register("before-parameter-build.s3.DeleteObject", handler)
    return seen


def test_deleting_a_missing_key_is_a_key_error(stores: Any) -> None:
    """404 to the plain delete: absent (not 'deleted')."""
    ours, _ = stores
    ours["other"] = 1
    with pytest.raises(KeyError):
        del ours["missing"]
    assert ours.discard("missing") is False
    assert ours.pop("missing", "dflt") == "dflt"
    assert dict(ours.items()) == {("other",): 1}


def test_a_plain_delete_that_loses_to_a_writer_looks_again(stores: Any) -> None:
    """412 on ``If-Match: *`` (moto), then another write lands between our HEAD and
    our DELETE by etag: the delete looks again and removes what is current."""
    ours, theirs = stores
    ours["k"] = "v0"
    writes = iter(["v1", "v2", "v3"])

    def other_writes(params: dict[str, Any]) -> None:
        if params.get("IfMatch") not in (None, "*"):  # a DELETE by etag: lose it twice
            value = next(writes, None)
            if value is not None and value != "v3":
                theirs["k"] = value

    seen = _before_each_delete(ours, other_writes)
    assert ours.discard("k") is True
    assert "k" not in ours and "k" not in theirs
    assert [p.get("IfMatch") == "*" for p in seen] == [True, False, False, False]


def test_object_names_up_to_the_limits_are_stored_and_one_more_byte_is_refused(
    s3_server: S3Server,
) -> None:
    """255 bytes per segment (file-system-backed servers such as SeaweedFS), 1024 per
    object key (S3): both inclusive, on the real server."""
    d = BasicS3Dict(bucket_name=S3_BUCKET, region=REGION, root_prefix=fresh_prefix(),
                    endpoint_url=s3_server.endpoint_url)
    last = 255 - len(".pkl")
    d["x" * last] = "a full segment"
    assert d["x" * last] == "a full segment"
    with pytest.raises(ValueError, match="255 bytes"):
        d["x" * (last + 1)] = "one byte more"
    head = ("y" * 253,) * 3  # 3 * 254 bytes with their '/'
    fill = 1024 - len(d.root_prefix) - 3 * 254 - len(".pkl")
    key = (*head, "z" * fill)
    d[key] = "a full name"
    assert d[key] == "a full name"
    too_long = (*head, "z" * (fill + 1))
    with pytest.raises(ValueError, match="1024 bytes"):
        d[too_long] = "one byte more"
    assert {tuple(k) for k in d} == {("x" * last,), key}


def test_a_listing_holds_only_objects_a_key_of_this_store_names(s3_server: S3Server) -> None:
    """Other formats' objects and names with unsafe components (written around the store,
    on the real server) are not keys of it."""
    prefix = fresh_prefix()
    d = BasicS3Dict(bucket_name=S3_BUCKET, region=REGION, root_prefix=prefix,
                    endpoint_url=s3_server.endpoint_url)
    other = BasicS3Dict(bucket_name=S3_BUCKET, region=REGION, root_prefix=prefix,
                        endpoint_url=s3_server.endpoint_url, serialization_format="json")
    d[("a", "k")] = 1
    other["j"] = 2
    store = d.byte_store
    assert isinstance(store, S3Bytes)
    for name in ("a/k.pkl.bak", "a b/k.pkl", "a/~k!.pkl", "a/.pkl", "a/..pkl"):
        store.client.put_object(Bucket=S3_BUCKET, Key=d.root_prefix + name, Body=b"x")
    assert [tuple(k) for k in d] == [("a", "k")]
    assert [tuple(k) for k in other] == [("j",)]
    assert len(d) == 1 and d[("a", "k")] == 1


def test_a_conditional_delete_of_a_key_gone_meanwhile_is_a_failed_condition(
    stores: Any,
) -> None:
    """A ``DELETE If-Match`` on a missing key is 404 on moto and AWS: the condition failed,
    the store is unchanged (not an internal 'not found' escaping)."""
    ours, theirs = stores
    ours["k"] = 1
    etag = ours.etag("k")
    del theirs["k"]
    r = ours.discard_if("k", condition=ETAG_IS_THE_SAME, expected_etag=etag)
    assert not r.condition_was_satisfied
    assert "k" not in ours


def test_writes_to_a_bucket_deleted_meanwhile_are_backend_errors(stores: Any) -> None:
    """The value cannot be stored: an error (not a failed condition, not 'not found');
    reads find the key absent. On moto (SeaweedFS makes the bucket again on a PUT)."""
    from persidict import ITEM_NOT_AVAILABLE, BackendError

    d = BasicS3Dict(bucket_name="deleted-meanwhile", region="us-east-1")
    store = d.byte_store
    assert isinstance(store, S3Bytes)
    store.client.delete_bucket(Bucket="deleted-meanwhile")
    with pytest.raises(BackendError, match="NoSuchBucket"):
        d["k"] = 1
    with pytest.raises(BackendError, match="NoSuchBucket"):
        d.setdefault_if("k", default_value=1, condition=ETAG_IS_THE_SAME,
                        expected_etag=ITEM_NOT_AVAILABLE)
    assert "k" not in d
    with pytest.raises(KeyError):
        d["k"]


# -- exact statuses: botocore's Stubber (no server can be made to answer these) --


@pytest.fixture
def stubbed() -> Iterator[tuple[BasicS3Dict, Stubber]]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_client_error("head_bucket", "403", http_status_code=403)  # objects-only credentials
    stub.activate()
    d = BasicS3Dict(bucket_name="stubbed", region="us-east-1", root_prefix="p", client=client)
    d.retry_policy = RetryPolicy(sleep=lambda s: None, clock=lambda: 0.0)
    yield d, stub
    stub.deactivate()


def _body(value: Any) -> dict[str, Any]:
    data = pickle.dumps(value)
    return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ETag": '"e2"'}


def test_a_403_on_the_bucket_head_is_accepted_and_a_bare_500_read_is_retried(
    stubbed: tuple[BasicS3Dict, Stubber],
) -> None:
    """The store was made despite the 403; a 500 with no known code is transient for a read."""
    d, stub = stubbed
    stub.add_client_error("get_object", "WeirdFailure", http_status_code=500)
    stub.add_response("get_object", _body("v"))
    assert d["k"] == "v"
    stub.assert_no_pending_responses()


def test_a_412_with_an_unknown_code_is_a_failed_condition(
    stubbed: tuple[BasicS3Dict, Stubber],
) -> None:
    d, stub = stubbed
    stub.add_client_error("put_object", "SomeVendorCode", http_status_code=412)
    stub.add_response("get_object", _body("theirs"))
    r = d.set_item_if("k", value=1, condition=ETAG_IS_THE_SAME, expected_etag=ETagValue('"e1"'))
    assert not r.condition_was_satisfied and r.actual_etag == '"e2"'
    stub.assert_no_pending_responses()


def test_a_bucket_made_by_another_creator_meanwhile_is_used(s3_server: S3Server) -> None:
    """HEAD finds no bucket, another client makes it, our create loses: fine, it exists."""
    bucket = f"race-{fresh_prefix().replace('/', '-').lower()}"
    other = boto3.client("s3", region_name=REGION, endpoint_url=s3_server.endpoint_url)
    made: list[str] = []

    def make_it_first(**_: Any) -> None:
        if not made:
            other.create_bucket(Bucket=bucket)
            made.append(bucket)

    client = boto3.client("s3", region_name=REGION, endpoint_url=s3_server.endpoint_url)
    client.meta.events.register("before-parameter-build.s3.CreateBucket", make_it_first)
    d = BasicS3Dict(bucket_name=bucket, region=REGION, endpoint_url=s3_server.endpoint_url,
                    client=client)
    assert made == [bucket]
    d["k"] = 1
    assert d["k"] == 1


def test_a_503_of_any_code_is_a_refusal_and_the_write_is_resent(
    stubbed: tuple[BasicS3Dict, Stubber],
) -> None:
    """503 is the server refusing (it did not act): resent, not OutcomeUnknownError."""
    d, stub = stubbed
    stub.add_client_error("put_object", "VendorBusy", http_status_code=503)
    stub.add_response("put_object", {"ETag": '"e3"'})
    d["k"] = 1
    stub.assert_no_pending_responses()


def test_a_non_transient_client_failure_is_not_retried(s3_server: S3Server) -> None:
    """No credentials (botocore's own error, before anything is sent): one attempt."""
    import botocore.session

    from persidict import BackendError

    session = botocore.session.Session()
    session.get_component("credential_provider").providers = []
    client = boto3.Session(botocore_session=session).client(
        "s3", region_name=REGION, endpoint_url=s3_server.endpoint_url)
    calls: list[str] = []
    client.meta.events.register("before-call.s3.*", lambda **kw: calls.append(kw["model"].name))
    with pytest.raises(BackendError, match="NoCredentialsError") as info:
        BasicS3Dict(bucket_name=S3_BUCKET, region=REGION, client=client)
    assert calls == ["HeadBucket"] and "attempts" not in str(info.value)


class _Relay:
    """A TCP relay on a fixed loopback port to the real server, switched on and off:
    while off nothing listens there (connection refused: the request was never sent)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def on(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def off(self) -> None:
        assert self.listener is not None
        with contextlib.suppress(OSError):  # wakes the accept() blocked on it (Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                server = socket.create_connection(self.upstream)
                self.conns += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def test_a_write_refused_a_connection_is_resent(s3_server: S3Server) -> None:
    """Connection refused means never sent: the write is retried, not OutcomeUnknownError."""
    relay = _Relay(s3_server.endpoint_url)
    relay.on()
    d = BasicS3Dict(bucket_name=S3_BUCKET, region=REGION, root_prefix=fresh_prefix(),
                    endpoint_url=f"http://127.0.0.1:{relay.port}")
    d["k"] = 0
    relay.off()
    sleeps: list[float] = []

    def back_on(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            relay.on()

    d.retry_policy = RetryPolicy(max_attempts=3, sleep=back_on)
    try:
        d["k"] = 1
        assert len(sleeps) == 1, "the first attempt was refused, the second went through"
        assert d["k"] == 1
    finally:
        relay.off()
