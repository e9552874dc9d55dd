"""File and object names of key components: digests, buckets, and their inverse.

FileDirDict stores component ``c`` as ``c_<digest>`` (``sign_component``),
optionally below a hashed-layout bucket directory (``bucket_of``); a listing
turns names back into components (``unsign_names``) only where the name is
exactly what signing that component makes, so a listed key maps back to its
own path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import compress, repeat
from operator import and_, eq, lshift, rshift
from typing import Literal

SAFE_PATTERN = r"[A-Za-z0-9()_\-~.=]+"
"""A regex of one safe key component (the characters of keys.SAFE_CHARS_SET)."""
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> 2 base32 characters
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
    if n == 4:  # the default digest_len: straight-line
        return _B32_PAIRS[x >> 10] + _B32_PAIRS[x & 1023]
    text = "".join([_B32_PAIRS[(x >> (5 * i)) & 1023] for i in range((n // 2 - 1) * 2, -1, -2)])
    return _B32[x >> (5 * n - 5)] + text if n % 2 else text


def _md5_bits(component: str) -> int:
    """The 128-bit MD5 of ``component`` (UTF-8) as an int."""
    return int.from_bytes(_MD5_DIGEST(_md5(component.encode("utf-8"))), _BIG)


def _head(md5: int, digest_len: int) -> str:
    """The first ``digest_len`` (<= 26) lower-cased base32 characters of ``md5``.

    They are its 5-bit groups; the 26th is padded with two zero bits, as
    base64.b32encode does (a Python loop, several times slower).
    """
    return _b32((md5 << 2) >> (130 - 5 * digest_len), digest_len)


def component_digest(component: str, digest_len: int) -> str:
    """First ``digest_len`` chars of the lower-cased base32 MD5 of ``component``.

    Not cached: one MD5 of a short name costs little more than a cache
    lookup, and a cache big enough for a large store's keys would be big
    (FileBytes caches whole paths of recently used keys instead).
    """
    return _head(_md5_bits(component), digest_len)


def sign_component(component: str, digest_len: int) -> str:
    """Append ``_<digest>`` so keys differing only by case never collide on disk."""
    if digest_len <= 0:
        return component
    return f"{component}_{_head(_md5_bits(component), digest_len)}"


def bucket_of(component: str) -> str:
    """The hashed layout's bucket directory of ``component``: '+' and 2 digest chars."""
    return BUCKET_PREFIX + _B32_PAIRS[_md5_bits(component) >> 118]


def bucket_and_name(component: str, digest_len: int) -> tuple[str, str]:
    """(bucket_of, sign_component) of ``component`` from one MD5.

    The bucket is the first 2 digest characters, so one hash gives both.
    """
    md5 = _md5_bits(component)
    bucket = BUCKET_PREFIX + _B32_PAIRS[md5 >> 118]
    if digest_len <= 0:
        return bucket, component
    return bucket, f"{component}_{_head(md5, digest_len)}"


_BUCKETS = {BUCKET_PREFIX + p: i for i, p in enumerate(_B32_PAIRS)}  # name -> its 10 bits


def is_bucket(name: str) -> bool:
    """Whether ``name`` is a bucket directory name of the hashed layout."""
    return name in _BUCKETS


@lru_cache(maxsize=64)
def _name_res(digest_len: int, suffix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(one name, names joined by NULs) of what sign_component + ``suffix`` makes."""
    one = SAFE_PATTERN
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
