"""S3Bytes: the ByteStore of BasicS3Dict, one S3 object per key.

Every operation is one S3 request on the common path, and the conditional
ones use the server's native preconditions (see BasicS3Dict). Native errors
are translated and retried in ``s3_transport.Transport``.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

from ..engine.contract import ABSENT, Blob, ByteStore, IfMatch, Listed
from ..engine.errors import (
    BackendError,
    ConcurrencyConflictError,
    OutcomeUnknownError,
    PreconditionFailed,
)
from ..engine.flags import ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple, is_safe_component, trusted_key
from .s3_transport import NotFound, NotModified, Transport, make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The user-metadata entry (boto3 lowercases the names) holding each write's token.
WRITE_TOKEN = "persidict-write"


def write_token() -> str:
    """A token unique to one write: proves later that the current object is it."""
    return secrets.token_hex(16)


_SEGMENT_MAX = 255
_KEY_MAX = 1024
_MAX_PAGES = 10**7  # 10**10 objects: a guard against a server that never ends a listing
_DELETE_ROUNDS = 16  # HEAD + DELETE If-Match rounds lost to writers before giving up


class S3Bytes(ByteStore):
    """Keys as objects ``<root_prefix>a/b<suffix>`` of one bucket."""

    name = "s3"

    def __init__(
        self, *, bucket_name: str, root_prefix: str, suffix: str, endpoint_url: str | None,
        region: str | None, client: S3Client | None,
    ) -> None:
        self.bucket_name = bucket_name
        self.root_prefix = root_prefix
        self.suffix = suffix
        self.endpoint_url = endpoint_url
        self.region = region
        self.injected = client is not None
        self._client_pid = os.getpid()
        self._client: S3Client = client if client is not None else make_client(
            endpoint_url, region
        )
        self.transport = Transport(self.location_of)

    @property
    def client(self) -> S3Client:
        """The boto3 client (rebuilt after a fork; an injected one is refused there).

        Connections of a pool inherited through fork() are shared with the
        parent: each process could read the other's replies (wrong values).
        """
        if self._client_pid != os.getpid():
            if self.injected:
                raise BackendError(
                    f"s3://{self.bucket_name}/{self.root_prefix}: the boto3 client given to "
                    f"this store belongs to process {self._client_pid}; after fork() its "
                    f"pooled connections are shared with that process, whose replies this "
                    f"one could read: give the store a client built in this process",
                    backend="s3", operation="client",
                )
            self._client = make_client(self.endpoint_url, self.region)
            self._client_pid = os.getpid()
        return self._client

    def location_of(self, object_key: str) -> str:
        """``s3://<bucket>/<object_key>``."""
        return f"s3://{self.bucket_name}/{object_key}"

    def location(self, key: NonEmptySafeStrTuple) -> str:
        # docstring inherited
        return self.location_of(self.object_key(key))

    def object_key(self, key: NonEmptySafeStrTuple) -> str:
        """The object name of ``key``; ValueError (before any request) if too long.

        S3 allows 1024 bytes per object key; the limit of 255 bytes per
        ``/``-separated segment is that of file names, which S3-compatible
        servers backed by file systems (SeaweedFS among them) enforce.
        """
        segments = [*key.strings[:-1], key.strings[-1] + self.suffix]
        for original, seg in zip(key.strings, segments, strict=True):
            if len(seg.encode("utf-8")) > _SEGMENT_MAX:
                raise ValueError(
                    f"key component {original[:40]!r}... is too long: its object name "
                    f"segment {seg[:40]!r}... exceeds {_SEGMENT_MAX} bytes"
                )
        name = self.root_prefix + "/".join(segments)
        if len(name.encode("utf-8")) > _KEY_MAX:
            raise ValueError(
                f"key {key.strings!r} is too long: object name {name[:60]!r}... "
                f"exceeds S3's {_KEY_MAX} bytes"
            )
        return name

    def key_of(self, object_key: str) -> NonEmptySafeStrTuple | None:
        """The key an object name stands for, or None if it is not one of ours."""
        if not object_key.startswith(self.root_prefix) or not object_key.endswith(self.suffix):
            return None
        parts = object_key[len(self.root_prefix) : -len(self.suffix)].split("/")
        for p in parts:
            if not is_safe_component(p):
                return None
        return trusted_key(tuple(parts))

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited
        ok = self.object_key(key)
        try:
            if not body:
                return Blob(ETagValue(self._head(key, ok)["ETag"]), None)
            kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Key": ok}
            if if_none_match is not None:
                kwargs["IfNoneMatch"] = if_none_match
            response, data = self.transport.call("get_object", self._get_object, key=key,
                                                 object_key=ok, **kwargs)
        except NotFound:
            return Blob(ABSENT, None)
        except NotModified as nm:
            return Blob(ETagValue(nm.etag or if_none_match or ""), None)
        return Blob(ETagValue(response["ETag"]), data)

    def _head(self, key: NonEmptySafeStrTuple, ok: str) -> Any:
        """HEAD the object ``ok`` of ``key``: its metadata, or NotFound."""
        return self.transport.call("head_object", self.client.head_object, key=key,
                                   object_key=ok, Bucket=self.bucket_name, Key=ok)

    def _get_object(self, **kwargs: Any) -> tuple[Any, bytes]:
        """GET and read the whole body: one retried unit (a broken stream re-GETs)."""
        response = self.client.get_object(**kwargs)
        body = response["Body"]
        try:
            return response, body.read()
        finally:
            body.close()

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch) -> ETagValue:
        # docstring inherited
        ok = self.object_key(key)
        token = write_token()
        kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Key": ok, "Body": data,
                                  "Metadata": {WRITE_TOKEN: token}}
        if isinstance(if_match, ItemNotAvailableFlag):
            kwargs["IfNoneMatch"] = "*"
        elif if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            response = self.transport.call("put_object", self.client.put_object, key=key,
                                            object_key=ok, conditional=if_match is not None,
                                            writes=True, stores=True, **kwargs)
        except OutcomeUnknownError as exc:
            # An attempt may have been applied (and was not resent): only the
            # token can tell.
            return self._prove_own_write(key, ok, token, exc)
        return ETagValue(response["ETag"])

    def _prove_own_write(
        self, key: NonEmptySafeStrTuple, ok: str, token: str, failure: OutcomeUnknownError
    ) -> ETagValue:
        """The current etag if the current object holds ``token``; else ``failure``.

        Equal bytes prove nothing (another writer may store the same value);
        a token that is not ours does not prove that ours was never applied
        (it may have been overwritten, or still be in flight).
        """
        try:
            head = self._head(key, ok)
        except (NotFound, BackendError):
            head = None
        if head is not None and head.get("Metadata", {}).get(WRITE_TOKEN) == token:
            return ETagValue(head["ETag"])
        raise failure

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited. Every delete is one conditional DELETE, so that
        # whether the key existed is decided atomically by the server (a
        # plain S3 DELETE answers 204 either way). A delete that may have been
        # applied raises OutcomeUnknownError: a deleted object keeps no token.
        ok = self.object_key(key)
        if if_match is not None:
            self._delete(key, ok, if_match)
            return True
        try:
            self._delete(key, ok, "*", conditional=False)
        except NotFound:  # 404 (AWS, moto): absent
            return False
        except PreconditionFailed:
            # 412: absent, or present on a server that takes If-Match: *
            # literally (moto 5). Delete whatever is current by its etag.
            return self._remove_current(key, ok)
        return True

    def _remove_current(self, key: NonEmptySafeStrTuple, ok: str) -> bool:
        """Delete ``key`` by its current etag; False if a HEAD finds it absent.

        Each round is one atomic conditional delete; its 412 means the key
        changed (or went) after the HEAD, and the next round looks again.
        """
        for _ in range(_DELETE_ROUNDS):
            etag = self.read(key, body=False).etag
            if isinstance(etag, ItemNotAvailableFlag):
                return False
            try:
                self._delete(key, ok, etag)
            except PreconditionFailed:
                continue
            return True
        raise ConcurrencyConflictError(key, _DELETE_ROUNDS)

    def _delete(
        self, key: NonEmptySafeStrTuple, ok: str, if_match: str, *, conditional: bool = True
    ) -> None:
        """``DELETE If-Match: if_match``, never resent once it may have been applied."""
        self.transport.call("delete_object", self.client.delete_object, key=key,
                             object_key=ok, conditional=conditional, writes=True,
                             Bucket=self.bucket_name, Key=ok, IfMatch=if_match)

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        ok = self.object_key(key)
        try:
            head = self._head(key, ok)
        except NotFound:
            raise KeyError(key) from None
        return float(head["LastModified"].timestamp())

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        # docstring inherited; streamed page by page.
        token: str | None = None
        for _ in range(_MAX_PAGES):
            kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": self.root_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self.transport.call("list_objects_v2", self.client.list_objects_v2,
                                            object_key=self.root_prefix, **kwargs)
            except NotFound:
                return
            for obj in page.get("Contents", ()):
                k = self.key_of(obj["Key"])
                if k is not None:
                    ts = float(obj["LastModified"].timestamp()) if with_timestamps else None
                    yield k, ts
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
