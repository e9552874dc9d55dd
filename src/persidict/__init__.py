"""persidict: persistent dict-like stores with truly atomic conditional operations.

The public API only; the layers live in ``engine``, ``backends``,
``concurrency`` and ``stress``.
"""

import importlib as _importlib
import typing as _typing

from .backends.bytes_dict import ByteStoreDict
from .backends.cached import AppendOnlyDictCached, MutableDictCached
from .backends.empty import EmptyDict
from .backends.files import FileDirDict
from .backends.memory import LocalDict
from .backends.multi import OverlappingMultiDict
from .backends.write_once import WriteOnceConsistencyError, WriteOnceDict
from .concurrency.locks import LocksUnsupportedError
from .engine.contract import Blob, ByteStore, Capabilities
from .engine.errors import (
    BackendError,
    ConcurrencyConflictError,
    LockTimeoutError,
    MutationPolicyError,
    OutcomeUnknownError,
    PersiDictError,
    PreconditionFailed,
)
from .engine.flags import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
    AlwaysRetrieveFlag,
    AnyETagFlag,
    DeleteCurrentFlag,
    ETagConditionFlag,
    ETagHasChangedFlag,
    ETagIfExists,
    ETagIsTheSameFlag,
    ETagValue,
    IfETagChangedRetrieveFlag,
    ItemNotAvailableFlag,
    Joker,
    KeepCurrentFlag,
    NeverRetrieveFlag,
    RetrieveValueFlag,
    ValueNotRetrievedFlag,
)
from .engine.keys import (
    SAFE_CHARS_SET,
    SAFE_STRING_MAX_LENGTH,
    NonEmptyPersiDictKey,
    NonEmptySafeStrTuple,
    PersiDictKey,
    SafeStrTuple,
    contains_unsafe_chars,
    get_safe_chars,
    replace_unsafe_chars,
)
from .engine.persidict import PersiDict
from .engine.results import ConditionalOperationResult, OperationResult, ValueType
from .engine.transform import TransformingFunction
from .eviction import evict
from .memoization import memoize

__version__ = "0.1.0"  # the one source of the version: pyproject.toml reads it

if _typing.TYPE_CHECKING:
    from .backends.s3 import BasicS3Dict
    from .backends.s3_cached import S3Dict, S3Dict_FileDirCached

# The S3 stores import boto3 (over 100 ms); load them on first use only.
_LAZY = {
    "BasicS3Dict": "persidict.backends.s3",
    "S3Dict": "persidict.backends.s3_cached",
    "S3Dict_FileDirCached": "persidict.backends.s3_cached",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'persidict' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "ALWAYS_RETRIEVE",
    "ANY_ETAG",
    "DELETE_CURRENT",
    "ETAG_HAS_CHANGED",
    "ETAG_IS_THE_SAME",
    "IF_ETAG_CHANGED",
    "ITEM_NOT_AVAILABLE",
    "KEEP_CURRENT",
    "NEVER_RETRIEVE",
    "SAFE_CHARS_SET",
    "SAFE_STRING_MAX_LENGTH",
    "VALUE_NOT_RETRIEVED",
    "AlwaysRetrieveFlag",
    "AnyETagFlag",
    "AppendOnlyDictCached",
    "BackendError",
    "BasicS3Dict",
    "Blob",
    "ByteStore",
    "ByteStoreDict",
    "Capabilities",
    "ConcurrencyConflictError",
    "ConditionalOperationResult",
    "DeleteCurrentFlag",
    "ETagConditionFlag",
    "ETagHasChangedFlag",
    "ETagIfExists",
    "ETagIsTheSameFlag",
    "ETagValue",
    "EmptyDict",
    "FileDirDict",
    "IfETagChangedRetrieveFlag",
    "ItemNotAvailableFlag",
    "Joker",
    "KeepCurrentFlag",
    "LocalDict",
    "LockTimeoutError",
    "LocksUnsupportedError",
    "MutableDictCached",
    "MutationPolicyError",
    "NeverRetrieveFlag",
    "NonEmptyPersiDictKey",
    "NonEmptySafeStrTuple",
    "OperationResult",
    "OutcomeUnknownError",
    "OverlappingMultiDict",
    "PersiDict",
    "PersiDictError",
    "PersiDictKey",
    "PreconditionFailed",
    "RetrieveValueFlag",
    "S3Dict",
    "S3Dict_FileDirCached",
    "SafeStrTuple",
    "TransformingFunction",
    "ValueNotRetrievedFlag",
    "ValueType",
    "WriteOnceConsistencyError",
    "WriteOnceDict",
    "contains_unsafe_chars",
    "evict",
    "get_safe_chars",
    "memoize",
    "replace_unsafe_chars",
]
