"""The parent's phases around the workers: setup check, final read, history check."""

from __future__ import annotations

import time
from typing import Any

from .history import PARENT, History
from .oracle import Oracle
from .record import enc
from .stores import LISTING_KEYS, NAMESPACES, StoreSpec, read_all
from .workers import StoreFactory


class SetupError(Exception):
    """The store cannot be opened or reached: nothing was tested."""


def _describe(spec: StoreSpec) -> str:
    if spec.backend == "s3":
        endpoint = spec.endpoint_url or "the default AWS endpoint"
        return f"the s3 store (bucket {spec.bucket or 'persidict-stress'} at {endpoint})"
    if spec.backend == "file":
        return f"the file store in {spec.root}"
    return "the memory store"


def prepare(spec: StoreSpec, factory: StoreFactory, history: History | None) -> None:
    """Open every store and make one cheap request before any worker starts.

    A store that cannot be opened or reached (no credentials, a closed port,
    a read-only directory) is one setup error, not a run full of violations.
    Then the fixed keys of "listing" are written (recorded as the parent's
    calls): they exist before the first listing and are never removed.
    """
    try:
        stores = {ns: factory(spec, ns) for ns in NAMESPACES}
        stores["counters"].get("setup-probe")
        for j in range(LISTING_KEYS):
            key, value = f"L{j}", f"setup.{j}"
            start = time.monotonic_ns()
            stores["listing"][key] = value
            if history is not None:
                rec = {"ns": "listing", "k": key, "f": "set", "a": {"v": value}, "t": start}
                history.add(PARENT, rec, time.monotonic_ns(), {"ok": True}, None)
    except Exception as exc:
        raise SetupError(
            f"cannot use {_describe(spec)}: {type(exc).__name__}: {exc}"
        ) from exc


def check_history(
    history: History | None,
    spec: StoreSpec,
    factory: StoreFactory,
    final: dict[str, dict[str, Any]],
    final_start: int,
    t0_ns: int,
) -> dict[str, Any]:
    """Run the history check (the final snapshot is its last read of every key)."""
    if history is None:
        return {"checked": False, "note": "off (--no-history)", "violations": []}
    history.finish_feeding()
    encoded = {ns: {k: enc(v) for k, v in values.items()} for ns, values in final.items()}
    history.add_final(encoded, final_start, time.monotonic_ns())
    return history.check(t0_ns, lambda ns, key: enc(factory(spec, ns).get(key)))


def read_final(
    spec: StoreSpec, factory: StoreFactory, oracle: Oracle
) -> dict[str, dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}
    for namespace in NAMESPACES:
        try:
            final[namespace] = read_all(factory(spec, namespace))
        except Exception as exc:  # an unreadable store is a finding, not a harness crash
            oracle.violation("final-read", f"{namespace}: {type(exc).__name__}: {exc}")
            final[namespace] = {}
    return final
