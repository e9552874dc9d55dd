"""File and object names of key components: digests, buckets, and their inverse.

FileDirDict stores component ``c`` as ``c_<digest>`` (``sign_component``),
optionally below a hashed-layout bucket directory (``bucket_of``); a listing
turns names back into components (``unsign_names``) only where the name is
exactly what signing that component makes, so a listed key maps back to its
own path.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from itertools import compress
from operator import itemgetter
from typing import Literal

SAFE_PATTERN = r"[A-Za-z0-9()_\-~.=]+"
"""A regex of one safe key component (the characters of keys.SAFE_CHARS_SET)."""
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> 2 base32 characters
# base32 digits -> the digits int(x, 32) reads, so digests decode in C.
_B32_TO_INT_BYTES = bytes.maketrans(_B32.encode(), b"0123456789abcdefghijklmnopqrstuv")
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
def _name_res(digest_len: int, suffix: str) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """(one name, names joined by NULs) of what sign_component + ``suffix`` makes."""
    one = SAFE_PATTERN.encode()
    if digest_len > 0:
        one += b"_[a-z2-7]{%d}" % digest_len
    one += re.escape(os.fsencode(suffix))
    return re.compile(one), re.compile(one + b"(?:\0" + one + b")*")


def unsign_names(
    names: list[str], digest_len: int, bucket: str | None = None, suffix: str = ""
) -> list[str]:
    """The components of those ``names`` that sign_component (+ ``suffix``) made, in order.

    A name qualifies if its component is a safe string and its ``_<digest>``
    suffix is the component's digest; with ``bucket`` (a hashed layout's
    bucket directory) the component must also belong in that bucket. So a
    listed name is a key only if that key maps back to the same path.
    No cache: memory must not grow with a listing.
    """
    if not names:
        return []
    # Only ASCII names can qualify: any other character becomes '?', no safe one.
    raw = "\0".join(names).encode("ascii", "replace").split(b"\0")
    if len(raw) != len(names):  # a NUL inside a name (no file name has one)
        raw = [s.encode("ascii", "replace") for s in names]
    return decoded(unsign_runs(raw, [(bucket, len(names))], digest_len, suffix))


def decoded(components: list[bytes]) -> list[str]:
    """Components as str, in one pass (they are ASCII: safe characters only)."""
    return b"\0".join(components).decode("ascii").split("\0") if components else []


def unsign_runs(
    names: list[bytes], runs: list[tuple[str | None, int]], digest_len: int, suffix: str
) -> list[bytes]:
    """unsign_names of file names as listed (bytes), in runs: (bucket, how many) each.

    So one call checks the names of many small bucket directories. Made for
    whole directories: one regex pass checks every name's form, then one MD5
    per name and a few big-integer operations compare all digests at once.
    """
    if not names:
        return []
    one, joined = _name_res(digest_len, suffix)
    if joined.fullmatch(b"\0".join(names)) is None:
        names, runs = _well_formed(names, runs, one)
    n, cut = digest_len, len(os.fsencode(suffix))
    end = -cut if cut else None
    components = list(map(itemgetter(slice(-n - 1 - cut if n else end)), names))
    if components and (n > 0 or any(b is not None for b, _ in runs)):
        digits = list(map(itemgetter(slice(-n - cut, end)), names)) if n else None
        components = _digests_match(components, digits, runs)
    if b"." in components or b".." in components:
        components = [c for c in components if c != b"." and c != b".."]
    return components


def _well_formed(
    names: list[bytes], runs: list[tuple[str | None, int]], one: re.Pattern[bytes]
) -> tuple[list[bytes], list[tuple[str | None, int]]]:
    """``names`` and ``runs`` without the names not of the signed form."""
    kept: list[bytes] = []
    kept_runs: list[tuple[str | None, int]] = []
    start = 0
    for bucket, count in runs:
        good = [s for s in names[start : start + count] if one.fullmatch(s) is not None]
        start += count
        kept += good
        kept_runs.append((bucket, len(good)))
    return kept, kept_runs


# The bulk digest compare: each MD5 (128 bits) widened by 4 zero bytes to 160
# bits, 32 base32 digits; a name's digits padded with zero digits to 32 line
# up with it (the 26th digit's last 2 bits are then 0, as b32encode pads).
_WIDE = 20
_FILL = bytes(_WIDE - 16)
_ZERO = bytes(_WIDE)


def _unit(bits: int, value: int) -> bytes:
    """One 160-bit unit holding ``value`` in its top ``bits`` bits."""
    return (value << (8 * _WIDE - bits)).to_bytes(_WIDE, _BIG)


def _digests_match(
    components: list[bytes], digits: list[bytes] | None, runs: list[tuple[str | None, int]]
) -> list[bytes]:
    """Those ``components`` whose digest starts with their ``digits`` (base32) and,
    for a run with a bucket, whose first 10 bits name that bucket."""
    count = len(components)
    md5s = map(_MD5_DIGEST, map(_md5, components))
    heads = int.from_bytes(_FILL.join(md5s) + _FILL, _BIG)
    off = 0
    if digits is not None:
        n = len(digits[0])
        pad = b"0" * (8 * _WIDE // 5 - n)  # '0' is the zero digit of int(x, 32)
        want = int((pad.join(digits) + pad).translate(_B32_TO_INT_BYTES), 32)
        off |= (heads & int.from_bytes(_unit(5 * n, (1 << 5 * n) - 1) * count, _BIG)) ^ want
    if any(b is not None for b, _ in runs):
        masks = b"".join([(_ZERO if b is None else _TOP10) * k for b, k in runs])
        units = _BUCKET_UNITS.get
        want = int.from_bytes(b"".join([units(b, _NO_BUCKET) * k for b, k in runs]), _BIG)
        off |= (heads & int.from_bytes(masks, _BIG)) ^ want
    if not off:
        return components
    flags = off.to_bytes(_WIDE * count, _BIG)
    ok = [flags[i : i + _WIDE] == _ZERO for i in range(0, _WIDE * count, _WIDE)]
    return list(compress(components, ok))


_TOP10 = _unit(10, 1023)
# Each bucket's 10 bits on top of a unit (None: not checked); a name that is
# no bucket gets a bit below the mask, so no component matches it.
_BUCKET_UNITS: dict[str | None, bytes] = {b: _unit(10, i) for b, i in _BUCKETS.items()}
_BUCKET_UNITS[None] = _ZERO
_NO_BUCKET = _ZERO[:-1] + b"\1"


def unsign_component(name: str, digest_len: int) -> str | None:
    """Inverse of sign_component; None if ``name`` is not a signed safe string."""
    found = unsign_names([name], digest_len)
    return found[0] if found else None
