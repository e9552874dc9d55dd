"""BasicS3Dict with the lost-reply logic of commit 5d21bb2 (the fault stress must catch it).

The old code resent a write after a connection lost mid-request and took
the resend's answer as proof: a failed precondition meant "ours" if the
object held our exact bytes (another writer may store the same bytes), and
"absent" for a delete (our own first attempt may have deleted it). Written
here from that commit's behaviour on top of today's transport, which is
told the request is a read (``writes=False``) so that it resends it the old
way. :func:`guessing_factory` is a stress store factory (module level, so
spawned workers unpickle it) that gives every S3 store's ByteStore this class.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from persidict import PersiDict
from persidict.backends.s3 import BasicS3Dict
from persidict.backends.s3_bytes import S3Bytes
from persidict.backends.s3_transport import AMBIGUOUS, http_status
from persidict.engine.errors import PreconditionFailed
from persidict.engine.flags import ETagValue, ItemNotAvailableFlag
from persidict.stress.stores import StoreSpec, make_store


def _ambiguous(exc: BaseException) -> bool:
    """The old transport's test: may this failed attempt have been applied?"""
    return isinstance(exc, AMBIGUOUS) or (isinstance(exc, ClientError) and http_status(exc) >= 500)


class GuessingS3Bytes(S3Bytes):
    """Resends writes after a lost reply and guesses from the resend's answer."""

    def _resending(self, op: str, fn: Any, key: Any, ok: str, cond: bool, **kwargs: Any) -> Any:
        """Run a write the old way: resent after a lost reply (a 412 then says if it was)."""
        seen: list[BaseException] = []

        def attempt(**kw: Any) -> Any:
            try:
                return fn(**kw)
            except Exception as exc:
                if _ambiguous(exc):
                    seen.append(exc)
                raise

        try:
            return self.transport.call(op, attempt, key=key, object_key=ok,
                                       conditional=cond, **kwargs)
        except PreconditionFailed as exc:
            exc.ambiguous = bool(seen)  # type: ignore[attr-defined]
            raise

    def write(self, key: Any, data: bytes, *, if_match: Any) -> ETagValue:
        ok = self.object_key(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Key": ok, "Body": data}
        if isinstance(if_match, ItemNotAvailableFlag):
            kwargs["IfNoneMatch"] = "*"
        elif if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            response = self._resending("put_object", self.client.put_object, key, ok,
                                       if_match is not None, **kwargs)
        except PreconditionFailed as exc:
            if not getattr(exc, "ambiguous", False):
                raise
            # the old guess: our exact bytes there means the write was ours
            current = self.read(key, body=False).etag
            if current != f'"{hashlib.md5(data).hexdigest()}"':
                raise
            return ETagValue(current)
        return ETagValue(response["ETag"])

    def delete(self, key: Any, *, if_match: ETagValue | None) -> bool:
        ok = self.object_key(key)
        try:
            self._resending("delete_object", self.client.delete_object, key, ok, True,
                            Bucket=self.bucket_name, Key=ok,
                            IfMatch="*" if if_match is None else if_match)
        except PreconditionFailed:
            if if_match is None:
                return False  # the old guess: "it was not there"
            raise
        return True


def guessing_factory(spec: StoreSpec, namespace: str) -> PersiDict[Any]:
    """make_store, with every S3 store's ByteStore a GuessingS3Bytes."""
    store = make_store(spec, namespace)
    if isinstance(store, BasicS3Dict):
        store.byte_store.__class__ = GuessingS3Bytes
    return store
