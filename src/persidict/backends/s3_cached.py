"""S3Dict_FileDirCached: BasicS3Dict fronted by local FileDirDict caches."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from ..engine.flags import ETagValue
from ..engine.keys import SafeStrTuple, is_safe_component, to_prefix
from ..engine.persidict import PersiDict
from ..engine.results import OperationResult, ValueType
from ..engine.transform import TransformingFunction
from ..engine.values import sorted_params
from .cached import AppendOnlyDictCached, MutableDictCached
from .empty import EmptyDict
from .files import FileDirDict
from .forwarding import ForwardingStore
from .s3 import BasicS3Dict

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Dict_FileDirCached(ForwardingStore[ValueType]):
    """An S3 store (BasicS3Dict) with local FileDirDict caches under ``base_dir``.

    Composition: for ``append_only=True`` an ``AppendOnlyDictCached`` (values
    can never change, so cached values are served without asking S3); for a
    mutable store a ``MutableDictCached``, where every read of a value is a
    conditional ``GET If-None-Match`` on the cached etag (304: the cached
    bytes are served, no body transferred). A cache entry is one file
    holding S3's etag and S3's bytes (``cache_bytes.py``).

    Atomicity: every write, delete and conditional operation goes to S3
    first, through BasicS3Dict's native conditional requests, so everything
    is as atomic as BasicS3Dict (linearizable across machines). The cache
    is updated after S3 and is never trusted for a decision of a mutable
    store: a stale or missing entry costs a fetch, never a wrong answer.
    Locked: the local cache files, per key, by FileDirDict (each entry is
    written atomically, etag and bytes together). A key the local cache
    cannot hold (its file names carry a digest suffix) is refused before S3
    is written. Listing comes from S3 (see BasicS3Dict).

    Cache layout: ``<base_dir>/data/<bucket>/<root_prefix>``, key components
    suffixed as FileDirDict does with ``digest_len`` (older versions also
    kept ``<base_dir>/etags/``: it is no longer read). The cache is written
    with ``durable=False``: a cache lost to a power cut is refilled from S3.

    Parameters
    ----------
    bucket_name : str, default "my_bucket"
        The bucket (checked as by BasicS3Dict: what no client can send
        before any request, what the server refuses at construction).
    region : str or None, default None
        The AWS region; None uses boto3's configuration.
    root_prefix : str, default ""
        Prefix of every object name.
    base_dir : str or PathLike, default "__s3_dict__"
        Directory of the local caches.
    serialization_format : str, default "pkl"
        ``"pkl"``, ``"json"`` or a text format.
    digest_len : int, default 8
        Digest suffix length of the cache's file names (see FileDirDict).
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    base_class_for_values : type or None, default None
        If given, every value must be an instance of it.
    endpoint_url : str or None, default None
        An S3-compatible server; None for AWS.
    client : S3Client or None, default None
        A boto3 client to use instead of building one.

    Raises
    ------
    ValueError
        the server or botocore refuses ``bucket_name``, or another parameter is
        invalid.
    TypeError
        ``base_dir`` is not a path, or another parameter has the wrong type.
    BackendError
        The bucket can neither be found nor created.
    """

    def __init__(
        self,
        *,
        bucket_name: str = "my_bucket",
        region: str | None = None,
        root_prefix: str = "",
        base_dir: str = "__s3_dict__",
        serialization_format: str = "pkl",
        digest_len: int = 8,
        append_only: bool = False,
        base_class_for_values: type | None = None,
        endpoint_url: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        main: BasicS3Dict[ValueType] = BasicS3Dict(
            bucket_name=bucket_name,
            region=region,
            root_prefix=root_prefix,
            serialization_format=serialization_format,
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            endpoint_url=endpoint_url,
            client=client,
        )
        if not isinstance(base_dir, (str, os.PathLike)):
            raise TypeError(f"base_dir must be a path, got {type(base_dir).__name__}")
        self._main = main
        self._base_dir = os.path.abspath(os.fspath(base_dir))
        self._digest_len = digest_len
        data = self._cache(serialization_format, base_class_for_values, append_only)
        wrapped: PersiDict[ValueType]
        if append_only:
            wrapped = AppendOnlyDictCached(main_dict=main, data_cache=data)
        else:
            # The records of the data cache hold the etags: no etag cache to write.
            wrapped = MutableDictCached(main_dict=main, data_cache=data, etag_cache=EmptyDict())
        self._init_forwarding(wrapped, append_only=append_only)

    def _cache(self, fmt: str, base_class: type | None, append_only: bool) -> FileDirDict:
        """The local data cache for this store's bucket and root prefix."""
        main = self._main
        root = FileDirDict(
            base_dir=os.path.join(self._base_dir, "data", main.bucket_name),
            serialization_format=fmt,
            digest_len=self._digest_len,
            append_only=append_only,
            base_class_for_values=base_class,
            durable=False,
        )
        parts = [p for p in main.root_prefix.split("/") if p]
        if all(is_safe_component(p) for p in parts):
            return root.get_subdict(SafeStrTuple(*parts)) if parts else root
        # A prefix that cannot be a key path gets a directory of its own; '@'
        # names are never keys, so it cannot collide with a cached key.
        tag = hashlib.sha256(main.root_prefix.encode()).hexdigest()[:32]
        params = root.get_params()
        params["base_dir"] = os.path.join(root.base_dir, "@prefix-" + tag)
        return FileDirDict(**params)

    @property
    def base_dir(self) -> str:
        """The directory of the local caches."""
        return self._base_dir

    @property
    def base_url(self) -> str:
        """``s3://<bucket>/<root_prefix>``."""
        return self._main.base_url

    @property
    def root_prefix(self) -> str:
        """The S3 key prefix of this store."""
        return self._main.root_prefix

    @property
    def bucket_name(self) -> str:
        """The S3 bucket of this store."""
        return self._main.bucket_name

    @property
    def digest_len(self) -> int:
        """Digest suffix length of the local cache's file names."""
        return self._digest_len

    @property
    def main_dict(self) -> BasicS3Dict[ValueType]:
        """The authoritative BasicS3Dict."""
        return self._main

    def get_params(self) -> dict[str, Any]:
        # docstring inherited
        params = self._main.get_params()
        params.update(base_dir=self._base_dir, digest_len=self._digest_len)
        return sorted_params(params)

    def etag(self, key: Any) -> ETagValue:
        # docstring inherited; MutableDictCached answers from the cached record when it can
        return self._inner.etag(key)

    def transform_item(
        self,
        key: Any,
        *,
        transformer: TransformingFunction[ValueType],
        n_retries: int | None = 6,
    ) -> OperationResult[ValueType]:
        # docstring inherited; append-only refusal comes from the cached wrapper.
        return self._inner.transform_item(key, transformer=transformer, n_retries=n_retries)

    def get_subdict(self, prefix_key: Any) -> S3Dict_FileDirCached[ValueType]:
        """Return the same store scoped to ``prefix_key`` (S3 prefix and caches alike).

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        S3Dict_FileDirCached
            Over the S3 prefix extended by ``prefix_key``.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        BackendError
            The bucket's ``head_bucket`` failed.
        """
        prefix = to_prefix(prefix_key)
        params = self.get_params()
        if prefix:
            params["root_prefix"] = self.root_prefix + "/".join(prefix.strings) + "/"
        client = self._main.client if self._main.injected_client else None
        return S3Dict_FileDirCached(**params, client=client)


S3Dict = S3Dict_FileDirCached
