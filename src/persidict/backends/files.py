"""FileDirDict: one file per key under a base directory."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

from ..concurrency.journal import Journal
from ..concurrency.lock_tree import LockTree
from ..concurrency.locks import META_DIR, require_file_locks
from ..concurrency.marker import open_root
from ..concurrency.repair import CheckReport, check_tree
from ..engine.keys import MAX_DIGEST_LEN, NonEmptySafeStrTuple, to_prefix
from ..engine.names import LAYOUTS
from ..engine.persidict import PersiDict
from ..engine.results import ValueType
from ..engine.values import sorted_params
from .file_bytes import MISSING, FileBytes, content_etag
from .file_walk import path_parts, planted_link

__all__ = ["FileDirDict", "content_etag"]

# META_DIR ("@persidict"): our own files live there; '@' is not a safe key
# character, so no key can.

_ENOENT_TEXT = os.strerror(errno.ENOENT)  # once: strerror costs more than the exception


class FileDirDict(PersiDict[ValueType]):
    """A persistent dict storing each value in its own file.

    Key ``("a", "b")`` lives in ``base_dir/a_<d>/b_<d>.<format>`` where
    ``<d>`` is the first ``digest_len`` characters of the lower-cased base32
    MD5 of the component (no suffix when ``digest_len=0``), so keys that differ
    only by case coexist on case-insensitive filesystems.

    That is ``layout="direct"``, the default (the reference's). With
    ``layout="hashed"`` each component sits in a bucket directory ``+xy``
    (2 base32 MD5 characters): ``base_dir/+xy/a_<d>/+zw/b_<d>.<format>``, so
    a million keys spread over 1024 directories and lookups stay as fast as
    in a small store. A store records its layout (``@persidict/params.json``);
    opening it with the other one raises ValueError.

    Atomicity: every operation, including each ``*_if`` operation,
    transform_item, pop, popitem and setdefault, is linearizable across
    threads and processes of one machine. Mutations of a key hold that key's
    lock (see ``concurrency/locks.py``) and replace its file by renaming a
    fully written temp file, so readers take no lock and always see a whole
    old or new value. Etags are content hashes. With ``durable=True`` (the
    default) the temp file is fsynced before the rename and the directory
    after it; ``durable=False`` skips both (faster; a power loss may then
    lose recent writes, never tear them).

    Crashes: temp files are made in ``@persidict/tmp/`` and named after their
    writer (see ``concurrency/journal.py``); opening a store, and writers
    every ``LAZY_INTERVAL`` seconds, reclaim those of dead writers. A SIGKILL
    at any point leaves only states that single-key operations produce.
    ``check(fix=...)`` reports and repairs what crashes or outside hands left.

    Symlinks inside base_dir (planted from outside) are never keys, and
    every API agrees: listings skip them, reads, ``in``, ``timestamp`` and
    deletes take a key at or below one for absent (a delete leaves the link),
    a write replaces a link at the key's own path (rename replaces the link,
    not its target) and refuses with BackendError a key below a directory
    symlink, so no write leaves the store.

    Parameters
    ----------
    base_dir : str or os.PathLike, default "__file_dir_dict__"
        The store's directory (created if missing).
    serialization_format : str, default "pkl"
        ``"pkl"``, ``"json"``, or another name for plain-text values (then
        ``base_class_for_values`` must be ``str``); also the file suffix.
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    digest_len : int, default 4
        Characters of each component's digest in its file name (0 to 26).
    base_class_for_values : type or None, default None
        If given, every value written or read must be an instance of it.
    durable : bool, default True
        fsync each written file and its directory (False: faster, a power
        loss may lose recent writes but never tears one).
    layout : {"direct", "hashed"}, default "direct"
        ``"hashed"`` spreads big directories over 1024 bucket directories.

    Raises
    ------
    ValueError
        A parameter is out of range, or the directory holds a store opened
        with another ``digest_len`` or ``layout``.
    TypeError
        A parameter has the wrong type.
    NotImplementedError
        On Windows (no per-key file locks yet, see the README's platforms).
    """

    _bytes: FileBytes

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike[str] = "__file_dir_dict__",
        serialization_format: str = "pkl",
        append_only: bool = False,
        digest_len: int = 4,
        base_class_for_values: type | None = None,
        durable: bool = True,
        layout: str = "direct",
    ) -> None:
        require_file_locks()  # Windows, or a bad PERSIDICT_LOCKS: refuse before any file is made
        super().__init__(
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            serialization_format=serialization_format,
        )
        if not isinstance(digest_len, int) or isinstance(digest_len, bool):
            raise TypeError(f"digest_len must be an int, got {digest_len!r}")
        if not 0 <= digest_len <= MAX_DIGEST_LEN:
            raise ValueError(
                f"digest_len must be within [0, {MAX_DIGEST_LEN}] (the length of a base32 "
                f"MD5), got {digest_len}"
            )
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be a bool, got {durable!r}")
        if not isinstance(base_dir, (str, os.PathLike)):
            raise TypeError(f"base_dir must be a path, got {type(base_dir).__name__}")
        self.digest_len = digest_len
        self.durable = durable
        self.layout = layout
        hashed = layout == "hashed"
        self._base = os.path.abspath(os.fspath(base_dir))
        for attempt in range(8):
            try:
                os.makedirs(self._base, exist_ok=True)
                break
            except FileNotFoundError:  # a parent just moved or pruned (check --fix): again
                if attempt == 7:
                    raise
            except (FileExistsError, NotADirectoryError) as exc:
                raise ValueError(f"base_dir {self._base} exists and is not a directory") from exc
        # Keys are locked in the lock file of the nearest root above them (see
        # concurrency/marker.py, lock_tree.py); a store opened where there is none makes one,
        # recording the parameters that shape its file names.
        self._real_base = os.path.realpath(self._base)
        # The layout is recorded when not the default: older markers read as direct.
        params = {"digest_len": digest_len, **({"layout": layout} if hashed else {})}
        # None: no settled root and none can be made now (read-only): the
        # store stays readable, and its writes raise instead of guessing a lock
        home = open_root(self._real_base, params, durable=durable)
        self._home_root = home or self._real_base
        journal = Journal(os.path.join(self._home_root, META_DIR))
        self._lock_tree = LockTree(self._real_base, home)
        self._bytes = FileBytes(
            self._base, suffix="." + serialization_format, digest_len=digest_len,
            hashed=hashed, durable=durable, journal=journal, lock_tree=self._lock_tree,
        )
        # Recovery on open: reclaim temp files of dead writers (one listdir).
        # A read-only store is still readable, so failures are not fatal.
        with contextlib.suppress(OSError):
            journal.recover()

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits for a key's lock before LockTimeoutError (60)."""
        return self._lock_tree.timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._lock_tree.timeout = seconds

    @property
    def base_dir(self) -> str:
        """Absolute path of this store's directory."""
        return self._base

    def get_params(self) -> dict[str, Any]:
        # docstring inherited
        params = super().get_params()
        params.update(base_dir=self._base, digest_len=self.digest_len, durable=self.durable,
                      layout=self.layout)
        return sorted_params(params)

    def __iter__(self) -> Iterator[NonEmptySafeStrTuple]:
        # Keys without the (key, timestamp) pairs of a scan: a listing's floor.
        return self._bytes.keys()

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        # A plain get needs no etag; pickle decodes a big value from a view.
        if self.serialization_format == "pkl":
            value = self._bytes.decoded(key, lambda data: self._decode(key, data))
        else:
            data = self._bytes.read_data(key)
            value = MISSING if data is None else self._decode(key, data)
        if value is MISSING:
            # Built only on a miss, so a hit pays nothing for it.
            path = self._bytes.path(key)
            raise KeyError(key) from FileNotFoundError(errno.ENOENT, _ENOENT_TEXT, path)
        return value

    def check(self, fix: bool = False) -> CheckReport:
        """Report what crashes or outside hands left in this store's directory.

        Finds ``dead_intent``/``orphan_temp`` temp files of dead writers,
        ``unreadable`` values, ``stray`` files no key maps to (in this store's
        layout) and ``empty_dir`` trees; ``fix=True`` repairs them without
        losing data (see ``concurrency/repair.py``). Live writers are left alone.

        Parameters
        ----------
        fix : bool, default False
            Repair what is found: reclaim dead writers' temp files, move
            unreadable and stray files to ``@persidict/quarantine/`` (never
            deleted), remove empty directories. Each repair takes the lock of
            the key it touches, so it is safe while other processes use the store.

        Returns
        -------
        CheckReport
            The findings (kind and path each), counts of value files and live
            temps, nested stores left alone, and whether it repaired them.

        Raises
        ------
        OSError
            If the store's directory cannot be walked.
        """
        return check_tree(
            self._base,
            meta_dir=os.path.join(self._home_root, META_DIR),
            digest_len=self.digest_len,
            layout=self.layout,
            lock_for=self._lock_tree.hold,
            markers_lock_for=self._lock_tree.hold_markers,
            fix=fix,
        )

    def get_subdict(self, prefix_key: Any) -> FileDirDict[ValueType]:
        """A FileDirDict rooted at the subdirectory of ``prefix_key``.

        It shares this store's locks, so both stay atomic against each other.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; empty gives a store of all keys.

        Returns
        -------
        FileDirDict
            The store of the keys under ``prefix_key`` (without the prefix),
            with this store's parameters.

        Raises
        ------
        ValueError, TypeError
            If ``prefix_key`` is not a valid key prefix.
        BackendError
            If the prefix's directory is a symlink planted in the store.
        """
        prefix = to_prefix(prefix_key)
        params = self.get_params()
        b = self._bytes
        rel = "/".join(path_parts(prefix.strings, b.digest_len, "", b.hashed)) if prefix else ""
        if rel:
            params["base_dir"] = f"{self._base}/{rel}"
            link = planted_link(self._base, params["base_dir"] + "/")
            self._bytes.refuse_link(link, f"open the subdict {prefix.strings!r}")
        return FileDirDict(**params)


