"""The error hierarchy. Every error pickles (errors cross process boundaries).

``PersiDictError`` is the root. Each error also subclasses the builtin a
caller would catch: BackendError and ConcurrencyConflictError are
RuntimeErrors, MutationPolicyError a TypeError, LockTimeoutError a
TimeoutError; an OSError a backend maps stays that OSError subclass too
(``StorageOSError.mapping``).
"""

from __future__ import annotations

from typing import Any


class PersiDictError(Exception):
    """The base of every error persidict raises on its own account."""


class BackendError(PersiDictError, RuntimeError):
    """A backend/infrastructure condition prevents completion.

    Always raised with chaining (``raise BackendError(...) from exc``): the
    native error (an ``OSError``, a botocore ``ClientError``...) is its
    ``__cause__``. A corrupt stored value is reported as one too.

    Parameters
    ----------
    message : str
        What failed, naming the key and its path or object.
    backend : str
        ``"file"``, ``"s3"``, ``"memory"``...
    operation : str
        The failing operation (``"put_object"``, ``"decode"``...).
    key : object, optional
        The key concerned, if any.
    """

    def __init__(self, message: str, *, backend: str, operation: str, key: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.operation = operation
        self.key = key

    def __reduce__(self) -> Any:
        args = (type(self), self.message, self.backend, self.operation, self.key)
        return (_rebuild_backend_error, args)


def _rebuild_backend_error(
    cls: type[BackendError], message: str, backend: str, operation: str, key: Any
) -> BackendError:
    return cls(message, backend=backend, operation=operation, key=key)


class OutcomeUnknownError(BackendError):
    """A mutation may or may not have taken effect, and the store cannot tell.

    Raised when a request was sent, its reply was lost, and nothing on the
    server proves whether it was applied: the caller must not assume either
    outcome. ``value`` carries what is known (for ``pop``, the value it was
    removing; ``VALUE_NOT_RETRIEVED`` when nothing is known).

    Parameters
    ----------
    message : str
        What was attempted and why its outcome is unknown.
    backend : str
        The backend name (``"s3"``).
    operation : str
        The request whose reply was lost.
    key : object, optional
        The key concerned.
    value : object, optional
        What is known of the value (see above).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        operation: str,
        key: Any = None,
        value: Any = None,
    ) -> None:
        super().__init__(message, backend=backend, operation=operation, key=key)
        self.value = value

    def __reduce__(self) -> Any:
        return (
            _rebuild_outcome_unknown,
            (self.message, self.backend, self.operation, self.key, self.value),
        )


def _rebuild_outcome_unknown(
    message: str, backend: str, operation: str, key: Any, value: Any
) -> OutcomeUnknownError:
    return OutcomeUnknownError(message, backend=backend, operation=operation, key=key, value=value)


class StorageOSError(BackendError, OSError):
    """An OSError of a backend, mapped at its boundary: key, path and operation.

    Raised as ``mapping(type(exc))``, a class that is also the original
    OSError subclass (PermissionError, ...), with its ``errno``, so callers
    catching either keep working.
    """

    def __init__(
        self, message: str, *, backend: str, operation: str, key: Any = None,
        path: str | None = None, errno: int | None = None,
    ) -> None:
        super().__init__(message, backend=backend, operation=operation, key=key)
        self.errno = errno
        self.filename = path
        self.path = path
        self.strerror = message

    def __str__(self) -> str:
        return self.message

    @staticmethod
    def mapping(os_error: type[OSError]) -> type[StorageOSError]:
        """The StorageOSError class that is also ``os_error``."""
        return _mapped_class(os_error)

    def __reduce__(self) -> Any:
        os_error = next(
            c for c in type(self).__mro__
            if issubclass(c, OSError) and not issubclass(c, PersiDictError)
        )
        state = (self.message, self.backend, self.operation, self.key, self.path, self.errno)
        return (_rebuild_storage_error, (os_error, *state))


_MAPPED: dict[type[OSError], type[StorageOSError]] = {}


def _mapped_class(os_error: type[OSError]) -> type[StorageOSError]:
    cls = _MAPPED.get(os_error)
    if cls is None:
        if issubclass(os_error, PersiDictError):
            raise TypeError(f"{os_error.__name__} is already a persidict error")
        if os_error is OSError:
            cls = StorageOSError
        else:
            cls = type(f"Storage{os_error.__name__}", (StorageOSError, os_error), {})
        _MAPPED[os_error] = cls  # one class per OSError type: isinstance and pickle agree
    return cls


def _rebuild_storage_error(
    os_error: type[OSError], message: str, backend: str, operation: str, key: Any,
    path: str | None, errno: int | None,
) -> StorageOSError:
    return _mapped_class(os_error)(
        message, backend=backend, operation=operation, key=key, path=path, errno=errno
    )


class ConcurrencyConflictError(PersiDictError, RuntimeError):
    """An operation gave up after its retries lost to concurrent writers.

    Nothing was written by the call that raises it. Retrying later is safe.

    Parameters
    ----------
    key : object
        The key contended for.
    attempts : int
        How many commits were lost.
    """

    def __init__(self, key: Any, attempts: int) -> None:
        super().__init__(
            f"key {key!r}: gave up after {attempts} attempts lost to concurrent modifications"
        )
        self.key = key
        self.attempts = attempts

    def __reduce__(self) -> Any:
        return (type(self), (self.key, self.attempts))


class MutationPolicyError(PersiDictError, TypeError):
    """The store's mutation policy (e.g. append-only) forbids this mutation.

    A ``TypeError``, as the reference raises. Nothing was written.

    Parameters
    ----------
    policy : str
        The policy that refused it: ``"append-only"`` or ``"write-once"``.
    """

    def __init__(self, policy: str) -> None:
        super().__init__(f"mutation forbidden by the {policy} policy")
        self.policy = policy

    def __reduce__(self) -> Any:
        return (type(self), (self.policy,))


class LockTimeoutError(PersiDictError, TimeoutError):
    """A per-key lock could not be acquired within the time limit.

    A ``TimeoutError``. Raised by FileDirDict when another thread or process
    holds a key's lock for longer than the store's lock timeout; nothing
    was written.

    Parameters
    ----------
    key : object
        The key whose lock was waited for.
    lock_path : str
        The lock file (or directory) waited on.
    timeout : float
        The limit in seconds.
    """

    def __init__(self, key: Any, lock_path: str, timeout: float) -> None:
        super().__init__(
            f"key {key!r}: lock in {lock_path} not acquired within {timeout:g} s"
        )
        self.key = key
        self.lock_path = lock_path
        self.timeout = timeout

    def __reduce__(self) -> Any:
        return (type(self), (self.key, self.lock_path, self.timeout))


class PreconditionFailed(Exception):
    """A ByteStore's conditional ``write`` or ``delete`` found another version.

    Raised by backends (a third party's too) and caught by the engine, which
    turns it into a ``ConditionalOperationResult`` or a retry; it never
    reaches a caller of the mapping API.
    """
