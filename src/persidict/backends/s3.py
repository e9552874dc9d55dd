"""BasicS3Dict: one S3 object per key, atomic through native conditional headers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine.keys import to_prefix
from ..engine.persidict import PersiDict
from ..engine.results import ValueType
from ..engine.values import sorted_params
from .s3_bytes import WRITE_TOKEN, S3Bytes, write_token
from .s3_transport import RetryPolicy, check_bucket_name, ensure_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["WRITE_TOKEN", "BasicS3Dict", "write_token"]


class BasicS3Dict(PersiDict[ValueType]):
    """A persistent dict storing each value as one S3 object.

    Key ``("a", "b")`` is the object ``<root_prefix>a/b.<serialization_format>``
    in ``bucket_name``: plain key components, no digest suffixes (S3 keys are
    case-sensitive, so keys differing only by case never collide). Values use
    the same codecs as FileDirDict; etags are S3's native ETags.

    Atomicity: every primitive is one S3 request, and the conditional ones
    use the server's native preconditions, so every ``*_if`` operation,
    transform_item, setdefault, pop and popitem is linearizable across
    threads, processes and machines, provided the server honours them:
    insert-if-absent is ``PUT If-None-Match: *``, compare-and-swap is
    ``PUT If-Match``, conditional delete is ``DELETE If-Match``, and an
    unchanged read is ``GET If-None-Match`` (304, no body). A plain delete is
    ``DELETE If-Match: *`` so that whether the key existed is reported
    atomically (404: it did not). Its 412 means "absent" to servers that
    honour ``*`` and "present" to those that compare it literally (moto 5):
    a HEAD then finds the current etag and ``DELETE If-Match: <etag>``
    deletes exactly that (412 again: changed meanwhile, look again). A plain
    write is a plain ``PUT``; readers see a whole old or new object.

    Lost replies: a write whose attempt may have been applied is never resent
    (a second copy could apply it twice). Every PUT carries a token of its
    own in the object's user metadata: if the current object holds it, the
    write is proven (success); otherwise, and for such deletes,
    OutcomeUnknownError.

    Locked: nothing; the server serializes conditional requests on a key.
    Not atomic: listing (``len``, iteration, ``clear``, timestamps of many
    keys) is a paginated ``ListObjectsV2`` and sees a moving bucket.
    Not probed: the server's support for conditional requests is assumed,
    never tested by writing into the user's bucket.
    Construction (get_subdict and unpickling included) sends one
    ``head_bucket`` and creates a missing bucket: nothing is remembered per
    process, so a bucket deleted since (or a test mock reset) is found again.

    Parameters
    ----------
    bucket_name : str, default "my_bucket"
        The bucket. A name no S3 client can send is refused before any
        request; one the server refuses (AWS's rules; the default
        ``my_bucket`` breaks them, moto and MinIO take it) fails at
        construction with the same message.
    region : str or None, default None
        The AWS region; None uses boto3's configuration.
    root_prefix : str, default ""
        Prefix of every object name (a ``/`` is appended if missing).
    serialization_format : str, default "pkl"
        ``"pkl"``, ``"json"`` or a text format; also the object suffix.
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    base_class_for_values : type or None, default None
        If given, every value must be an instance of it.
    endpoint_url : str or None, default None
        An S3-compatible server (MinIO, SeaweedFS...); None for AWS.
    client : S3Client or None, default None
        A boto3 client to use instead of building one (not a parameter of
        ``get_params``; refused in a forked child).

    Raises
    ------
    ValueError
        ``bucket_name`` is empty, cannot be sent, or the server refuses it
        (the message names the bucket, why, and S3's rules), or ``serialization_format`` is
        invalid.
    TypeError
        ``root_prefix``, ``region`` or ``endpoint_url`` is not a str.
    BackendError
        The bucket can neither be found nor created.
    """

    _bytes: S3Bytes

    def __init__(
        self,
        *,
        bucket_name: str = "my_bucket",
        region: str | None = None,
        root_prefix: str = "",
        serialization_format: str = "pkl",
        append_only: bool = False,
        base_class_for_values: type | None = None,
        endpoint_url: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        super().__init__(
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            serialization_format=serialization_format,
        )
        if not isinstance(bucket_name, str) or not bucket_name:
            raise ValueError(f"bucket_name must be a non-empty str, got {bucket_name!r}")
        check_bucket_name(bucket_name)
        if not isinstance(root_prefix, str):
            raise TypeError(f"root_prefix must be a str, got {type(root_prefix).__name__}")
        for name, v in (("region", region), ("endpoint_url", endpoint_url)):
            if v is not None and not isinstance(v, str):
                raise TypeError(f"{name} must be a str or None, got {type(v).__name__}")
        if root_prefix and not root_prefix.endswith("/"):
            root_prefix += "/"
        self.bucket_name = bucket_name
        self.region = region
        self.root_prefix = root_prefix
        self.endpoint_url = endpoint_url
        self._bytes = S3Bytes(
            bucket_name=bucket_name, root_prefix=root_prefix, suffix="." + serialization_format,
            endpoint_url=endpoint_url, region=region, client=client,
        )
        ensure_bucket(self._bytes.transport, self._bytes.client, bucket_name, region)

    # -- configuration ------------------------------------------------------

    @property
    def client(self) -> S3Client:
        """The boto3 client (rebuilt after a fork; an injected one is refused there).

        Connections of a pool inherited through fork() are shared with the
        parent: each process could read the other's replies (wrong values).
        """
        return self._bytes.client

    @property
    def injected_client(self) -> bool:
        """Whether the boto3 client was given to the constructor (not built here)."""
        return self._bytes.injected

    @property
    def s3_client(self) -> S3Client:
        """The boto3 client: the same object as `client`."""
        return self.client

    @property
    def retry_policy(self) -> RetryPolicy:
        """Bounds of the retries of transient failures (tests inject sleep/clock)."""
        return self._bytes.transport.policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._bytes.transport.policy = policy

    @property
    def base_url(self) -> str:
        """``s3://<bucket>/<root_prefix>``."""
        return f"s3://{self.bucket_name}/{self.root_prefix}"

    def get_params(self) -> dict[str, Any]:
        # docstring inherited; the client is not a parameter: it is rebuilt
        # from endpoint_url and region (a client cannot be pickled).
        params = super().get_params()
        params.update(
            bucket_name=self.bucket_name,
            region=self.region,
            root_prefix=self.root_prefix,
            endpoint_url=self.endpoint_url,
        )
        return sorted_params(params)

    def get_subdict(self, prefix_key: Any) -> BasicS3Dict[ValueType]:
        """Return a BasicS3Dict whose root_prefix extends this one by ``prefix_key``.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        BasicS3Dict
            Sharing this store's retry policy, and its client if one was given.

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
        child = BasicS3Dict(**params, client=self.client if self.injected_client else None)
        child.retry_policy = self.retry_policy
        return child
