"""BasicS3Dict: one S3 object per key, atomic through native conditional headers."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..engine.contract import Version, sorted_params
from ..engine.errors import (
    BackendError,
    ConcurrencyConflictError,
    OutcomeUnknownError,
    PreconditionFailed,
)
from ..engine.flags import (
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    ETagValue,
    ItemNotAvailableFlag,
)
from ..engine.keys import _SAFE_RE, NonEmptySafeStrTuple, to_prefix
from ..engine.persidict import PersiDict
from .s3_transport import (
    NotFound,
    NotModified,
    RetryPolicy,
    Transport,
    check_bucket_name,
    ensure_bucket,
    make_client,
)

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


class BasicS3Dict(PersiDict[Any]):
    """A persistent dict storing each value as one S3 object.

    Key ``("a", "b")`` is the object ``<root_prefix>a/b.<serialization_format>``
    in ``bucket_name``: plain key components, no digest suffixes (S3 keys are
    case-sensitive, so keys differing only by case never collide). Values use
    the same codecs as FileDirDict; etags are S3's native ETags.

    Atomicity: every primitive is one S3 request, and the conditional ones
    use the server's native preconditions, so every ``*_if`` operation,
    transform_item, setdefault, pop and popitem is linearizable across
    threads, processes and machines, provided the server honours them:
    insert-if-absent is ``PUT If-None-Match: *``, compare-and-swap is
    ``PUT If-Match``, conditional delete is ``DELETE If-Match``, and an
    unchanged read is ``GET If-None-Match`` (304, no body). A plain delete is
    ``DELETE If-Match: *`` so that whether the key existed is reported
    atomically (404: it did not). Its 412 means "absent" to servers that
    honour ``*`` and "present" to those that compare it literally (moto 5):
    a HEAD then finds the current etag and ``DELETE If-Match: <etag>``
    deletes exactly that (412 again: changed meanwhile, look again). A plain
    write is a plain ``PUT``; readers see a whole old or new object.

    Lost replies: a write whose attempt may have been applied is never resent
    (a second copy could apply it twice). Every PUT carries a token of its
    own in the object's user metadata: if the current object holds it, the
    write is proven (success); otherwise, and for such deletes,
    OutcomeUnknownError.

    Locked: nothing; the server serializes conditional requests on a key.
    Not atomic: listing (``len``, iteration, ``clear``, timestamps of many
    keys) is a paginated ``ListObjectsV2`` and sees a moving bucket.
    Not probed: the server's support for conditional requests is assumed,
    never tested by writing into the user's bucket.
    Construction (get_subdict and unpickling included) sends one
    ``head_bucket`` and creates a missing bucket: nothing is remembered per
    process, so a bucket deleted since (or a test mock reset) is found again.

    Parameters
    ----------
    bucket_name : str, default "my_bucket"
        The bucket. A name no S3 client can send is refused before any
        request; one the server refuses (AWS's rules; the default
        ``my_bucket`` breaks them, moto and MinIO take it) fails at
        construction with the same message.
    region : str or None, default None
        The AWS region; None uses boto3's configuration.
    root_prefix : str, default ""
        Prefix of every object name (a ``/`` is appended if missing).
    serialization_format : str, default "pkl"
        ``"pkl"``, ``"json"`` or a text format; also the object suffix.
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    base_class_for_values : type or None, default None
        If given, every value must be an instance of it.
    endpoint_url : str or None, default None
        An S3-compatible server (MinIO, SeaweedFS...); None for AWS.
    client : S3Client or None, default None
        A boto3 client to use instead of building one (not a parameter of
        ``get_params``; refused in a forked child).

    Raises
    ------
    ValueError
        ``bucket_name`` is empty, cannot be sent, or the server refuses it
        (the message names the bucket, why, and S3's rules), or ``serialization_format`` is
        invalid.
    TypeError
        ``root_prefix``, ``region`` or ``endpoint_url`` is not a str.
    BackendError
        The bucket can neither be found nor created.
    """

    _backend_name = "s3"

    def __init__(
        self,
        *,
        bucket_name: str = "my_bucket",
        region: str | None = None,
        root_prefix: str = "",
        serialization_format: str = "pkl",
        append_only: bool = False,
        base_class_for_values: type | None = None,
        endpoint_url: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        super().__init__(
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            serialization_format=serialization_format,
        )
        if not isinstance(bucket_name, str) or not bucket_name:
            raise ValueError(f"bucket_name must be a non-empty str, got {bucket_name!r}")
        check_bucket_name(bucket_name)
        if not isinstance(root_prefix, str):
            raise TypeError(f"root_prefix must be a str, got {type(root_prefix).__name__}")
        for name, v in (("region", region), ("endpoint_url", endpoint_url)):
            if v is not None and not isinstance(v, str):
                raise TypeError(f"{name} must be a str or None, got {type(v).__name__}")
        if root_prefix and not root_prefix.endswith("/"):
            root_prefix += "/"
        self.bucket_name = bucket_name
        self.region = region
        self.root_prefix = root_prefix
        self.endpoint_url = endpoint_url
        self._suffix = "." + serialization_format
        self._injected = client is not None
        self._client_pid = os.getpid()
        self._client: S3Client = client if client is not None else make_client(
            endpoint_url, region
        )
        self._transport = Transport(self._location)
        ensure_bucket(self._transport, self._client, bucket_name, region)

    # -- configuration ------------------------------------------------------

    @property
    def client(self) -> S3Client:
        """The boto3 client (rebuilt after a fork; an injected one is refused there).

        Connections of a pool inherited through fork() are shared with the
        parent: each process could read the other's replies (wrong values).
        """
        if self._client_pid != os.getpid():
            if self._injected:
                raise BackendError(
                    f"{self.base_url}: the boto3 client given to this store belongs to "
                    f"process {self._client_pid}; after fork() its pooled connections are "
                    f"shared with that process, whose replies this one could read: give "
                    f"the store a client built in this process",
                    backend="s3", operation="client",
                )
            self._client = make_client(self.endpoint_url, self.region)
            self._client_pid = os.getpid()
        return self._client

    @property
    def s3_client(self) -> S3Client:
        """The boto3 client: the same object as `client`."""
        return self.client

    @property
    def retry_policy(self) -> RetryPolicy:
        """Bounds of the retries of transient failures (tests inject sleep/clock)."""
        return self._transport.policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._transport.policy = policy

    @property
    def base_url(self) -> str:
        """``s3://<bucket>/<root_prefix>``."""
        return f"s3://{self.bucket_name}/{self.root_prefix}"

    def get_params(self) -> dict[str, Any]:
        # docstring inherited; the client is not a parameter: it is rebuilt
        # from endpoint_url and region (a client cannot be pickled).
        params = super().get_params()
        params.update(
            bucket_name=self.bucket_name,
            region=self.region,
            root_prefix=self.root_prefix,
            endpoint_url=self.endpoint_url,
        )
        return sorted_params(params)

    def _location(self, object_key: str) -> str:
        return f"s3://{self.bucket_name}/{object_key}"

    # -- keys ---------------------------------------------------------------

    def _object_key(self, key: NonEmptySafeStrTuple) -> str:
        """The object name of ``key``; ValueError (before any request) if too long.

        S3 allows 1024 bytes per object key; the limit of 255 bytes per
        ``/``-separated segment is that of file names, which S3-compatible
        servers backed by file systems (SeaweedFS among them) enforce.
        """
        segments = [*key.strings[:-1], key.strings[-1] + self._suffix]
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

    def _key_of(self, object_key: str) -> NonEmptySafeStrTuple | None:
        """The key an object name stands for, or None if it is not one of ours."""
        if not object_key.startswith(self.root_prefix) or not object_key.endswith(self._suffix):
            return None
        parts = object_key[len(self.root_prefix) : -len(self._suffix)].split("/")
        for p in parts:
            if p in ("", ".", "..") or _SAFE_RE.fullmatch(p) is None:
                return None
        return NonEmptySafeStrTuple._trusted(tuple(parts))  # type: ignore[no-any-return]

    # -- primitives ---------------------------------------------------------

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        # docstring inherited
        ok = self._object_key(key)
        call = self._transport.call
        try:
            if not retrieve:
                head = call("head_object", self.client.head_object, key=key, object_key=ok,
                            Bucket=self.bucket_name, Key=ok)
                return Version(ETagValue(head["ETag"]), VALUE_NOT_RETRIEVED)
            kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Key": ok}
            if if_none_match is not None:
                kwargs["IfNoneMatch"] = if_none_match
            response, data = call("get_object", self._get_object, key=key, object_key=ok,
                                  **kwargs)
        except NotFound:
            return Version(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
        except NotModified as nm:
            return Version(ETagValue(nm.etag or if_none_match or ""), VALUE_NOT_RETRIEVED)
        return Version(ETagValue(response["ETag"]), self._decode(key, data, self._location(ok)))

    def _get_object(self, **kwargs: Any) -> tuple[Any, bytes]:
        """GET and read the whole body: one retried unit (a broken stream re-GETs)."""
        response = self.client.get_object(**kwargs)
        body = response["Body"]
        try:
            return response, body.read()
        finally:
            body.close()

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        # docstring inherited
        data = self._encode(key, value)  # outside the retried request, never retried
        ok = self._object_key(key)
        token = write_token()
        kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Key": ok, "Body": data,
                                  "Metadata": {WRITE_TOKEN: token}}
        if isinstance(if_match, ItemNotAvailableFlag):
            kwargs["IfNoneMatch"] = "*"
        elif if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            response = self._transport.call("put_object", self.client.put_object, key=key,
                                            object_key=ok, conditional=if_match is not None,
                                            writes=True, stores=True, **kwargs)
        except OutcomeUnknownError as exc:
            # An attempt may have been applied (and was not resent): only the
            # token can tell.
            return self._prove_own_write(key, ok, token, exc)
        return ETagValue(response["ETag"]) if want_etag else None

    def _prove_own_write(
        self, key: NonEmptySafeStrTuple, ok: str, token: str, failure: OutcomeUnknownError
    ) -> ETagValue:
        """The current etag if the current object holds ``token``; else ``failure``.

        Equal bytes prove nothing (another writer may store the same value);
        a token that is not ours does not prove that ours was never applied
        (it may have been overwritten, or still be in flight).
        """
        try:
            head = self._transport.call("head_object", self.client.head_object, key=key,
                                        object_key=ok, Bucket=self.bucket_name, Key=ok)
        except (NotFound, BackendError):
            head = None
        if head is not None and head.get("Metadata", {}).get(WRITE_TOKEN) == token:
            return ETagValue(head["ETag"])
        raise failure

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited. Every delete is one conditional DELETE, so that
        # whether the key existed is decided atomically by the server (a
        # plain S3 DELETE answers 204 either way). A delete that may have been
        # applied raises OutcomeUnknownError: a deleted object keeps no token.
        ok = self._object_key(key)
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
            etag = self._get(key, retrieve=False).etag
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
        self._transport.call("delete_object", self.client.delete_object, key=key,
                             object_key=ok, conditional=conditional, writes=True,
                             Bucket=self.bucket_name, Key=ok, IfMatch=if_match)

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        ok = self._object_key(key)
        try:
            head = self._transport.call("head_object", self.client.head_object, key=key,
                                        object_key=ok, Bucket=self.bucket_name, Key=ok)
        except NotFound:
            raise KeyError(key) from None
        return float(head["LastModified"].timestamp())

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        # docstring inherited; streamed page by page.
        token: str | None = None
        for _ in range(_MAX_PAGES):
            kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": self.root_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._transport.call("list_objects_v2", self.client.list_objects_v2,
                                            object_key=self.root_prefix, **kwargs)
            except NotFound:
                return
            for obj in page.get("Contents", ()):
                k = self._key_of(obj["Key"])
                if k is not None:
                    ts = float(obj["LastModified"].timestamp()) if with_timestamps else None
                    yield k, ts
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def get_subdict(self, prefix_key: Any) -> BasicS3Dict:
        """Return a BasicS3Dict whose root_prefix extends this one by ``prefix_key``.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        BasicS3Dict
            Sharing this store's retry policy, and its client if one was given.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        BackendError
            The bucket's ``head_bucket`` failed.
        """
        prefix = to_prefix(prefix_key)
        params = self.get_params()
        if prefix:
            params["root_prefix"] = self.root_prefix + "/".join(prefix.strings) + "/"
        child = BasicS3Dict(**params, client=self.client if self._injected else None)
        child._injected = self._injected
        child.retry_policy = self.retry_policy
        return child
