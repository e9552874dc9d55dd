"""Value codecs: pickle, jsonpickle, and plain UTF-8 text for other formats."""

from __future__ import annotations

import functools
import pickle
import re
from collections.abc import Callable
from typing import Any

import jsonpickle
from jsonpickle.pickler import Pickler
from jsonpickle.unpickler import Unpickler

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]


# A partial of the C function: no Python frame per write.
_pkl_encode: Encoder = functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)


# jsonpickle writes lambdas as null, and local functions and classes under a
# name that cannot be imported back (they then decode as None): refuse them.
_UNRESTORABLE = re.compile(
    r'"py/(?:function|type|object|reduce)": "([^"]*<(?:lambda|locals)>[^"]*)"'
)


# Every jsonpickle option that shapes what is stored is passed explicitly (a
# context built here), so a new jsonpickle default (5.0 turns ``keys`` on)
# cannot change the bytes we write or how we read them, and jsonpickle's
# warnings about changing defaults do not fire on every write.


def _json_encode(value: Any) -> bytes:
    context = Pickler(unpicklable=True, make_refs=True, keys=False, warn=False)
    text: str = jsonpickle.encode(value, indent=4, context=context)
    if text == "null" and value is not None:
        raise TypeError(f"{type(value).__name__} {value!r:.60} cannot be stored as JSON")
    if '"py/' in text:
        bad = _UNRESTORABLE.search(text)
        if bad is not None:
            raise TypeError(f"{bad.group(1)} cannot be restored from JSON")
    return text.encode("utf-8")


def _json_decode(data: bytes) -> Any:
    text = data.decode("utf-8")
    if not text.strip():  # jsonpickle would quietly decode "" as None
        raise ValueError("empty JSON document")
    return jsonpickle.decode(text, context=Unpickler(keys=False, safe=True))


def _text_encode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"text formats store str values only, got {type(value).__name__}")
    return value.encode("utf-8")


def _text_decode(data: bytes) -> Any:
    return data.decode("utf-8")


def codec_for(serialization_format: str) -> tuple[Encoder, Decoder]:
    """Return the (encode, decode) pair for a serialization format."""
    if serialization_format == "pkl":
        return _pkl_encode, pickle.loads
    if serialization_format == "json":
        return _json_encode, _json_decode
    return _text_encode, _text_decode


def is_text_format(serialization_format: str) -> bool:
    """Formats other than pkl and json hold plain text."""
    return serialization_format not in ("pkl", "json")
