"""``check(fix=False)``: report, then optionally repair, what crashes left behind.

Like diskcache's ``Cache.check``: one walk over a FileDirDict directory that
finds

- ``dead_intent``: a temp file in a journal directory (``@persidict/tmp``)
  whose owner is dead - an interrupted write (fix: remove it; it was never
  committed, so nothing is lost);
- ``orphan_temp``: the same outside a journal directory (EXDEV fallback
  temps, or temps an outside hand copied in), or a store marker a dead
  opener was making (a temp directory) (fix: remove it);
- ``unreadable``: a value file whose bytes are not a well-formed value of
  its format - torn or garbage (fix: move it into
  ``@persidict/quarantine/<run>/``; never deleted);
- ``stray``: anything that is neither a key nor ours - a name no key maps
  to, a symlink, a fifo (fix: move it into the quarantine as well);
- ``empty_dir``: a directory tree holding no file at all, left by a crash
  between a delete and its pruning (fix: rmdir bottom-up; rmdir never
  removes a directory a racing writer has just filled).

A directory below the checked one that holds a store marker of its own (a
root, or the sub marker of a store opened below a root with other
parameters, see ``marker.py``) is another store, with its own parameters:
it is listed in ``nested_stores`` and left alone. A marker being made (a
live opener's temp directory) is left alone too. A stray is moved under the
root's MARKERS_LOCK, after making sure that no store marker appeared on its
path or below it meanwhile: an opener makes a sub marker under that lock.

Temp files of live writers are counted but never touched. Values are checked
structurally (pickle opcodes via pickletools, JSON syntax, UTF-8) without
constructing objects: a value whose class the checking process cannot import
is not corrupt, and must not be quarantined. Unreadable values are moved under
their key's lock after re-reading them, so a value just replaced is never moved.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickletools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field

from ..engine.keys import is_safe_component
from ..engine.names import is_bucket, unsign_component, unsign_names
from .atomic import make_dirs, read_file
from .journal import JOURNAL_DIR, TEMP_PREFIX, temp_verdict
from .locks import META_DIR
from .marker import ROOT, SUB, settle

QUARANTINE_DIR = "quarantine"
KINDS = ("dead_intent", "orphan_temp", "unreadable", "stray", "empty_dir")

LockFor = Callable[[str], AbstractContextManager[object]]


@dataclass
class Finding:
    """One problem: its kind, where it is, why, and what a fix did to it."""

    kind: str
    path: str
    detail: str
    action: str = ""


@dataclass
class CheckReport:
    """The outcome of one check: problems found (and repaired if ``fixed``)."""

    root: str
    fixed: bool
    findings: list[Finding] = field(default_factory=list)
    value_files: int = 0
    live_temps: int = 0
    nested_stores: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    def counts(self) -> dict[str, int]:
        """Number of findings of each kind (every kind present, zeros included)."""
        counts = dict.fromkeys(KINDS, 0)
        for f in self.findings:
            counts[f.kind] += 1
        return counts

    def to_dict(self) -> dict[str, object]:
        """A JSON-serializable form of the report."""
        return {**asdict(self), "clean": self.clean, "counts": self.counts()}

    def __str__(self) -> str:
        lines = [
            f"persidict check {self.root}: {self.value_files} value files, "
            f"{self.live_temps} temp files of live writers"
        ]
        for path in self.nested_stores:
            lines.append(f"  {'(skipped)':12} {path}: another store (its own marker), not checked")
        for f in self.findings:
            action = f" -> {f.action}" if f.action else ""
            lines.append(f"  {f.kind:12} {f.path}: {f.detail}{action}")
        counts = ", ".join(f"{k}={n}" for k, n in self.counts().items() if n)
        status = "clean" if self.clean else ("repaired: " if self.fixed else "PROBLEMS: ") + counts
        lines.append(status)
        return "\n".join(lines)


def well_formed(data: bytes, fmt: str) -> str | None:
    """None if ``data`` is a well-formed value of format ``fmt``, else why not."""
    try:
        if fmt == "pkl":
            ops = list(pickletools.genops(data))  # raises on torn or garbage bytes
            if not ops or ops[-1][0].name != "STOP":
                return "no pickle STOP opcode"
        elif fmt == "json":
            json.loads(data.decode("utf-8"))
        else:
            data.decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        return f"not a well-formed {fmt!r} value: {exc}"
    return None


class _Checker:
    def __init__(
        self,
        root: str,
        meta_dir: str,
        digest_len: int,
        lock_for: LockFor,
        markers_lock_for: LockFor,
        fix: bool,
        hashed: bool = False,
    ) -> None:
        self.root = root
        self.meta_dir = meta_dir
        self.digest_len = digest_len
        self.hashed = hashed
        self.lock_for = lock_for
        self.markers_lock_for = markers_lock_for
        self.report = CheckReport(root=root, fixed=fix)
        self.stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
        self.seen_meta: set[str] = set()

    def add(self, kind: str, path: str, detail: str) -> Finding:
        finding = Finding(kind, path, detail)
        self.report.findings.append(finding)
        return finding

    # -- fixes -------------------------------------------------------------

    def quarantine(self, finding: Finding) -> bool:
        """Move ``finding.path`` into the quarantine; True if it is gone."""
        rel = os.path.relpath(finding.path, os.path.dirname(self.meta_dir))
        dest = os.path.join(self.meta_dir, QUARANTINE_DIR, self.stamp, rel)
        try:
            make_dirs(os.path.dirname(dest), durable=False)
            os.rename(finding.path, dest)
        except FileNotFoundError:
            finding.action = "already gone"
            return True
        except OSError as exc:
            finding.action = f"NOT moved: {exc}"
            return False
        finding.action = f"moved to {dest}"
        return True

    def remove(self, finding: Finding, marker: bool = False) -> bool:
        """Remove the temp file (or ``marker`` directory) ``finding.path``; True if gone."""
        try:
            if marker:  # it holds nothing but the marker's files
                for child in os.listdir(finding.path):
                    os.unlink(os.path.join(finding.path, child))
                os.rmdir(finding.path)
            else:
                os.unlink(finding.path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # say a directory given a temp's name: not ours to empty
            finding.action = f"NOT removed: {exc}"
            return False
        finding.action = "removed"
        return True

    # -- the walk ------------------------------------------------------------

    def temp(self, path: str, name: str, kind: str) -> bool:
        """Judge a temp-named file; True if it remains (live or kept)."""
        state = temp_verdict(path, name)
        if state is None:
            return self.stray(path, "a temp-like name that records no owner")
        if state != "dead":
            self.report.live_temps += 1
            return True
        finding = self.add(kind, path, "temp file of a dead writer (uncommitted write)")
        return not self.report.fixed or not self.remove(finding)

    def marker_temp(self, path: str, name: str) -> bool:
        """A marker an opener was making (marker.py); True if it remains."""
        if temp_verdict(path, name) != "dead":
            self.report.live_temps += 1
            return True
        finding = self.add("orphan_temp", path, "a store marker a dead opener was making")
        return not self.report.fixed or not self.remove(finding, marker=True)

    def stray(self, path: str, detail: str) -> bool:
        finding = self.add("stray", path, detail)
        if not self.report.fixed:
            return True
        with self.markers_lock_for(os.path.relpath(path, self.root)):
            marker = _marker_near(self.root, path)
            if marker is not None:
                finding.action = f"left: {marker} is a store's marker (made meanwhile)"
                return True
            return not self.quarantine(finding)

    def meta(self, path: str) -> None:
        """A ``@persidict`` directory: check its journal, skip lock and quarantine."""
        if path in self.seen_meta:
            return
        self.seen_meta.add(path)
        journal = os.path.join(path, JOURNAL_DIR)
        try:
            names = os.listdir(journal)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            self.temp(os.path.join(journal, name), name, "dead_intent")

    def value(self, path: str, rel: str, fmt: str) -> bool:
        """Check one value file; True if it remains in place."""
        self.report.value_files += 1
        data = read_file(path)
        if data is None:
            return False  # deleted while we looked
        why = well_formed(data, fmt)
        if why is None:
            return True
        finding = self.add("unreadable", path, why)
        if not self.report.fixed:
            return True
        with self.lock_for(rel):
            if read_file(path) != data:
                finding.action = "left: rewritten meanwhile"
                return True
            return not self.quarantine(finding)

    def nested(self, path: str, real: str) -> bool:
        """True if the directory ``path`` (real path ``real``) holds another store's marker."""
        if not os.path.isdir(os.path.join(path, META_DIR)) or settle(real) not in (ROOT, SUB):
            return False
        self.report.nested_stores.append(path)
        return True

    def key_dir(self, name: str, bucket: str | None) -> tuple[bool, str | None]:
        """(whether a directory ``name`` belongs in one of ``bucket``, its own bucket).

        Hashed layout: a key level holds buckets only; a bucket ``+xy`` only
        the names of components hashing to ``xy``."""
        if not self.hashed:
            return unsign_component(name, self.digest_len) is not None, None
        if bucket is None:
            return is_bucket(name), name
        return bool(unsign_names([name], self.digest_len, bucket)), None

    def key_file(self, stem: str, bucket: str | None) -> bool:
        """Whether a file ``<stem>.<format>`` in a directory of ``bucket`` is a key's."""
        if self.hashed and bucket is None:
            return False  # a key level of the hashed layout holds no files
        return bool(unsign_names([stem], self.digest_len, bucket))

    def walk(self, directory: str, real: str, rel: str, bucket: str | None = None) -> bool:
        """Check a directory tree (the bucket ``bucket``); True if it holds only empty dirs."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return True
        remaining = 0
        empty_children = []
        for entry in entries:
            name, path = entry.name, entry.path
            child_rel = f"{rel}{name}"
            if name == META_DIR and entry.is_dir(follow_symlinks=False):
                self.meta(path)
                remaining += 1
            elif name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                remaining += self.temp(path, name, "orphan_temp")
            elif name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False) and (
                temp_verdict(path, name) is not None
            ):
                remaining += self.marker_temp(path, name)
            elif name.startswith("@"):
                remaining += self.stray(path, "not a key and not persidict's")
            elif entry.is_dir(follow_symlinks=False):
                belongs, child_bucket = self.key_dir(name, bucket)
                if self.nested(path, f"{real}/{name}"):
                    remaining += 1
                elif not belongs:
                    remaining += self.stray(path, "a directory name no key maps to")
                elif self.walk(path, f"{real}/{name}", child_rel + "/", child_bucket):
                    empty_children.append(path)
                else:
                    remaining += 1
            elif entry.is_file(follow_symlinks=False):
                stem, dot, fmt = name.rpartition(".")
                if not dot or not stem or not is_safe_component(fmt) or (
                    not self.key_file(stem, bucket)
                ):
                    remaining += self.stray(path, "a file name no key maps to")
                else:
                    remaining += self.value(path, child_rel, fmt)
            else:
                remaining += self.stray(path, "not a regular file or directory")
        if remaining == 0 and directory != self.root:
            return True  # our parent reports the topmost empty directory
        for path in empty_children:
            finding = self.add("empty_dir", path, "holds no file (a delete's pruning)")
            if self.report.fixed:
                _prune_tree(path)
                finding.action = "pruned"
        return False


def _marker_near(root: str, path: str) -> str | None:
    """A store marker between ``root`` (excluded) and ``path``, or below ``path``."""
    level = os.path.dirname(path)
    while len(level) > len(root):
        meta = os.path.join(level, META_DIR)
        if os.path.isdir(meta) and not os.path.islink(meta):  # a planted link is no marker
            return meta
        level = os.path.dirname(level)
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, _ in os.walk(path):
            if META_DIR in dirnames:
                return os.path.join(dirpath, META_DIR)
    return None


def _prune_tree(top: str) -> None:
    """rmdir every directory under ``top``, deepest first (never rmtree)."""
    for dirpath, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def check_tree(
    root: str,
    *,
    meta_dir: str,
    digest_len: int,
    lock_for: LockFor,
    markers_lock_for: LockFor,
    fix: bool = False,
    layout: str = "direct",
) -> CheckReport:
    """Check (and with ``fix`` repair) the FileDirDict directory ``root``.

    ``meta_dir`` is the ``@persidict`` directory of root's lock root (where
    the journal and the quarantine live); ``lock_for(rel)`` holds the lock
    of the key file at ``rel`` (relative to ``root``), ``markers_lock_for(rel)``
    the MARKERS_LOCK of its root (see ``marker.py``). ``layout``: the
    store's, ``direct`` or ``hashed`` (see FileDirDict).
    """
    hashed = layout == "hashed"
    checker = _Checker(root, meta_dir, digest_len, lock_for, markers_lock_for, fix, hashed)
    checker.meta(meta_dir)
    checker.walk(root, os.path.realpath(root), "")
    return checker.report


def detect_digest_len(root: str, sample: int = 2000) -> int:
    """Guess a directory's digest_len from its entry names (0 if unsigned).

    Any name is valid with digest_len 0, so a positive length wins when it
    explains most sampled names.
    """
    names: list[str] = []
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith("@")]
        names.extend(dirnames)
        names.extend(f.rpartition(".")[0] for f in filenames if not f.startswith("@"))
        if len(names) >= sample:
            break
    names = [n for n in names[:sample] if n]
    if not names:
        return 4
    best, best_hits = 0, 0
    for n in range(1, 27):  # base32 of an MD5 has 26 characters
        hits = sum(unsign_component(name, n) is not None for name in names)
        if hits > best_hits:
            best, best_hits = n, hits
    return best if best_hits * 2 > len(names) else 0
