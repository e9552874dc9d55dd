"""Backend construction: the single place that knows how to build a store."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from persidict import BasicS3Dict, FileDirDict, LocalDict, PersiDict

# One namespace per race so the races cannot disturb each other's invariants
# (popitem, for one, pops from anything in its store).
NAMESPACES = ("counters", "inserts", "append", "discards", "pops", "blobs", "listing")
# "listing" holds these keys from before the workers start; they are only
# overwritten, so every listing must yield each exactly once.
LISTING_KEYS = 100
# "pops" starts with these items; each op inserts one before it pops one.
POP_SEEDS = 6
APPEND_ONLY_NAMESPACES = frozenset({"append"})

BACKENDS = ("file", "memory", "s3")


@dataclass(frozen=True)
class StoreSpec:
    """Everything a worker needs to open the shared store (must pickle)."""

    backend: str
    root: str
    durable: bool = True
    endpoint_url: str | None = None  # s3 only
    bucket: str | None = None  # s3 only
    region: str | None = None  # s3 only


# LocalDict lives in one process's memory: every thread must get the same
# instance per namespace, or the "shared" store would not be shared.
_memory_stores: dict[tuple[str, str], PersiDict[Any]] = {}
_memory_lock = threading.Lock()


def make_store(spec: StoreSpec, namespace: str) -> PersiDict[Any]:
    """Open (or create) the store for ``namespace`` of the run described by ``spec``."""
    append_only = namespace in APPEND_ONLY_NAMESPACES
    if spec.backend == "file":
        return FileDirDict(
            base_dir=os.path.join(spec.root, namespace),
            serialization_format="pkl",
            append_only=append_only,
            durable=spec.durable,
        )
    if spec.backend == "s3":
        # root is unique per run: its name keeps runs apart in a shared bucket.
        return BasicS3Dict(
            bucket_name=spec.bucket or "persidict-stress",
            region=spec.region,
            endpoint_url=spec.endpoint_url,
            root_prefix=f"persidict-stress/{os.path.basename(spec.root)}/{namespace}",
            serialization_format="pkl",
            append_only=append_only,
        )
    if spec.backend == "memory":
        with _memory_lock:
            store = _memory_stores.get((spec.root, namespace))
            if store is None:
                store = LocalDict(serialization_format="pkl", append_only=append_only)
                _memory_stores[(spec.root, namespace)] = store
            return store
    raise ValueError(f"unknown backend {spec.backend!r}; expected one of {BACKENDS}")


def forget_memory_stores(spec: StoreSpec) -> None:
    """Drop the in-memory stores of a finished run."""
    with _memory_lock:
        for namespace in NAMESPACES:
            _memory_stores.pop((spec.root, namespace), None)


def read_all(store: PersiDict[Any]) -> dict[str, Any]:
    """Read the whole store into a plain dict keyed by ``/``-joined key strings."""
    return {"/".join(key): value for key, value in store.items()}
