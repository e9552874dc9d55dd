"""Shared settings, values and places for the benchmark sections."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field

import jsonpickle

SMALL_VALUE = {"id": 123456, "name": "benchmark-value-" + "x" * 24, "tags": ["a", "b"], "w": 0.5}
"""About 100 bytes pickled (and about 150 as indented jsonpickle)."""

BIG_VALUE = bytes(range(256)) * 4096
"""1 MiB of bytes."""


def pkl_dumps(value: object) -> bytes:
    """The same pickling our 'pkl' codec does."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def json_dumps(value: object) -> bytes:
    """The same jsonpickle encoding our 'json' codec does."""
    return jsonpickle.dumps(value, indent=4).encode("utf-8")


def json_loads(data: bytes) -> object:
    """The same jsonpickle decoding our 'json' codec does."""
    return jsonpickle.loads(data.decode("utf-8"))


@dataclass(frozen=True)
class Kind:
    """A value kind: which value, which format, and its codec for the floor."""

    name: str
    value: object
    fmt: str

    def dumps(self, value: object) -> bytes:
        """Encode like our codec."""
        return pkl_dumps(value) if self.fmt == "pkl" else json_dumps(value)

    def loads(self, data: bytes) -> object:
        """Decode like our codec."""
        return pickle.loads(data) if self.fmt == "pkl" else json_loads(data)


KINDS = {
    "pkl100": Kind("pkl100", SMALL_VALUE, "pkl"),
    "pkl1MiB": Kind("pkl1MiB", BIG_VALUE, "pkl"),
    "json100": Kind("json100", SMALL_VALUE, "json"),
}


@dataclass
class Config:
    """How much work each section does (``--smoke`` shrinks everything)."""

    smoke: bool = False
    reps: int = 5
    reps_durable_disk: int = 9  # fsync latency is the noisiest figure: more repetitions
    # operations per timed body, by (filesystem kind, durable, value kind)
    ops_small_fast_tmpfs: int = 400
    ops_small_fast_disk: int = 60
    ops_small_durable_tmpfs: int = 200
    ops_small_durable_disk: int = 30
    ops_big_fast: int = 12
    ops_big_durable: int = 5
    listing_keys: int = 10_000
    stream_keys: int = 100_000
    memory_ops: int = 5_000
    contended_ops: int = 1_200
    contended_procs: tuple[int, ...] = (1, 2, 4)
    contended_reps: int = 3
    s3_ops: int = 50
    sections: tuple[str, ...] = (
        "files", "durable-pairs", "listing", "memory", "contended", "stream", "s3")
    keep: bool = False

    @classmethod
    def smoke_config(cls) -> Config:
        """A few seconds: every code path, tiny counts, no meaningful figures."""
        return cls(
            smoke=True,
            reps=2,
            reps_durable_disk=2,
            ops_small_fast_tmpfs=8,
            ops_small_fast_disk=4,
            ops_small_durable_tmpfs=4,
            ops_small_durable_disk=3,
            ops_big_fast=2,
            ops_big_durable=1,
            listing_keys=200,
            stream_keys=600,
            memory_ops=50,
            contended_ops=40,
            contended_procs=(1, 2),
            contended_reps=1,
            s3_ops=5,
        )


def fs_type(path: str) -> str:
    """Filesystem type of ``path`` from /proc/mounts (longest mount prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


_RAM_FS = {"tmpfs", "ramfs"}


def find_places(disk_hint: str | None) -> dict[str, str]:
    """{'tmpfs': dir, 'disk': dir}: where the two filesystem runs happen.

    The disk place is the first candidate that is not RAM-backed; it is
    omitted (with the reason in the report) if there is none.
    """
    places: dict[str, str] = {}
    if os.path.isdir("/dev/shm") and fs_type("/dev/shm") in _RAM_FS:
        places["tmpfs"] = "/dev/shm"
    candidates = [disk_hint] if disk_hint else []
    candidates += ["/var/tmp", tempfile.gettempdir(), os.getcwd()]
    for c in candidates:
        if c and os.path.isdir(c) and os.access(c, os.W_OK) and fs_type(c) not in _RAM_FS:
            places["disk"] = c
            break
    return places


@dataclass
class Scratch:
    """Temporary directories, removed at the end of the run."""

    dirs: list[str] = field(default_factory=list)
    keep: bool = False

    def make(self, parent: str, name: str) -> str:
        """A fresh empty directory under ``parent``."""
        d = tempfile.mkdtemp(prefix=f"persidict-bench-{name}-", dir=parent)
        self.dirs.append(d)
        return d

    def cleanup(self) -> None:
        """Remove every directory made (unless asked to keep them)."""
        if self.keep:
            return
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()
