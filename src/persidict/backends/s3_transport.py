"""S3 requests: the one place where native errors are translated and retried.

Every request of BasicS3Dict goes through :meth:`Transport.call`, which

- translates the outcomes the primitives act on into small internal
  exceptions: a failed precondition (412, 409 ``ConditionalRequestConflict``,
  404 on a conditional write or delete) -> ``PreconditionFailed``; a missing
  object, or bucket (except to a PUT) -> ``NotFound``; 304 on
  ``If-None-Match`` -> ``NotModified``;
- turns every other botocore failure into ``BackendError(..., backend="s3")``
  raised ``from`` the native exception;
- retries only named transient conditions (throttling codes, HTTP 5xx,
  connection errors), at most ``max_attempts`` times and within
  ``max_seconds``, sleeping with the injectable ``sleep`` and ``clock``;
- never resends a write once an attempt may have been applied (its
  connection failed after the request was sent, or a 5xx other than a
  refusal): it raises ``OutcomeUnknownError`` at once. A second copy could
  apply the write twice: after the first one was applied and then undone by
  another writer (the same etag again, a re-created key), or while the
  first is still in flight at the server. Only the caller (BasicS3Dict,
  through the write token) can then prove the outcome.

Serialization never happens in here, so it is never retried. The module also
keeps this process's boto3 clients (:func:`make_client`), fork-safely,
checks bucket names (:func:`check_bucket_name`) and finds or creates a
store's bucket (:func:`ensure_bucket`).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from ..engine.errors import BackendError, OutcomeUnknownError, PreconditionFailed
from ..engine.flags import VALUE_NOT_RETRIEVED

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BACKEND = "s3"

# One client per (endpoint, region, pid): boto3 clients are thread-safe, and
# building one costs far more than a request.
_clients: dict[tuple[str | None, str | None, int], S3Client] = {}
_clients_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _clients_lock
    # A thread that held the lock at fork() does not exist in the child: a
    # fresh lock, or the child's first store waits forever. The parent's
    # clients pool connections shared with the parent: drop them.
    _clients_lock = threading.Lock()
    _clients.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def make_client(endpoint_url: str | None, region: str | None) -> S3Client:
    """This process's boto3 S3 client for an endpoint and region.

    Its own retries are off: Transport retries, bounded and only on named
    transient conditions. Credentials come from boto3's usual chain.
    """
    marker = (endpoint_url, region, os.getpid())
    with _clients_lock:
        client = _clients.get(marker)
        if client is None:
            config = Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint_url else None,
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=32,
            )
            client = boto3.client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
            _clients[marker] = client
        return client


THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "SlowDown", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable",
})
# The request never reached the server: retrying cannot apply a write twice.
NOT_SENT = (EndpointConnectionError, ConnectTimeoutError)
# The request may have been applied before the connection failed.
AMBIGUOUS = (ConnectionClosedError, ReadTimeoutError, ResponseStreamingError, IncompleteReadError)
# Codes by which the server says it refused the request without acting on it.
REFUSED_CODES = THROTTLING_CODES - {"InternalError"}
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
# Any 404 also means "not found" (a HEAD has no body to carry a code). A
# missing bucket holds no key: to a read or a delete, the key is absent.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
# Bucket creation losing to another creator: the bucket exists, fine.
BUCKET_EXISTS_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class NotFound(Exception):
    """Internal: the object does not exist."""


class NotModified(Exception):
    """Internal: ``If-None-Match`` matched (HTTP 304)."""

    def __init__(self, etag: str | None) -> None:
        super().__init__(etag)
        self.etag = etag


def error_code(exc: ClientError) -> str:
    """The S3 error code of a ClientError ('' if none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of a ClientError (0 if unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` names a condition worth retrying."""
    if isinstance(exc, NOT_SENT + AMBIGUOUS):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) in THROTTLING_CODES or http_status(exc) >= 500
    return False


def maybe_applied(exc: BaseException) -> bool:
    """Whether a write that failed with ``exc`` may have been applied anyway.

    True for a connection lost after the request was (maybe) sent, and for a
    5xx other than a refusal (SlowDown, 503...): the server may have acted.
    """
    if isinstance(exc, NOT_SENT):
        return False
    if isinstance(exc, (*AMBIGUOUS, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = http_status(exc)
        return status >= 500 and status != 503 and error_code(exc) not in REFUSED_CODES
    return False


@dataclass
class RetryPolicy:
    """Bounds for retrying transient failures: attempts and wall time."""

    max_attempts: int = 5
    max_seconds: float = 10.0
    base_delay: float = 0.05
    max_delay: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def delay(self, attempt: int) -> float:
        """Jittered exponential back-off before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class Transport:
    """Runs S3 requests for one store with translation and bounded retries."""

    def __init__(self, location: Callable[[str], str], policy: RetryPolicy | None = None) -> None:
        self.location = location
        self.policy = policy if policy is not None else RetryPolicy()

    def call(
        self,
        operation: str,
        fn: Callable[..., Any],
        *,
        key: Any = None,
        object_key: str = "",
        conditional: bool = False,
        writes: bool = False,
        stores: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(**kwargs)`` (one request), retrying transient failures.

        ``conditional`` marks a write or delete with ``If-Match``/``If-None-Match``:
        there a 404 means the precondition failed rather than "not found".
        ``writes`` marks a request that changes the store: once one of its
        attempts may have been applied, it is not resent (OutcomeUnknownError).
        ``stores`` marks a PUT: a missing bucket there is a BackendError (the
        value cannot be stored), not a failed precondition.
        """
        policy = self.policy
        deadline = policy.clock() + policy.max_seconds
        for attempt in range(1, policy.max_attempts + 1):
            try:
                return fn(**kwargs)
            except ClientError as exc:
                self._translate_client_error(exc, operation, key, object_key, conditional,
                                             stores)
                failure: BaseException = exc  # transient
            except (BotoCoreError, OSError) as exc:
                failure = exc
            if writes and maybe_applied(failure):
                raise self.unknown(failure, operation, key, object_key, attempt) from failure
            if not is_transient(failure):
                raise self._backend_error(failure, operation, key, object_key) from failure
            delay = policy.delay(attempt)
            if attempt >= policy.max_attempts or policy.clock() + delay > deadline:
                raise self._backend_error(
                    failure, operation, key, object_key, attempts=attempt
                ) from failure
            policy.sleep(delay)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _translate_client_error(
        self, exc: ClientError, operation: str, key: Any, object_key: str, conditional: bool,
        stores: bool = False,
    ) -> None:
        """Raise the internal outcome or BackendError; return if ``exc`` is transient."""
        code, status = error_code(exc), http_status(exc)
        if stores and code == "NoSuchBucket":
            raise self._backend_error(exc, operation, key, object_key) from exc
        if code in PRECONDITION_CODES or status == 412:
            raise PreconditionFailed from exc  # 409 ConditionalRequestConflict: a writer won
        if code == "304" or status == 304:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            raise NotModified(headers.get("etag")) from exc
        if code in NOT_FOUND_CODES or status == 404:
            if conditional:
                raise PreconditionFailed from exc  # AWS: If-Match on a missing key is 404
            raise NotFound from exc
        if is_transient(exc):
            return
        raise self._backend_error(exc, operation, key, object_key) from exc

    def _backend_error(
        self, exc: BaseException, operation: str, key: Any, object_key: str, attempts: int = 1
    ) -> BackendError:
        return BackendError(
            f"S3 {operation} {self._what(key, object_key)} failed"
            f"{_tries(attempts)}: {_detail(exc)}",
            backend=BACKEND,
            operation=operation,
            key=key,
        )

    def unknown(
        self, exc: BaseException | None, operation: str, key: Any, object_key: str,
        attempts: int = 1,
    ) -> OutcomeUnknownError:
        """The error for a write whose attempt may have been applied."""
        cause = f" (last failure{_tries(attempts)}: {_detail(exc)})" if exc is not None else ""
        return OutcomeUnknownError(
            f"S3 {operation} {self._what(key, object_key)}: an attempt failed after the "
            f"request was sent (connection lost or server error) and nothing on the server "
            f"proves its outcome: the request may or may not have been applied{cause}",
            backend=BACKEND,
            operation=operation,
            key=key,
            value=VALUE_NOT_RETRIEVED,  # nothing known (pop fills in what it removed)
        )

    def _what(self, key: Any, object_key: str) -> str:
        what = f"of key {key.strings!r} " if key is not None and hasattr(key, "strings") else ""
        return f"{what}at {self.location(object_key)}"


def _tries(attempts: int) -> str:
    return f" after {attempts} attempts" if attempts > 1 else ""


def _detail(exc: BaseException) -> str:
    return f"{error_code(exc)}: {exc}" if isinstance(exc, ClientError) else repr(exc)


_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RULES = (
    "S3 bucket names are 3 to 63 characters of lowercase letters, digits, '.' and '-', "
    "begin and end with a letter or digit, have no '..', are not an IP address and do "
    "not start with " + ", ".join(repr(p) for p in _RESERVED_PREFIXES)
    + " (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)"
)


# What botocore itself refuses before sending (no S3 server can accept it).
_SENDABLE_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")


def bucket_name_problem(bucket: str) -> str | None:
    """Why ``bucket`` breaks AWS's naming rules, or None if it follows them."""
    if not 3 <= len(bucket) <= 63:
        return f"it has {len(bucket)} characters"
    if _BUCKET_CHARS.fullmatch(bucket) is None:
        bad = sorted({c for c in bucket if _BUCKET_CHARS.fullmatch(c) is None})
        return f"it contains {''.join(bad)!r}"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return "it does not begin and end with a letter or digit"
    if ".." in bucket:
        return "it contains '..'"
    if _IP_ADDRESS.fullmatch(bucket):
        return "it is an IP address"
    if bucket.startswith(_RESERVED_PREFIXES):
        return "it starts with a reserved prefix"
    return None


def invalid_bucket(bucket: str, refused_by: str) -> ValueError:
    """The error for a bucket name that ``refused_by`` will not take, with the rules."""
    why = bucket_name_problem(bucket) or "the server refused it"
    return ValueError(
        f"bucket_name {bucket!r} is not a valid S3 bucket name ({why}; refused by "
        f"{refused_by}): " + BUCKET_RULES
    )


def check_bucket_name(bucket: str) -> None:
    """Raise ValueError for a name no S3 server can accept, before any request.

    Only what botocore would refuse client-side is refused here: other S3
    implementations (moto, MinIO, buckets made before 2018 in us-east-1)
    accept names AWS now rejects, such as the reference's default
    ``my_bucket``. A server's own ``InvalidBucketName`` is turned into the
    same message by :func:`ensure_bucket`.
    """
    if _SENDABLE_BUCKET.fullmatch(bucket) is None:
        raise invalid_bucket(bucket, "every S3 client")


def ensure_bucket(
    transport: Transport, client: S3Client, bucket: str, region: str | None
) -> None:
    """Create ``bucket`` unless a ``head_bucket`` finds it (one request if it exists).

    The location constraint is the effective region (``region``, else the
    client's), none for us-east-1. A 403 on the HEAD is accepted: credentials
    limited to objects may not HEAD a bucket, and then it is assumed to exist.
    """
    try:
        transport.call("head_bucket", client.head_bucket, Bucket=bucket)
        return
    except NotFound:
        pass
    except BackendError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and http_status(cause) == 403:
            return
        if _refuses_name(cause) and bucket_name_problem(bucket) is not None:
            raise invalid_bucket(bucket, "the server") from exc
        raise
    effective = region if region is not None else client.meta.region_name
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if effective and effective != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": effective}
    try:
        transport.call("create_bucket", client.create_bucket, **kwargs)
    except BackendError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and error_code(cause) == "InvalidBucketName":
            raise invalid_bucket(bucket, "the server") from exc
        if not (isinstance(cause, ClientError) and error_code(cause) in BUCKET_EXISTS_CODES):
            raise


def _refuses_name(cause: BaseException | None) -> bool:
    """Whether a HEAD's error is the server refusing the bucket name (400, no body on HEAD)."""
    if not isinstance(cause, ClientError):
        return False
    return error_code(cause) == "InvalidBucketName" or http_status(cause) == 400
