"""Keys: flat, hashable tuples of URL/filename-safe strings."""

from __future__ import annotations

import hashlib
import re
import string
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import compress, repeat
from operator import and_, eq, lshift, rshift
from typing import Any, Literal, TypeAlias, TypeVar, overload

_SAFE_CHARS: frozenset[str] = frozenset(string.ascii_letters + string.digits + "()_-~.=")
SAFE_CHARS_SET: set[str] = set(_SAFE_CHARS)
"""The characters allowed in key components; a public copy (validation reads
its own frozen set, so mutating this one cannot let an unsafe key through)."""
SAFE_STRING_MAX_LENGTH = 254
"""Key components are shorter than this."""
MAX_DIGEST_LEN = 26
"""Characters in the unpadded base32 of an MD5 digest."""
_SAFE_RE = re.compile(r"[A-Za-z0-9()_\-~.=]+")


def get_safe_chars() -> set[str]:
    """Return a copy of the set of characters allowed in key components."""
    return set(_SAFE_CHARS)


def contains_unsafe_chars(a_str: str) -> bool:
    """Whether ``a_str`` has a character outside the safe set."""
    return not _SAFE_CHARS.issuperset(a_str)


def replace_unsafe_chars(a_str: str, replace_with: str) -> str:
    """Replace every character outside the safe set by ``replace_with``."""
    return "".join(c if c in _SAFE_CHARS else replace_with for c in a_str)


def _check_component(s: object) -> str:
    """Return ``s`` if it is a valid key component, else raise naming why."""
    if type(s) is not str:
        if isinstance(s, str):
            s = str.__str__(s)  # a str subclass: keep only its text
        else:
            raise TypeError(f"key components must be str, got {type(s).__name__} {s!r}")
    if not s:
        raise ValueError("key components must be non-empty strings")
    if len(s) >= SAFE_STRING_MAX_LENGTH:
        raise ValueError(
            f"key component {s[:40]!r}... is {len(s)} characters long; "
            f"the limit is {SAFE_STRING_MAX_LENGTH - 1}"
        )
    if _SAFE_RE.fullmatch(s) is None:
        bad = sorted({c for c in s if c not in _SAFE_CHARS})
        raise ValueError(
            f"key component {s!r} contains unsafe characters {bad!r}: allowed are ASCII "
            "letters, digits and ()_-~.= ; persidict.replace_unsafe_chars(s, '_') makes a "
            "string safe"
        )
    if s in (".", ".."):
        raise ValueError(f"key component {s!r} is not allowed (it names a directory)")
    return s


def _flatten(args: Sequence[Any], out: list[str]) -> None:
    for a in args:
        if isinstance(a, str):
            out.append(_check_component(a))
        elif isinstance(a, SafeStrTuple):
            out.extend(a.strings)
        elif isinstance(a, (list, tuple)):
            _flatten(a, out)
        else:
            raise TypeError(
                f"a key must be a str or a sequence of str, got {type(a).__name__} {a!r}"
            )


_K = TypeVar("_K", bound="SafeStrTuple")
_STR_ONLY = frozenset((str,))


class SafeStrTuple(Sequence[str]):
    """An immutable, hashable, flat sequence of URL/filename-safe strings."""

    __slots__ = ("strings",)
    strings: tuple[str, ...]

    def __init__(self, *args: Any) -> None:
        out: list[str] = []
        _flatten(args, out)
        object.__setattr__(self, "strings", tuple(out))
        self._validate()

    def _validate(self) -> None:
        """Hook for subclasses to add constraints."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def str_chain(self) -> tuple[str, ...]:
        """Alias of ``strings`` kept for backward compatibility."""
        return self.strings

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return self.strings[i]

    def __len__(self) -> int:
        return len(self.strings)

    def __iter__(self) -> Iterator[str]:
        return iter(self.strings)

    def __hash__(self) -> int:
        return hash(self.strings)

    def __eq__(self, other: object) -> bool:
        """Equal to a key with the same strings, and to what names it: a str
        or a list/tuple, converted as the constructor would (one it refuses is
        unequal; other types get NotImplemented, so their own ``__eq__`` may
        answer). The hash stays that of ``strings``: ``k == "a"`` holds, yet a
        set of keys does not find ``"a"``."""
        if type(other) is type(self):  # the hot path (dict lookups); no ABC isinstance
            return self.strings == other.strings
        # Fast paths: self's strings are valid, so a plain str or a flat
        # sequence of them equal to self would convert to itself.
        if type(other) is str:
            return len(self.strings) == 1 and self.strings[0] == other
        if isinstance(other, (tuple, list)):
            if {*map(type, other)} <= _STR_ONLY:
                return self.strings == tuple(other)
        elif isinstance(other, SafeStrTuple):
            theirs = type(other).__eq__
            if theirs is not _BASE_EQ and theirs is not type(self).__eq__:
                return NotImplemented  # a key class with its own equality decides
            return self.strings == other.strings
        elif not isinstance(other, str):
            return NotImplemented
        out: list[str] = []
        try:
            _flatten((other,), out)
        except (TypeError, ValueError):
            return False
        return self.strings == tuple(out)

    def _other_strings(self, other: object) -> tuple[str, ...] | None:
        if isinstance(other, SafeStrTuple):
            return other.strings
        if isinstance(other, tuple):
            return other
        return None

    # Ordered like tuples, so sorted(d.keys()) works.
    def __lt__(self, other: object) -> bool:
        o = self._other_strings(other)
        return NotImplemented if o is None else self.strings < o

    def __le__(self, other: object) -> bool:
        o = self._other_strings(other)
        return NotImplemented if o is None else self.strings <= o

    def __gt__(self, other: object) -> bool:
        o = self._other_strings(other)
        return NotImplemented if o is None else self.strings > o

    def __ge__(self, other: object) -> bool:
        o = self._other_strings(other)
        return NotImplemented if o is None else self.strings >= o

    def __add__(self, other: Any) -> SafeStrTuple:
        return SafeStrTuple(self, other)

    def __radd__(self, other: Any) -> SafeStrTuple:
        return SafeStrTuple(other, self)

    def __reduce__(self) -> Any:
        return (type(self), self.strings)

    # An immutable value: a copy is the object itself, as for tuple and str.
    def __copy__(self: _K) -> _K:
        return self

    def __deepcopy__(self: _K, memo: dict[int, Any]) -> _K:
        return self

    def __reversed__(self: _K) -> _K:  # type: ignore[override]
        """The key with its components in reverse order (a key, not an iterator)."""
        return type(self)(self.strings[::-1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.strings!r}"


_set_strings = SafeStrTuple.__dict__["strings"].__set__


def _unchecked(cls: type[_K], strings: tuple[str, ...]) -> _K:
    """A ``cls`` of components already known to be valid (no checks)."""
    obj = object.__new__(cls)
    _set_strings(obj, strings)  # the slot's own setter: __setattr__ refuses
    return obj
_BASE_EQ = SafeStrTuple.__eq__


class NonEmptySafeStrTuple(SafeStrTuple):
    """A SafeStrTuple with at least one component."""

    __slots__ = ()

    def _validate(self) -> None:
        if not self.strings:
            raise ValueError("a key must have at least one component")


PersiDictKey: TypeAlias = SafeStrTuple | Sequence[str] | str
"""What a key prefix may be given as (empty allowed)."""
NonEmptyPersiDictKey: TypeAlias = NonEmptySafeStrTuple | Sequence[str] | str
"""What a key may be given as."""

# Validated one-component keys, so hot loops over str keys skip the regex.
_STR_KEYS: dict[str, NonEmptySafeStrTuple] = {}
_STR_KEYS_MAX = 8192


def to_key(key: Any) -> NonEmptySafeStrTuple:
    """Normalize a user-supplied key once, at the API boundary."""
    if type(key) is str:
        cached = _STR_KEYS.get(key)
        if cached is None:
            cached = _unchecked(NonEmptySafeStrTuple, (_check_component(key),))
            if len(_STR_KEYS) >= _STR_KEYS_MAX:
                _STR_KEYS.clear()
            _STR_KEYS[key] = cached
        return cached
    if type(key) is NonEmptySafeStrTuple:
        return key
    return NonEmptySafeStrTuple(key)


def trusted_key(strings: tuple[str, ...]) -> NonEmptySafeStrTuple:
    """A key from non-empty components already known to be safe (listings: no re-check)."""
    return _unchecked(NonEmptySafeStrTuple, strings)


def is_safe_component(s: str) -> bool:
    """Whether ``s`` can be a key component: safe characters only, not '.' or '..'."""
    return _SAFE_RE.fullmatch(s) is not None and s not in (".", "..")


def to_prefix(prefix: Any) -> SafeStrTuple:
    """Normalize a (possibly empty) key prefix."""
    if isinstance(prefix, SafeStrTuple):
        return prefix
    return SafeStrTuple(prefix)


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> 2 base32 characters
# Every name of a directory joined by NULs: one regex pass tells whether all are safe.
_SAFE_NAMES_RE = re.compile(r"[A-Za-z0-9()_\-~.=\0]*")
_B32_RE = re.compile(r"[a-z2-7]+")
_B32_NAMES_RE = re.compile(r"[a-z2-7\0]*")
# base32 digits -> the digits int(x, 32) reads, so a suffix decodes in C.
_B32_TO_INT_DIGITS = str.maketrans(_B32, "0123456789abcdefghijklmnopqrstuv")
try:  # CPython's builtin MD5: about half the cost of OpenSSL's per short name
    from _md5 import md5 as _md5  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a Python built without it
    _md5 = hashlib.md5
_MD5_DIGEST = type(_md5()).digest
_BIG: Literal["big"] = "big"

LAYOUTS = ("direct", "hashed")
"""FileDirDict layouts: ``direct`` (the reference's: one directory per key
component) and ``hashed`` (every entry one bucket directory further down)."""
BUCKET_PREFIX = "+"
"""Bucket directories of the hashed layout are ``+`` and 2 base32 characters:
'+' is no safe key character, so no key component can name one."""


def _b32(x: int, n: int) -> str:
    """``x`` (5n bits) as ``n`` base32 characters, two per table lookup."""
    text = "".join([_B32_PAIRS[(x >> (5 * i)) & 1023] for i in range((n // 2 - 1) * 2, -1, -2)])
    return _B32[x >> (5 * n - 5)] + text if n % 2 else text


def _digest(component: str, digest_len: int) -> str:
    """Uncached component_digest (base64.b32encode is a Python loop).

    The base32 characters of the 128-bit MD5 are its 5-bit groups; the 26th
    is padded with two zero bits, as b32encode does. ``digest_len`` <= 26.
    """
    md5 = _md5(component.encode("utf-8")).digest()
    return _b32((int.from_bytes(md5, "big") << 2) >> (130 - 5 * digest_len), digest_len)


@lru_cache(maxsize=65536)
def component_digest(component: str, digest_len: int) -> str:
    """First ``digest_len`` chars of the lower-cased base32 MD5 of ``component``."""
    return _digest(component, digest_len)


def sign_component(component: str, digest_len: int) -> str:
    """Append ``_<digest>`` so keys differing only by case never collide on disk."""
    if digest_len <= 0:
        return component
    return f"{component}_{component_digest(component, digest_len)}"


def bucket_of(component: str) -> str:
    """The hashed layout's bucket directory of ``component``: '+' and 2 digest chars."""
    return BUCKET_PREFIX + component_digest(component, 2)


_BUCKETS = {BUCKET_PREFIX + p: i for i, p in enumerate(_B32_PAIRS)}  # name -> its 10 bits


def is_bucket(name: str) -> bool:
    """Whether ``name`` is a bucket directory name of the hashed layout."""
    return name in _BUCKETS


@lru_cache(maxsize=64)
def _name_res(digest_len: int, suffix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(one name, names joined by NULs) of what sign_component + ``suffix`` makes."""
    one = r"[A-Za-z0-9()_\-~.=]+"
    if digest_len > 0:
        one += f"_[a-z2-7]{{{digest_len}}}"
    one += re.escape(suffix)
    return re.compile(one), re.compile(f"{one}(?:\0{one})*")


def unsign_names(
    names: list[str], digest_len: int, bucket: str | None = None, suffix: str = ""
) -> list[str]:
    """The components of those ``names`` that sign_component (+ ``suffix``) made, in order.

    A name qualifies if its component is a safe string and its ``_<digest>``
    suffix is the component's digest; with ``bucket`` (a hashed layout's
    bucket directory) the component must also belong in that bucket. So a
    listed name is a key only if that key maps back to the same path.

    Made for whole directories: one regex pass checks every name's form; the
    MD5s and the compares run in C loops (map), one MD5 per name. No cache:
    memory must not grow with a listing.
    """
    if not names:
        return []
    one, joined = _name_res(digest_len, suffix)
    if joined.fullmatch("\0".join(names)) is None:
        names = [s for s in names if one.fullmatch(s) is not None]
    n, cut = digest_len, len(suffix)
    end = -cut if cut else None
    components = [s[: -n - 1 - cut] for s in names] if n else [s[:end] for s in names]
    if bucket is not None or n > 0:
        digests = map(_MD5_DIGEST, map(_md5, map(str.encode, components)))
        heads: Iterable[int] = map(int.from_bytes, digests, repeat(_BIG))  # 128 bits each
        checks = []
        if bucket is not None:
            heads = list(heads) if n > 0 else heads  # read twice
            want = repeat(_BUCKETS.get(bucket))
            checks.append(map(eq, map(rshift, heads, repeat(118)), want))
        if n > 0:
            digits = "\0".join([s[-n - cut : end] for s in names]).translate(_B32_TO_INT_DIGITS)
            found = map(int, digits.split("\0"), repeat(32))
            # The 26th character holds the last 3 bits and 2 zero bits (as b32encode).
            wanted = map(rshift, heads, repeat(128 - 5 * n)) if n < 26 else map(
                lshift, heads, repeat(2)
            )
            checks.append(map(eq, wanted, found))
        ok = checks[0] if len(checks) == 1 else map(and_, *checks)
        components = list(compress(components, ok))
    if "." in components or ".." in components:
        components = [c for c in components if c != "." and c != ".."]
    return components


def unsign_component(name: str, digest_len: int) -> str | None:
    """Inverse of sign_component; None if ``name`` is not a signed safe string."""
    found = unsign_names([name], digest_len)
    return found[0] if found else None


def trusted_keys(prefix: tuple[str, ...], components: list[str]) -> list[NonEmptySafeStrTuple]:
    """The keys ``(*prefix, c)`` of already-checked ``components``, built in C loops.

    A listing builds one key per name; this is about 3x cheaper than calling
    ``trusted_key`` for each.
    """
    strings = map(prefix.__add__, zip(components)) if prefix else zip(components)
    keys = list(map(object.__new__, repeat(NonEmptySafeStrTuple, len(components))))
    deque(map(_set_strings, keys, strings), maxlen=0)
    return keys
