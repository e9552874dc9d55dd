"""S3 requests: the one place where native errors are translated and retried.

Every request of BasicS3Dict goes through :meth:`Transport.call`, which

- translates the outcomes the primitives act on into small internal
  exceptions: a failed precondition (412, 409 ``ConditionalRequestConflict``,
  404 on a conditional write or delete) -> ``PreconditionFailed``; a missing
  object -> ``NotFound``; 304 on ``If-None-Match`` -> ``NotModified``;
- turns every other botocore failure into ``BackendError(..., backend="s3")``
  raised ``from`` the native exception;
- retries only named transient conditions (throttling codes, HTTP 5xx,
  connection errors), at most ``max_attempts`` times and within
  ``max_seconds``, sleeping with the injectable ``sleep`` and ``clock``.

Serialization never happens in here, so it is never retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from ..engine.errors import BackendError, PreconditionFailed

BACKEND = "s3"

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
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class AmbiguousPreconditionFailed(PreconditionFailed):
    """Internal: a precondition failed on a retry after an attempt that may
    have been applied (a timeout or 5xx after the request was sent)."""


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
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(**kwargs)`` (one request), retrying transient failures.

        ``conditional`` marks a write or delete with ``If-Match``/``If-None-Match``:
        there a 404 means the precondition failed rather than "not found".
        """
        policy = self.policy
        deadline = policy.clock() + policy.max_seconds
        ambiguous = False
        for attempt in range(1, policy.max_attempts + 1):
            try:
                return fn(**kwargs)
            except ClientError as exc:
                try:
                    self._translate_client_error(exc, operation, key, object_key, conditional)
                except PreconditionFailed as failed:
                    if ambiguous:
                        raise AmbiguousPreconditionFailed from failed.__cause__
                    raise
                failure: BaseException = exc
            except (BotoCoreError, OSError) as exc:
                if not is_transient(exc):
                    raise self._backend_error(exc, operation, key, object_key) from exc
                failure = exc
            if isinstance(failure, AMBIGUOUS) or (
                isinstance(failure, ClientError) and http_status(failure) >= 500
            ):
                ambiguous = True
            delay = policy.delay(attempt)
            if attempt >= policy.max_attempts or policy.clock() + delay > deadline:
                raise self._backend_error(
                    failure, operation, key, object_key, attempts=attempt
                ) from failure
            policy.sleep(delay)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _translate_client_error(
        self, exc: ClientError, operation: str, key: Any, object_key: str, conditional: bool
    ) -> None:
        """Raise the internal outcome or BackendError; return if ``exc`` is transient."""
        code, status = error_code(exc), http_status(exc)
        if code in PRECONDITION_CODES or status == 412:
            raise PreconditionFailed from exc  # 409 ConditionalRequestConflict: a writer won
        if code == "304" or status == 304:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            raise NotModified(headers.get("etag")) from exc
        if code in NOT_FOUND_CODES:
            if conditional:
                raise PreconditionFailed from exc  # AWS: If-Match on a missing key is 404
            raise NotFound from exc
        if is_transient(exc):
            return
        raise self._backend_error(exc, operation, key, object_key) from exc

    def _backend_error(
        self, exc: BaseException, operation: str, key: Any, object_key: str, attempts: int = 1
    ) -> BackendError:
        where = self.location(object_key)
        what = f"key {key.strings!r} " if key is not None and hasattr(key, "strings") else ""
        detail = f"{error_code(exc)}: {exc}" if isinstance(exc, ClientError) else repr(exc)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return BackendError(
            f"S3 {operation} of {what}at {where} failed{tries}: {detail}",
            backend=BACKEND,
            operation=operation,
            key=key,
        )
