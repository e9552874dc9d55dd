"""Caches as byte stores built from byte stores: a main store fronted by a local one.

A cache entry is ONE record in the cache's ByteStore, under the key itself:
main's etag and main's bytes together (``make_record``), written by one
atomic write. An etag can therefore never sit next to another version's
bytes, whatever crashes or races happen between caches and main. Mirroring
copies the bytes main sent or was sent; nothing is ever re-encoded.

Record layout: ``MAGIC``; a header line in ASCII of the etag's length and
the bytes' length in decimal and the bytes' CRC-32 in 8 hex digits,
separated by spaces; the etag (UTF-8); then main's bytes. Main's "not
modified" vouches only for the etag, so the record vouches for its bytes: a
record cut short, extended or flipped on disk, an older layout or a foreign
file is a miss, overwritten by the next mirror.

Cache failures never fail a call: a read falls back to main, a mirror or a
purge after main committed is logged. Only a key the cache cannot hold
(ValueError or TypeError from it, e.g. a file name too long) is refused, and
before main is touched.
"""

from __future__ import annotations

import logging
import zlib
from typing import NamedTuple

from ..engine.contract import ABSENT, Blob, ByteStore, IfMatch, Listed
from ..engine.errors import OutcomeUnknownError, PreconditionFailed
from ..engine.flags import ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple

_log = logging.getLogger("persidict")

MAGIC = b"\x00persidict-cache-record-2\n"
_HEADER_MAX = 48  # "etag-length bytes-length crc32\n", far more than it needs
_BAD_KEY = (ValueError, TypeError)


class Record(NamedTuple):
    """A parsed cache entry: main's etag and main's bytes for it."""

    etag: ETagValue
    data: bytes


def make_record(etag: str, data: bytes) -> bytes:
    """The cache entry for main's version ``etag`` holding ``data``."""
    tag = etag.encode("utf-8")
    header = f"{len(tag)} {len(data)} {zlib.crc32(data):08x}\n".encode("ascii")
    return b"".join((MAGIC, header, tag, data))


def parse_record(raw: bytes | None) -> Record | None:
    """The record in ``raw``, or None if it is not a whole one (absent, older layout, damaged)."""
    if raw is None or not raw.startswith(MAGIC):
        return None
    start = len(MAGIC)
    newline = raw.find(b"\n", start, start + _HEADER_MAX)
    fields = raw[start:newline].split(b" ") if newline > 0 else []
    if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
        return None
    tag_end = newline + 1 + int(fields[0])
    if tag_end + int(fields[1]) != len(raw):
        return None
    data = raw[tag_end:]
    if fields[2] != b"%08x" % zlib.crc32(data):
        return None
    try:
        etag = raw[newline + 1 : tag_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Record(ETagValue(etag), data)


def cache_failed(what: str, key: NonEmptySafeStrTuple, exc: Exception) -> None:
    """Log a cache failure that must not fail the call: main answers, or already committed."""
    _log.warning("persidict cache: %s of key %r failed: %r", what, key.strings, exc)


class _Cached(NamedTuple):
    """What the cache held for a key: its own etag (None: unreadable) and the record."""

    seen: ETagValue | ItemNotAvailableFlag | None
    record: Record | None


class _CacheBytes(ByteStore):
    """What both caches share: main answers listings; the cache is read and written by key."""

    def __init__(self, main: ByteStore, cache: ByteStore) -> None:
        self.main = main
        self.cache = cache
        self.name = main.name
        self.doubted: set[NonEmptySafeStrTuple] = set()
        """Keys whose entry may be older than this wrapper's last write or delete."""

    def _cached(self, key: NonEmptySafeStrTuple, *, body: bool = True) -> _Cached:
        """The cache's entry for ``key`` (without ``body``: its etag only).

        A failing cache is a miss, a key it refuses raises.
        """
        try:
            blob = self.cache.read(key, body=body)
        except _BAD_KEY:
            raise
        except Exception as exc:
            cache_failed("read", key, exc)
            return _Cached(None, None)
        return _Cached(blob.etag, parse_record(blob.data))

    def _mirror(
        self, key: NonEmptySafeStrTuple, seen: ETagValue | ItemNotAvailableFlag | None,
        etag: ETagValue | ItemNotAvailableFlag, data: bytes,
    ) -> bool:
        """Cache main's (etag, data), unless the cache moved since ``seen``; True if cached.

        A cache that moved holds a record mirrored after ``seen`` was read,
        from a read or write of main that may predate ours: it is left, and
        a writer then doubts it. One write, never raises.
        """
        if seen is None:
            return False  # the cache could not be read: leave it alone
        if not isinstance(etag, str):
            self._purge(key)  # main kept nothing (a null store)
            return False
        try:
            self.cache.write(key, make_record(etag, data), if_match=seen)
        except PreconditionFailed:
            return False
        except Exception as exc:  # main already answered or committed
            cache_failed("mirror", key, exc)
            self._purge(key)
            return False
        return True

    def _purge(self, key: NonEmptySafeStrTuple) -> None:
        """Drop the cache entry of ``key``; a failure is logged, not raised."""
        try:
            if self.cache.contains(key):
                self.cache.delete(key, if_match=None)
        except Exception as exc:
            self.doubted.add(key)
            cache_failed("forget", key, exc)

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited; main first, then the entry goes (also if main's outcome is unknown)
        self.doubted.add(key)  # a reader's older mirror may land after the entry goes
        try:
            existed = self.main.delete(key, if_match=if_match)
        except PreconditionFailed:
            raise  # main did not change: neither does the cache
        except BaseException:
            self._purge(key)  # main may have deleted it; never raises, masks nothing
            raise
        self._purge(key)
        return existed

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        # docstring inherited
        return self.main.contains(key)

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        return self.main.timestamp(key)

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        # docstring inherited
        return self.main.scan(with_timestamps=with_timestamps)

    def count(self) -> int:
        # docstring inherited
        return self.main.count()

    def location(self, key: NonEmptySafeStrTuple) -> str:
        # docstring inherited
        return self.main.location(key)

    def cached_etag(self, key: NonEmptySafeStrTuple) -> ETagValue | None:
        """Main's etag as the cache last saw it (None: nothing cached, or doubted)."""
        if key in self.doubted:
            return None
        record = self._cached(key).record
        return None if record is None else record.etag


class ValidatedCacheBytes(_CacheBytes):
    """A mutable main store whose cached records are validated by etag on every read.

    Every read with a body sends the cached etag as If-None-Match: "not
    modified" serves the cached bytes, otherwise main's fresh bytes are
    mirrored. Reads without a body, writes and deletes go to main, then the
    cache follows. Atomic as main: every answer is main's.
    """

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited
        if not body:
            blob = self.main.read(key, body=False)
            if blob.etag is ABSENT:
                self._purge(key)
            return blob
        seen, record = self._cached(key)
        ask = record.etag if record is not None else if_none_match
        blob = self.main.read(key, body=True, if_none_match=ask)
        if blob.etag is ABSENT:
            if seen is not ABSENT:
                self._purge(key)
            return blob
        if blob.data is None:  # not modified: main's etag is the one asked about
            if record is None or blob.etag == if_none_match:
                return blob
            return Blob(blob.etag, record.data)
        self._mirror(key, seen, blob.etag, blob.data)
        return Blob(blob.etag, None if blob.etag == if_none_match else blob.data)

    def write(
        self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch
    ) -> ETagValue | ItemNotAvailableFlag:
        # docstring inherited
        seen = self._cached(key, body=False).seen  # the cache's own etag before main is written
        try:
            etag = self.main.write(key, data, if_match=if_match)
        except OutcomeUnknownError:
            self.doubted.add(key)
            self._purge(key)  # main may hold the new bytes: the entry speaks for the old
            raise
        if self._mirror(key, seen, etag, data):
            self.doubted.discard(key)  # the entry is this write's: nothing mirrored since is older
        else:
            self.doubted.add(key)
        return etag


class AppendOnlyCacheBytes(_CacheBytes):
    """An append-only main store: a cached record is main's forever, served without asking.

    A key cached is a key main holds with those bytes and that etag (it can
    neither change nor go), so reads of it are answered by the cache alone
    and an insert of it fails at once. Misses go to main and are mirrored.
    """

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited
        seen, record = self._cached(key)
        if record is not None:
            if not body or record.etag == if_none_match:
                return Blob(record.etag, None)
            return Blob(record.etag, record.data)
        blob = self.main.read(key, body=body, if_none_match=if_none_match)
        if blob.data is not None:
            self._mirror(key, seen, blob.etag, blob.data)
        return blob

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        # docstring inherited; only a whole record counts (a junk file is a miss, as for read)
        return self._cached(key).record is not None or self.main.contains(key)

    def write(
        self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch
    ) -> ETagValue | ItemNotAvailableFlag:
        # docstring inherited
        seen, record = self._cached(key)
        if record is not None and if_match is ABSENT:
            raise PreconditionFailed  # main holds it, for good
        etag = self.main.write(key, data, if_match=if_match)
        self._mirror(key, seen, etag, data)
        return etag
