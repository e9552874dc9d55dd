"""Store roots: which ``@persidict`` marker holds the lock of each file.

A *root* is a directory whose META_DIR marker is committed a root. A file is
locked in the lock file of the nearest root above it, under its path
relative to that root. A marker ``D/@persidict`` is in one of these states:

- absent;
- pending: made, not decided yet (no ``state`` file);
- root or sub: its ``state`` file says so. A sub marker is the marker of a
  store opened below a root: not a lock root, but it records that store's
  parameters, so ``check`` leaves it to its own parameters. The verdict is
  written once, atomically (rename), under an OFD lock on the marker's
  ``root.lock``, by whoever meets the marker pending first; or, for a sub
  marker made below a known root, before the marker becomes visible.
  Markers are never removed.

Markers of earlier versions have no ``state`` but hold a lock file, a journal
or a quarantine, which a pending marker never does (those are made only in a
root): they are roots. A ``void`` state (an earlier draft) reads as sub.

A marker is made whole: a temp directory holding ``params.json`` (the
parameters that shape the store's file names, which ``persidict check``
reads instead of guessing) is renamed to ``@persidict``, so no crash leaves
a marker without parameters.

Protocol:

- create: a store opened where no root is found makes ``D/@persidict``
  (pending) and decides it; a store opened below a root whose file names
  its nearest store's parameters do not explain (another digest_len, a
  directory name no key maps to) makes a sub marker there;
- decide D: under D's root.lock, reread D; if still pending, look at every
  ancestor of D from the top (deciding pending ones): sub if one is a root,
  else root;
- resolve a file: read the markers of its ancestors from the top down
  (deciding pending ones); the deepest root wins. Per-directory answers
  are cached (lock_tree.py): a directory's is its parent's unless it is a root.

Why every process maps a file to the same root, for the life of the store.
Roots stay roots; a sub verdict changes only when no root is above it any
more - its tree was moved or copied away - and then to root (``decide``,
under its lock, which every reader of a sub marker takes too). Say a reader
answered R for a file f: it read R as a root, and *afterwards* read each
marker D between R and f as absent or sub. If absent, D was made later than
that read, so after R was a root, and every decision of D reads R then: D is
sub. If sub, a promotion of D reads its ancestors under D's lock either
before the reader took it (then the reader waited and read a root) or after
(then it reads R and keeps D sub). So no marker between R and f is ever a
root, and every reader at every time answers R. Reading top-down is what
makes this hold: read bottom-up, a marker D could be absent when read, then
be made and decided a root before R is made and read.
The topmost pending marker on a path sees no root above, so every pending
marker gets decided and there is no deadlock: a decision takes the
root.lock of an ancestor only while holding that of a descendant.
The argument needs a filesystem whose directory operations are seen at once
by every process (any local one; the same holds for the locks themselves).
Deciding a marker is part of locking, not a repair: any reader may do it.

Undecided: a pending marker that cannot be decided now (a read-only mount,
no space, no permission) leaves every directory below it unsettled. Reads
need no lock and go on; a write there re-resolves when it takes its lock,
and raises if the marker is still undecided. Nothing unsettled is cached.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from typing import Any

from ..engine.names import unsign_names
from .atomic import fsync_dir, write_atomic
from .journal import temp_name
from .locks import DEFAULT_LOCK_TIMEOUT, META_DIR, KeyLocks

ROOT, SUB, VOID, PENDING, ABSENT = "root", "sub", "void", "pending", "absent"
STATE = "state"
PARAMS = "params.json"
_DECISION_LOCK = "root.lock"
# Names only a root ever holds (the key lock file, the journal, the quarantine).
_ROOT_ONLY = frozenset({"lock", "tmp", "quarantine"})
_STRIPE_PREFIX = "lock-"  # the flock backend's lock-stripe files (locks_flock.py)


def _holds_root_only(names: list[str]) -> bool:
    """Whether a marker without a ``state`` holds what only a root ever holds."""
    return bool(_ROOT_ONLY.intersection(names)) or any(
        n.startswith(_STRIPE_PREFIX) for n in names
    )
_MAX_ROUNDS = 8
# The name, in a root's lock file, held while a sub marker is made below that
# root and while ``check --fix`` moves a stray: a store's directory is never
# moved away while its marker is being made ('@' keeps it off every key's name).
MARKERS_LOCK = f"{META_DIR}/markers"
# What keeps a marker from being made or decided now: not ours to write.
_CANNOT_WRITE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def marker_state(directory: str) -> str:
    """The state of ``directory``'s marker, as read now (without deciding)."""
    meta = os.path.join(directory, META_DIR)
    try:  # a symlink planted from outside is no marker (O_NOFOLLOW: ELOOP)
        fd = os.open(meta, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # absent, not a directory, a symlink, or not ours to read
        return ABSENT
    try:
        names = os.listdir(fd)
    except OSError:
        return ABSENT
    finally:
        os.close(fd)
    if STATE not in names:
        return ROOT if _holds_root_only(names) else PENDING
    try:
        with open(os.path.join(meta, STATE), "rb") as f:
            verdict = f.read(4)
    except FileNotFoundError:  # removed by an outside hand
        return ABSENT
    return ROOT if verdict == b"root" else SUB if verdict == b"sub" else VOID


def decide(directory: str, seen: str = PENDING) -> str:
    """The verdict on ``directory``'s marker, deciding it if it is pending.

    PENDING when it cannot be decided now (see the module's "Undecided").
    A sub marker with no root above any more (its tree was moved or copied
    away from its root) becomes a root; ``seen``: the state read before.
    """
    meta = os.path.join(directory, META_DIR)
    try:
        locks = KeyLocks(os.path.join(meta, _DECISION_LOCK), DEFAULT_LOCK_TIMEOUT, whole_file=True)
        with locks.hold_at(0, f"the marker of {directory}"):
            state = marker_state(directory)
            if state not in (PENDING, SUB, VOID):
                return state
            above = _above(directory)
            if state != PENDING:
                if above == ROOT:
                    _confirm(directory)
                if above != ABSENT:
                    return state
                verdict = ROOT
            elif above == PENDING:
                return PENDING
            else:
                verdict = SUB if above == ROOT else ROOT
            write_atomic(os.path.join(meta, STATE), verdict.encode(), durable=True)
            return verdict
    except FileNotFoundError:  # removed by an outside hand
        return ABSENT
    except OSError as exc:
        if exc.errno in _CANNOT_WRITE:
            return PENDING if seen == PENDING else seen  # nobody can promote it either
        raise


def settle(directory: str) -> str:
    """``directory``'s marker state, deciding it if pending (PENDING: undecided).

    A sub marker is read under its lock too: a reader that saw the root
    above it, then the marker, cannot miss a concurrent promotion (decide).
    """
    state = marker_state(directory)
    if state == SUB and directory in _confirmed:
        return state
    return decide(directory, state) if state in (PENDING, SUB, VOID) else state


# Sub markers this process read with a root above: roots stay, so they stay
# sub (as long as nobody moves the live tree) and need no lock to read again.
_confirmed: set[str] = set()


def _confirm(directory: str) -> None:
    if len(_confirmed) >= 4096:
        _confirmed.clear()
    _confirmed.add(directory)


def is_root(directory: str) -> bool:
    """True if ``directory`` is a root (deciding its marker if pending)."""
    return settle(directory) == ROOT


def _top_down(directory: str) -> list[str]:
    """``directory`` and its ancestors, the filesystem root first."""
    levels = [directory]
    while (parent := os.path.dirname(levels[-1])) != levels[-1]:
        levels.append(parent)
    return levels[::-1]


def _above(directory: str) -> str:
    """ROOT if an ancestor is a root, else PENDING if one is undecided, else ABSENT."""
    states = [settle(level) for level in _top_down(directory)[:-1]]
    return ROOT if ROOT in states else PENDING if PENDING in states else ABSENT


def find_markers(directory: str) -> tuple[str | None, str | None, bool]:
    """(nearest root, nearest store marker, settled) at or above ``directory``.

    A store marker is a root or a sub marker. Not settled: an undecided
    marker lies below the nearest root (or, without a root, anywhere).
    """
    root = store = None
    settled = True
    for level in _top_down(directory):
        state = settle(level)
        if state == ROOT:
            root = store = level
            settled = True
        elif state == SUB:
            store = level
        elif state == PENDING:
            settled = False
    return root, store, settled


def open_root(directory: str, params: dict[str, Any], durable: bool = True) -> str | None:
    """The root of a store opened at ``directory``, made there if none is found.

    ``params`` are recorded in a marker this call makes (a root, or a sub
    marker when the store's file names need them, see the module). None when
    there is no settled root and none can be made now (a read-only directory).
    ValueError if ``directory``'s own marker records another layout.
    """
    for _ in range(_MAX_ROUNDS):
        root, store, settled = find_markers(directory)
        if not settled:
            return None
        if root is None:
            if not _make_marker(directory, params, None, durable):
                return None
            continue  # pending, ours or a racing opener's: the next round decides it
        if store == directory:
            _refuse_other_layout(directory, params)
        elif store is not None and _needs_marker(directory, store, params):
            _make_sub_marker(directory, root, params, durable)
        return root
    raise RuntimeError(f"no lock root settled for {directory} in {_MAX_ROUNDS} rounds")


def layout_of(params: dict[str, Any] | None) -> str:
    """The layout recorded in a marker's parameters (stores that record none: direct)."""
    layout = (params or {}).get("layout", "direct")
    return layout if isinstance(layout, str) else "direct"


def _refuse_other_layout(directory: str, params: dict[str, Any]) -> None:
    """ValueError if the store at ``directory`` records a layout other than ``params``'.

    Read afresh at every open (one small file): a store made again after its
    directory was removed may have changed its layout.
    """
    recorded = read_params(directory)
    if recorded is None:
        return  # made by a version that recorded nothing: nothing to compare with
    ours, theirs = layout_of(params), layout_of(recorded)
    if ours != theirs:
        raise ValueError(
            f"the store {directory} was made with layout={theirs!r}; it cannot be opened "
            f"with layout={ours!r} (its files would not be found): open it with "
            f"layout={theirs!r}"
        )


_recorded: dict[str, dict[str, Any]] = {}


def _needs_marker(directory: str, store: str, params: dict[str, Any]) -> bool:
    """Whether the store ``store``'s parameters fail to explain ``directory``'s names."""
    recorded = _recorded.get(store)
    if recorded is None:
        recorded = read_params(store) or {}
        if len(_recorded) >= 1024:
            _recorded.clear()
        _recorded[store] = recorded  # recorded once, never rewritten: cacheable
    digest_len = recorded.get("digest_len")
    if not isinstance(digest_len, int) or isinstance(digest_len, bool):
        return False  # an older store: nothing to compare with
    layout = layout_of(recorded)
    if digest_len != params.get("digest_len") or layout != layout_of(params):
        return True
    return not key_path(directory[len(store) + 1 :].split("/"), digest_len, layout)


def key_path(names: list[str], digest_len: int, layout: str) -> bool:
    """Whether the directory names ``names`` are the path of a key prefix in ``layout``."""
    if layout != "hashed":
        return all(unsign_names([name], digest_len) for name in names)
    pairs = zip(names[::2], names[1::2], strict=False)
    return len(names) % 2 == 0 and all(
        unsign_names([name], digest_len, bucket) for bucket, name in pairs
    )


def _make_sub_marker(directory: str, root: str, params: dict[str, Any], durable: bool) -> None:
    """Make a sub marker at ``directory`` (best effort: only ``check`` reads it).

    Under the root's MARKERS_LOCK, so a ``check --fix`` that took the
    directory for a stray cannot move it meanwhile; a directory it moved
    before is made again.
    """
    locks = KeyLocks(f"{root}/{META_DIR}/lock", DEFAULT_LOCK_TIMEOUT)
    with contextlib.suppress(OSError), locks.hold(MARKERS_LOCK):
        os.makedirs(directory, exist_ok=True)
        if marker_state(directory) == ABSENT:
            _make_marker(directory, params, SUB, durable)


def _write_new(path: str, data: bytes, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _make_marker(
    directory: str, params: dict[str, Any], verdict: str | None, durable: bool
) -> bool:
    """Make ``directory``'s marker whole (params, and ``verdict`` if given) by a rename.

    False if it cannot be made now; True if it was made or one exists.
    """
    meta = os.path.join(directory, META_DIR)
    tmp = os.path.join(directory, temp_name())
    try:
        os.mkdir(tmp)
    except OSError as exc:
        return exc.errno not in _CANNOT_WRITE
    try:
        _write_new(os.path.join(tmp, PARAMS), json.dumps(params).encode(), durable)
        if verdict is not None:
            _write_new(os.path.join(tmp, STATE), verdict.encode(), durable)
        if durable:
            fsync_dir(tmp)
        os.rename(tmp, meta)  # replaces nothing but an empty directory
    except OSError as exc:
        for name in (PARAMS, STATE):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(tmp, name))
        with contextlib.suppress(OSError):
            os.rmdir(tmp)
        if exc.errno == errno.ENOTDIR or (os.path.lexists(meta) and not os.path.isdir(meta)):
            raise NotADirectoryError(f"{meta} exists and is not a directory") from None
        return exc.errno not in _CANNOT_WRITE
    if durable:
        with contextlib.suppress(OSError):
            fsync_dir(directory)
    return True


def read_params(root: str) -> dict[str, Any] | None:
    """The parameters recorded in ``root``'s marker (None: an older store)."""
    try:
        with open(os.path.join(root, META_DIR, PARAMS), "rb") as f:
            params = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return params if isinstance(params, dict) else None
