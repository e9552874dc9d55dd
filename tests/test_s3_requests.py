"""BasicS3Dict sends ONE request per operation on the common path (real server).

Requests are counted with a botocore ``before-send`` hook on an injected
client, so what is counted is what goes on the wire (including retries).
"""

from __future__ import annotations

from typing import Any

import pytest

from _s3_plugin import BUCKET, fresh_prefix
from persidict import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    BasicS3Dict,
    S3Dict,
)
from s3_server import REGION, S3Server


class Wire:
    """Records (method, headers) of every HTTP request a client sends."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v)
                   for k, v in request.headers.items()}
        self.sent.append((request.method, headers))

    def take(self) -> list[tuple[str, dict[str, str]]]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def wired(s3_server: S3Server) -> tuple[BasicS3Dict, Wire]:
    client = s3_server.client()
    store = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                        endpoint_url=s3_server.endpoint_url, client=client)
    wire = Wire(client)
    return store, wire


def one(wire: Wire, method: str, **headers: str) -> None:
    sent = wire.take()
    assert len(sent) == 1, sent
    assert sent[0][0] == method
    for name, value in headers.items():
        assert sent[0][1].get(name.replace("_", "-")) == value, sent[0][1]


def test_set_item_if_same_etag_is_one_conditional_put(wired: tuple[BasicS3Dict, Wire]) -> None:
    d, wire = wired
    d["k"] = 1
    etag = d.etag("k")
    wire.take()
    r = d.set_item_if("k", value=2, condition=ETAG_IS_THE_SAME, expected_etag=etag)
    assert r.condition_was_satisfied and r.new_value == 2
    one(wire, "PUT", if_match=etag)
    # a stale etag: the conditional PUT fails (412), then one read reports why
    r = d.set_item_if("k", value=3, condition=ETAG_IS_THE_SAME, expected_etag=etag)
    assert not r.condition_was_satisfied and r.new_value == 2
    assert [m for m, _ in wire.take()] == ["PUT", "GET"]
    assert d["k"] == 2


def test_setdefault_if_absent_is_one_put_if_none_match(wired: tuple[BasicS3Dict, Wire]) -> None:
    d, wire = wired
    r = d.setdefault_if("k", default_value=5, condition=ANY_ETAG,
                        expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied and r.new_value == 5
    one(wire, "PUT", if_none_match="*")
    d.setdefault("k2", 7)
    one(wire, "PUT", if_none_match="*")


def test_discard_if_same_etag_is_one_conditional_delete(wired: tuple[BasicS3Dict, Wire]) -> None:
    d, wire = wired
    d["k"] = 1
    etag = d.etag("k")
    wire.take()
    r = d.discard_if("k", condition=ETAG_IS_THE_SAME, expected_etag=etag)
    assert r.condition_was_satisfied and "k" not in d
    wire.sent = wire.sent[:1]  # drop the HEAD of the membership check above
    one(wire, "DELETE", if_match=etag)


def test_get_item_if_unchanged_is_one_304(wired: tuple[BasicS3Dict, Wire]) -> None:
    d, wire = wired
    d["k"] = {"big": "x" * 1000}
    etag = d.etag("k")
    wire.take()
    r = d.get_item_if("k", condition=ETAG_IS_THE_SAME, expected_etag=etag,
                      retrieve_value=IF_ETAG_CHANGED)
    assert r.condition_was_satisfied and r.new_value is VALUE_NOT_RETRIEVED
    assert r.actual_etag == etag
    one(wire, "GET", if_none_match=etag)
    r = d.get_item_if("k", condition=ETAG_IS_THE_SAME, expected_etag=etag,
                      retrieve_value=ALWAYS_RETRIEVE)
    assert r.new_value == {"big": "x" * 1000}
    one(wire, "GET")


def test_plain_operations_are_one_request(wired: tuple[BasicS3Dict, Wire]) -> None:
    d, wire = wired
    d["k"] = 1
    one(wire, "PUT")
    assert d["k"] == 1
    one(wire, "GET")
    assert "k" in d
    one(wire, "HEAD")
    assert d.etag("k")
    one(wire, "HEAD")
    assert d.discard("k") is True
    one(wire, "DELETE", if_match="*")
    # SeaweedFS answers 412 to If-Match: * on an absent key, which a server
    # taking * literally (moto 5) sends for a present one: a HEAD decides.
    assert d.discard("k") is False
    assert [m for m, _ in wire.take()] == ["DELETE", "HEAD"]
    d["k"] = 1
    wire.take()
    del d["k"]
    one(wire, "DELETE")
    with pytest.raises(KeyError):
        del d["k"]
    assert [m for m, _ in wire.take()] == ["DELETE", "HEAD"]


def test_transform_item_uncontended_is_get_plus_put(wired: tuple[BasicS3Dict, Wire]) -> None:
    d, wire = wired
    d["n"] = 1
    wire.take()
    d.transform_item("n", transformer=lambda v: v + 1)
    sent = wire.take()
    assert [m for m, _ in sent] == ["GET", "PUT"]
    assert sent[1][1].get("if-match")
    d.transform_item("new", transformer=lambda v: 0)
    sent = wire.take()
    assert [m for m, _ in sent] == ["GET", "PUT"]
    assert sent[1][1].get("if-none-match") == "*"


def test_cached_read_of_unchanged_value_is_one_304(s3_server: S3Server, tmp_path: Any) -> None:
    client = s3_server.client()
    d = S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
               base_dir=str(tmp_path), endpoint_url=s3_server.endpoint_url, client=client)
    d["k"] = list(range(100))
    wire = Wire(client)
    assert d["k"] == list(range(100))
    sent = wire.take()
    assert len(sent) == 1 and sent[0][0] == "GET" and sent[0][1].get("if-none-match")
