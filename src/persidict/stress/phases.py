"""The parent's phases around the workers: setup check, final read, history check."""

from __future__ import annotations

import time
from typing import Any

from .history import PARENT, History
from .options import StoreFactory
from .oracle import Oracle
from .record import enc
from .stores import LISTING_KEYS, NAMESPACES, POP_SEEDS, StoreSpec, read_all


class SetupError(Exception):
    """The store cannot be opened or reached: nothing was tested."""


def _describe(spec: StoreSpec) -> str:
    if spec.backend == "s3":
        endpoint = spec.endpoint_url or "the default AWS endpoint"
        return f"the s3 store (bucket {spec.bucket or 'persidict-stress'} at {endpoint})"
    if spec.backend == "file":
        return f"the file store in {spec.root}"
    return "the memory store"


def prepare(
    spec: StoreSpec, factory: StoreFactory, history: History | None, oracle: Oracle
) -> None:
    """Open every store and make one cheap request before any worker starts.

    A store that cannot be opened or reached (no credentials, a closed port,
    a read-only directory) is one setup error, not a run full of violations.
    Then the seed items are written (recorded as the parent's calls): the
    fixed keys of "listing", which are only ever overwritten, and a few items
    in "pops", where every op inserts before it pops, so that store is never
    empty and a popitem KeyError is always wrong.
    """
    seeds = [("listing", f"L{j}", f"setup.{j}") for j in range(LISTING_KEYS)]
    seeds += [("pops", f"seed{j}", f"seed.{j}") for j in range(POP_SEEDS)]
    try:
        stores = {ns: factory(spec, ns) for ns in NAMESPACES}
        stores["counters"].get("setup-probe")
        for ns, key, value in seeds:
            start = time.monotonic_ns()
            stores[ns][key] = value
            if history is not None:
                rec = {"ns": ns, "k": key, "f": "set", "a": {"v": value}, "t": start}
                history.add(PARENT, rec, time.monotonic_ns(), {"ok": True}, None)
    except Exception as exc:
        raise SetupError(
            f"cannot use {_describe(spec)}: {type(exc).__name__}: {exc}"
        ) from exc
    for ns, key, value in seeds:
        if ns == "pops":
            oracle.seed_pop(key, value)


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
    started = time.monotonic()
    summary = history.check(t0_ns, lambda ns, key: enc(factory(spec, ns).get(key)))
    summary["check_s"] = round(time.monotonic() - started, 2)
    return summary


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
