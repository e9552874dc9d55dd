"""FileDirDict against the bare-``os`` floor and against diskcache.

For every (filesystem, durability, value kind) the same operations run on
three contenders, interleaved:

- ``ours``: FileDirDict(durable=...), default digest_len;
- ``floor``: the same work as bare ``os`` calls in pure Python, with the same
  codec: writes are temp file + write (+ fsync) + os.replace (+ directory
  fsync when durable), reads are open + read + decode, ``in`` is os.stat,
  deletes are os.unlink (+ directory fsync when durable);
- ``diskcache``: ``diskcache.Cache`` with its defaults, on the same
  filesystem (only in durable=False runs: its defaults do not fsync).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import diskcache

from persidict import ANY_ETAG, ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, FileDirDict

from .common import KINDS, Config, Kind, Scratch
from .harness import Body, Case, Results, Row, interleave

WRITE_OPS = ("set new", "overwrite", "set_item_if", "setdefault_if insert",
             "transform_item +1", "discard_if")
READ_OPS = ("get", "in", "etag", "get_with_etag")

OPS_BY_KIND = {
    "pkl100": ("set new", "overwrite", "get", "in", "etag", "get_with_etag", "set_item_if",
               "setdefault_if insert", "transform_item +1", "discard_if"),
    "pkl1MiB": ("set new", "overwrite", "get", "etag", "get_with_etag", "set_item_if"),
    "json100": ("set new", "overwrite", "get", "set_item_if", "transform_item +1"),
}
DURABLE_OPS_BY_KIND = {
    "pkl100": WRITE_OPS,
    "pkl1MiB": ("set new", "overwrite"),
}

FLOOR_NOTES = {
    "set new": "floor: dumps + temp write + replace",
    "overwrite": "floor: dumps + temp write + replace",
    "get": "floor: open + read + loads",
    "in": "floor: os.stat",
    "etag": "floor: open + read (no decode)",
    "get_with_etag": "floor: open + read + loads",
    "set_item_if": "floor: dumps + temp write + replace; peer: transact(get; set)",
    "setdefault_if insert": "floor: dumps + temp write + replace; peer: add",
    "transform_item +1": "floor: read + loads + dumps + write + replace; peer: incr",
    "discard_if": "floor: os.unlink; peer: delete",
}


def _inc(value: object) -> int:
    return 1 if value is ITEM_NOT_AVAILABLE else value + 1  # type: ignore[operator]


class Floor:
    """The bare-``os`` equivalent of a store: one flat directory of files."""

    def __init__(self, root: str, durable: bool, kind: Kind) -> None:
        self.root, self.durable, self.kind = root, durable, kind
        self.suffix = "." + kind.fmt
        self._tmp = itertools.count()

    def path(self, key: str) -> str:
        return f"{self.root}/{key}{self.suffix}"

    def write(self, key: str, value: object) -> None:
        data = self.kind.dumps(value)
        tmp = f"{self.root}/@tmp-{os.getpid()}-{next(self._tmp)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path(key))
        if self.durable:
            self.fsync_dir()

    def fsync_dir(self) -> None:
        dfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def read_bytes(self, key: str) -> bytes:
        with open(self.path(key), "rb", buffering=0) as f:
            return f.readall()

    def read(self, key: str) -> object:
        return self.kind.loads(self.read_bytes(key))

    def exists(self, key: str) -> bool:
        try:
            os.stat(self.path(key))
            return True
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        os.unlink(self.path(key))
        if self.durable:
            self.fsync_dir()


def _loop(keys: list[str], fn: Callable[[str], object]) -> Body:
    def body() -> None:
        for k in keys:
            fn(k)

    return body


def _ours_cases(d: FileDirDict, op: str, v: object, n: int) -> Callable[[int], Body]:
    base = [f"k{i}" for i in range(n)]
    setitem = d.__setitem__

    def prepare(rep: int) -> Body:
        if op == "set new":
            return _loop([f"new{rep}-{i}" for i in range(n)], lambda k: setitem(k, v))
        if op == "overwrite":
            return _loop(base, lambda k: setitem(k, v))
        if op == "get":
            return _loop(base, d.__getitem__)
        if op == "in":
            return _loop(base, d.__contains__)
        if op == "etag":
            return _loop(base, d.etag)
        if op == "get_with_etag":
            return _loop(base, d.get_with_etag)
        if op == "set_item_if":
            tags = [(k, d.etag(k)) for k in base]

            def cas() -> None:
                for k, e in tags:
                    r = d.set_item_if(k, value=v, condition=ETAG_IS_THE_SAME, expected_etag=e)
                    assert r.condition_was_satisfied

            return cas
        if op == "setdefault_if insert":
            return _loop(
                [f"ins{rep}-{i}" for i in range(n)],
                lambda k: d.setdefault_if(
                    k, default_value=v, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
                ),
            )
        if op == "transform_item +1":
            return _loop([f"c{i}" for i in range(n)],
                         lambda k: d.transform_item(k, transformer=_inc))
        if op == "discard_if":
            keys = [f"del{rep}-{i}" for i in range(n)]
            for k in keys:
                d[k] = v
            tags = [(k, d.etag(k)) for k in keys]

            def discard() -> None:
                for k, e in tags:
                    d.discard_if(k, condition=ETAG_IS_THE_SAME, expected_etag=e)

            return discard
        raise ValueError(op)

    return prepare


def _floor_cases(f: Floor, op: str, v: object, n: int) -> Callable[[int], Body]:
    base = [f"k{i}" for i in range(n)]

    def prepare(rep: int) -> Body:
        if op == "set new":
            return _loop([f"new{rep}-{i}" for i in range(n)], lambda k: f.write(k, v))
        if op in ("overwrite", "set_item_if"):
            return _loop(base, lambda k: f.write(k, v))
        if op == "setdefault_if insert":
            return _loop([f"ins{rep}-{i}" for i in range(n)], lambda k: f.write(k, v))
        if op in ("get", "get_with_etag"):
            return _loop(base, f.read)
        if op == "etag":
            return _loop(base, f.read_bytes)
        if op == "in":
            return _loop(base, f.exists)
        if op == "transform_item +1":
            return _loop([f"c{i}" for i in range(n)], lambda k: f.write(k, f.read(k) + 1))
        if op == "discard_if":
            keys = [f"del{rep}-{i}" for i in range(n)]
            for k in keys:
                f.write(k, v)
            return _loop(keys, f.delete)
        raise ValueError(op)

    return prepare


def _peer_cases(c: diskcache.Cache, op: str, v: object, n: int) -> Callable[[int], Body] | None:
    base = [f"k{i}" for i in range(n)]

    def cas(k: str) -> None:
        # diskcache has no compare-and-swap; this is the way to build one.
        with c.transact():
            if c.get(k) == v:
                c.set(k, v)

    def prepare(rep: int) -> Body:
        if op == "set new":
            return _loop([f"new{rep}-{i}" for i in range(n)], lambda k: c.set(k, v))
        if op == "overwrite":
            return _loop(base, lambda k: c.set(k, v))
        if op in ("get", "get_with_etag"):
            return _loop(base, c.get)
        if op == "in":
            return _loop(base, c.__contains__)
        if op == "set_item_if":
            return _loop(base, cas)
        if op == "setdefault_if insert":
            return _loop([f"ins{rep}-{i}" for i in range(n)], lambda k: c.add(k, v))
        if op == "transform_item +1":
            return _loop([f"c{i}" for i in range(n)], c.incr)
        if op == "discard_if":
            keys = [f"del{rep}-{i}" for i in range(n)]
            for k in keys:
                c.set(k, v)
            return _loop(keys, c.delete)
        raise ValueError(op)

    return None if op == "etag" else prepare


def _ops_per_body(cfg: Config, place: str, durable: bool, kind: str) -> int:
    if kind == "pkl1MiB":
        return cfg.ops_big_durable if durable else cfg.ops_big_fast
    if durable:
        return cfg.ops_small_durable_disk if place == "disk" else cfg.ops_small_durable_tmpfs
    return cfg.ops_small_fast_disk if place == "disk" else cfg.ops_small_fast_tmpfs


def run_files(cfg: Config, places: dict[str, str], scratch: Scratch, results: Results,
              log: Callable[[str], None]) -> None:
    """Time every operation of every (filesystem, durability, kind) combination."""
    for place, parent in places.items():
        for durable in (False, True):
            table = DURABLE_OPS_BY_KIND if durable else OPS_BY_KIND
            for kind_name, ops in table.items():
                kind = KINDS[kind_name]
                section = f"{place}/{'durable' if durable else 'fast'}/{kind_name}"
                log(f"files: {section}")
                n = _ops_per_body(cfg, place, durable, kind_name)
                tag = f"{place}-{int(durable)}-{kind_name}"
                d = FileDirDict(base_dir=scratch.make(parent, "ours-" + tag),
                                serialization_format=kind.fmt, durable=durable)
                floor = Floor(scratch.make(parent, "floor-" + tag), durable, kind)
                peer = None
                if not durable and kind.fmt == "pkl":
                    peer = diskcache.Cache(scratch.make(parent, "dc-" + tag))
                for i in range(n):  # the keys read, overwritten and incremented
                    d[f"k{i}"] = kind.value
                    d[f"c{i}"] = 0
                    floor.write(f"k{i}", kind.value)
                    floor.write(f"c{i}", 0)
                    if peer is not None:
                        peer.set(f"k{i}", kind.value)
                        peer.set(f"c{i}", 0)
                try:
                    for op in ops:
                        cases = [Case("ours", _ours_cases(d, op, kind.value, n), n),
                                 Case("floor", _floor_cases(floor, op, kind.value, n), n)]
                        if peer is not None:
                            prep = _peer_cases(peer, op, kind.value, n)
                            if prep is not None:
                                cases.append(Case("diskcache", prep, n))
                        reps = cfg.reps_durable_disk if durable and place == "disk" \
                            else cfg.reps
                        results.add(Row(section, op, interleave(cases, reps),
                                        FLOOR_NOTES.get(op, "")))
                finally:
                    if peer is not None:
                        peer.close()
