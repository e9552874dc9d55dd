"""The one atomic-write primitive: temp file in the same directory + rename."""

from __future__ import annotations

import contextlib
import os
import secrets

TEMP_PREFIX = "@tmp-"
"""Temp files start with '@', which no key component can contain."""

_MAX_DIR_RACES = 100


def temp_name() -> str:
    """A unique temp file name that records its writer's pid (for recovery)."""
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or unlink in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(directory: str) -> tuple[str, int]:
    """Create a temp file in ``directory``, creating the directory if needed.

    A concurrent deleter may prune the directory between our makedirs and
    our open; we then simply create it again (bounded).
    """
    for _ in range(_MAX_DIR_RACES):
        tmp = os.path.join(directory, temp_name())
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
    raise FileNotFoundError(f"directory {directory} keeps disappearing")


def write_atomic(path: str, data: bytes, *, durable: bool) -> None:
    """Replace ``path`` with ``data`` so readers see the old or new bytes, whole.

    Durable: fsync the temp file before the rename and the directory after it.
    """
    directory = os.path.dirname(path)
    tmp, fd = _create_temp(directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        # The temp file keeps the directory non-empty, so no pruner can
        # remove it before this rename.
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)
