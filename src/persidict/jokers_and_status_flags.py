"""Compatibility path: the API reference names types as
``persidict.jokers_and_status_flags.X``; they live in ``engine.flags``."""

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
    SingletonMixin,
    ValueNotRetrievedFlag,
)
from .engine.results import ConditionalOperationResult, OperationResult, ValueType
from .engine.transform import TransformingFunction

__all__ = [
    "ALWAYS_RETRIEVE", "ANY_ETAG", "DELETE_CURRENT", "ETAG_HAS_CHANGED", "ETAG_IS_THE_SAME",
    "IF_ETAG_CHANGED", "ITEM_NOT_AVAILABLE", "KEEP_CURRENT", "NEVER_RETRIEVE",
    "VALUE_NOT_RETRIEVED", "AlwaysRetrieveFlag", "AnyETagFlag", "ConditionalOperationResult",
    "DeleteCurrentFlag", "ETagConditionFlag", "ETagHasChangedFlag", "ETagIfExists",
    "ETagIsTheSameFlag", "ETagValue", "IfETagChangedRetrieveFlag", "ItemNotAvailableFlag", "Joker",
    "KeepCurrentFlag", "NeverRetrieveFlag", "OperationResult", "RetrieveValueFlag",
    "SingletonMixin", "TransformingFunction", "ValueNotRetrievedFlag", "ValueType",
]
