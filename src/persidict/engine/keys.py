"""Keys: flat, hashable tuples of URL/filename-safe strings."""

from __future__ import annotations

import re
import string
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any, TypeAlias, TypeVar, overload

from .names import SAFE_PATTERN
from .recent import Recent

_SAFE_CHARS: frozenset[str] = frozenset(string.ascii_letters + string.digits + "()_-~.=")
SAFE_CHARS_SET: set[str] = set(_SAFE_CHARS)
"""The characters allowed in key components; a public copy (validation reads
its own frozen set, so mutating this one cannot let an unsafe key through)."""
SAFE_STRING_MAX_LENGTH = 254
"""Key components are shorter than this."""
MAX_DIGEST_LEN = 26
"""Characters in the unpadded base32 of an MD5 digest."""
_SAFE_RE = re.compile(SAFE_PATTERN)


def get_safe_chars() -> set[str]:
    """Return a copy of the set of characters allowed in key components.

    Returns
    -------
    set of str
        ASCII letters, digits and ``()_-~.=``; a fresh copy each call.
    """
    return set(_SAFE_CHARS)


def contains_unsafe_chars(a_str: str) -> bool:
    """Whether ``a_str`` has a character outside the safe set.

    Parameters
    ----------
    a_str : str
        The candidate key component.

    Returns
    -------
    bool
        True if some character is not allowed in a key component.
    """
    return not _SAFE_CHARS.issuperset(a_str)


def replace_unsafe_chars(a_str: str, replace_with: str) -> str:
    """Replace every character outside the safe set by ``replace_with``.

    Parameters
    ----------
    a_str : str
        Any text, e.g. a file name or a URL.
    replace_with : str
        What each unsafe character becomes (use safe characters, e.g. ``"_"``,
        for the result to be a valid key component).

    Returns
    -------
    str
        ``a_str`` with every unsafe character replaced.
    """
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


_MAX_NESTING = 100  # sequences inside sequences: deeper is a sequence that holds itself


def _flatten(args: Sequence[Any], out: list[str], depth: int = 0) -> None:
    if depth > _MAX_NESTING:
        raise TypeError(
            f"a key nests sequences more than {_MAX_NESTING} deep (does a sequence hold "
            "itself?): give a str or a flat sequence of str"
        )
    for a in args:
        if isinstance(a, str):
            out.append(_check_component(a))
        elif isinstance(a, SafeStrTuple):
            out.extend(a.strings)
        elif isinstance(a, (list, tuple)) or (
            isinstance(a, Sequence) and not isinstance(a, (bytes, bytearray))
        ):  # any Sequence[str], as the API reference types keys (UserList, deque...)
            _flatten(a, out, depth + 1)
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
        """Return component ``i`` (a str) or a slice of the components (a tuple).

        Parameters
        ----------
        i : int or slice
            As for a tuple.

        Returns
        -------
        str or tuple of str
            The component(s).

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        """
        return self.strings[i]

    def __len__(self) -> int:
        """Return the number of components.

        Returns
        -------
        int
            ``len(self.strings)``.
        """
        return len(self.strings)

    def __iter__(self) -> Iterator[str]:
        """Iterate over the components, first to last.

        Returns
        -------
        iterator of str
            The components.
        """
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

def _str_key(key: str) -> NonEmptySafeStrTuple:
    return _unchecked(NonEmptySafeStrTuple, (_check_component(key),))


# Validated one-component keys, so hot loops over str keys skip the regex; keys
# in use stay cached however many others pass through (see Recent).
_STR_KEYS: Recent[str, NonEmptySafeStrTuple] = Recent(_str_key, 4096)


def to_key(key: Any) -> NonEmptySafeStrTuple:
    """Normalize a user-supplied key once, at the API boundary."""
    if type(key) is str:
        return _STR_KEYS[key]
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


def trusted_keys(prefix: tuple[str, ...], components: list[str]) -> list[NonEmptySafeStrTuple]:
    """The keys ``(*prefix, c)`` of already-checked ``components``, built in C loops.

    A listing builds one key per name; this is about 3x cheaper than calling
    ``trusted_key`` for each.
    """
    strings = map(prefix.__add__, zip(components)) if prefix else zip(components)
    keys = list(map(object.__new__, repeat(NonEmptySafeStrTuple, len(components))))
    deque(map(_set_strings, keys, strings), maxlen=0)
    return keys
