"""Per-key exclusive locks shared by processes and threads on one machine.

The interface FileDirDict, the lock tree and the markers use, and the
backend chosen once, at import:

- ``ofd`` (locks_ofd.py): Linux open-file-description record locks, one
  byte per key in one lock file per store. The default where fcntl has
  F_OFD_SETLK.
- ``flock`` (locks_flock.py): flock(2) on a fixed set of lock-stripe files,
  for POSIX systems without OFD locks (macOS, BSD); PERSIDICT_LOCKS=flock
  forces it elsewhere (CI runs the tests with it on Linux).
- ``none``: no fcntl (Windows). FileDirDict refuses at construction
  (require_file_locks); every other store works.

PERSIDICT_LOCKS (``ofd``, ``flock``, or empty for the default) is read at
import; an unknown value, or ``ofd`` where there are no OFD locks, makes
FileDirDict refuse at construction with a ValueError, so a typo never
silently picks another backend and never breaks ``import persidict``.
Every process using one store must use the same backend: OFD and flock
locks do not exclude each other.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .locks_common import (
    DEFAULT_LOCK_TIMEOUT,
    META_DIR,
    KeyLocksBase,
    LocksUnsupportedError,
    lock_offset,
)

__all__ = [
    "BACKEND",
    "DEFAULT_LOCK_TIMEOUT",
    "META_DIR",
    "KeyLocks",
    "LocksUnsupportedError",
    "lock_offset",
    "require_file_locks",
]

ENV_VAR = "PERSIDICT_LOCKS"
_CHOICES = ("ofd", "flock")


def _pick() -> tuple[str, str | None]:
    """(backend, why FileDirDict must refuse or None) for this platform and setting."""
    try:
        import fcntl
    except ImportError:
        return "none", None
    has_ofd = hasattr(fcntl, "F_OFD_SETLK")
    wanted = os.environ.get(ENV_VAR, "").strip().lower()
    if wanted and wanted not in _CHOICES:
        return "none", f"{ENV_VAR}={wanted!r} is not one of {', '.join(_CHOICES)} (or empty)"
    if wanted == "ofd" and not has_ofd:
        return "none", f"{ENV_VAR}=ofd, but this system's fcntl has no F_OFD_SETLK"
    return (wanted or ("ofd" if has_ofd else "flock")), None


BACKEND, _MISCONFIGURED = _pick()
"""The lock backend of this process: 'ofd', 'flock' or 'none'."""

# Every backend has the interface of locks_ofd.KeyLocks, which mypy checks.
if TYPE_CHECKING or BACKEND == "ofd":
    from .locks_ofd import KeyLocks
elif BACKEND == "flock":
    from .locks_flock import KeyLocks
else:
    KeyLocks = KeyLocksBase


def require_file_locks() -> None:
    """Raise unless this process has a lock backend (called by FileDirDict.__init__)."""
    if _MISCONFIGURED is not None:
        raise ValueError(f"FileDirDict cannot choose a lock backend: {_MISCONFIGURED}")
    if BACKEND == "none":
        raise NotImplementedError(
            f"FileDirDict needs file locks (fcntl) that {sys.platform} does not offer; "
            "use LocalDict (one process) or BasicS3Dict (any number of processes and "
            "machines) instead, or run under WSL (Linux), where FileDirDict works"
        )
