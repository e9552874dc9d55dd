"""The op mix one worker runs against the shared store, and its outcome log.

Every op first writes an *intent* line (which keys it may touch), then runs,
then writes an *outcome* line with what the store told it; each line is
flushed to the OS at once, so the outcomes a worker confirmed survive even a
SIGKILL (``--kill`` relies on this). Ops that began but never reported are
treated by the oracle as "unknown" for the keys they named. Every store call
inside an op is also logged on its own, with its times, for the history
check (record.py). Under ``--expect-faults`` an op ended by a BackendError
logs its class and the call it came from (``fault``, ``fns``, ``fkey``)
next to the fields its earlier calls set.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from typing import Any, TextIO

from persidict import (
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    NEVER_RETRIEVE,
    BackendError,
    ConcurrencyConflictError,
    MutationPolicyError,
)

from .options import StoreFactory, WorkerConfig
from .oracle import check_blob, make_blob
from .record import Recorder, cond, enc, etag, ok
from .report import Histogram
from .stores import LISTING_KEYS, NAMESPACES, make_store

KINDS = (
    "counter_transform",
    "counter_cas",
    "insert_race",
    "append_race",
    "discard_race",
    "popitem_race",
    "blob_write",
    "blob_read",
    "listing_write",
    "list_keys",
)
DEFAULT_WEIGHTS = (3, 3, 3, 2, 3, 2, 1, 2, 2, 1)

N_COUNTERS = 2  # few keys: every increment is contended
N_BLOBS = 2
BLOB_MIN, BLOB_MAX = 256 * 1024, 1024 * 1024
# Workers race on the j-th fresh key of the current time slot: all workers
# reach the same key at about the same moment, without a barrier per round.
SLOT_SECONDS = 0.2
TRANSFORM_RETRIES = 64
CAS_MAX_ATTEMPTS = 256
GO_POLL_SECONDS = 0.01


def worker_process(cfg: WorkerConfig) -> None:
    """Entry point of a worker process."""
    run_worker(cfg, cfg.factory or make_store)


def run_worker(cfg: WorkerConfig, factory: StoreFactory) -> None:
    """Open the stores, report ready, wait for the go file, then run the op mix."""
    with open(cfg.log_path, "a", encoding="utf-8") as log:
        worker = Worker(cfg, factory, log)
        worker.write({"ready": cfg.wid, "pid": os.getpid()})
        go = wait_for_go(cfg.go_path, cfg.startup_timeout)
        if go is None:
            worker.write({"abort": "no go signal"})
            return
        worker.run(go["t0"], go["deadline"])


def wait_for_go(path: str, timeout: float) -> dict[str, float] | None:
    """Poll for the parent's start file (works for threads and processes alike)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            with open(path, encoding="utf-8") as f:
                data: dict[str, float] = json.load(f)
                return data
        except (FileNotFoundError, json.JSONDecodeError):
            # The parent writes then renames, but be lenient about a partial read.
            time.sleep(GO_POLL_SECONDS)
    return None


class Worker:
    """One worker: a seeded random op mix, each outcome logged as it completes."""

    def __init__(self, cfg: WorkerConfig, factory: StoreFactory, log: TextIO) -> None:
        self.cfg = cfg
        self.stores = {ns: factory(cfg.spec, ns) for ns in NAMESPACES}
        self.rng = random.Random(f"{cfg.seed}:{cfg.wid}:{cfg.incarnation}")
        self.hists = {kind: Histogram() for kind in KINDS}
        self.seq = 0
        self.t0 = 0.0
        self._log = log
        self._slots: dict[str, tuple[int, int]] = {}
        self._started_ns = 0
        self._prev_discard_key: str | None = None
        self.rec = Recorder(self.write, self.stores)
        self.rec.enabled = cfg.history

    def write(self, rec: dict[str, Any]) -> None:
        """Append one record and hand it to the OS (survives our SIGKILL)."""
        # default=repr: a store returning junk must yield a finding, not a crash.
        self._log.write(json.dumps(rec, separators=(",", ":"), default=repr) + "\n")
        self._log.flush()

    def run(self, t0: float, deadline: float) -> None:
        """Run ops until the deadline or ``max_ops``, then log latency histograms."""
        self.t0 = t0
        delay = t0 - time.time()
        if delay > 0:
            time.sleep(delay)
        ops = [getattr(self, "op_" + kind) for kind in KINDS]
        while self.seq < self.cfg.max_ops and time.time() < deadline:
            i = self.rng.choices(range(len(KINDS)), weights=DEFAULT_WEIGHTS)[0]
            self.seq += 1
            rec: dict[str, Any] = {"op": KINDS[i], "seq": self.seq}
            self._started_ns = 0
            try:
                ops[i](rec)
            except ConcurrencyConflictError:
                rec["conflict"] = 1  # the op gave up and did nothing
            except BackendError as exc:
                if not self.cfg.expect_faults:
                    rec["error"] = f"{type(exc).__name__}: {exc}"
                else:  # an injected fault: the fields set so far still hold
                    rec["fault"], rec["fns"], rec["fkey"] = type(exc).__name__, *self.rec.current
            except Exception as exc:  # any other surprise is a finding, not a crash
                rec["error"] = f"{type(exc).__name__}: {exc}"
            if self._started_ns:
                self.hists[KINDS[i]].add(time.perf_counter_ns() - self._started_ns)
            self.write(rec)
        self.write({"done": self.cfg.wid, "hist": {k: h.to_json() for k, h in self.hists.items()}})

    # ----------------------------------------------------------- helpers

    def begin(self, rec: dict[str, Any], namespace: str, *keys: str) -> None:
        """Log the intent (keys this op may touch) and start its latency clock."""
        self.write({"begin": rec["seq"], "ns": namespace, "keys": list(keys)})
        self._started_ns = time.perf_counter_ns()

    def token(self) -> str:
        """A value no other op of any worker ever writes."""
        return f"w{self.cfg.wid}.{self.cfg.incarnation}.{self.seq}"

    def race_key(self, prefix: str) -> str:
        """The next fresh key of the current slot (shared by all workers)."""
        slot = int((time.time() - self.t0) / SLOT_SECONDS)
        last_slot, j = self._slots.get(prefix, (slot, -1))
        j = j + 1 if last_slot == slot else 0
        self._slots[prefix] = (slot, j)
        return f"{prefix}{slot}-{j}"

    # --------------------------------------------------------------- ops

    def op_counter_transform(self, rec: dict[str, Any]) -> None:
        """Increment a shared counter with ``transform_item``."""
        key = rec["key"] = f"c{self.rng.randrange(N_COUNTERS)}"
        calls = 0

        def increment(value: Any) -> Any:
            nonlocal calls
            calls += 1
            return (0 if value is ITEM_NOT_AVAILABLE else value) + 1

        store = self.stores["counters"]
        self.begin(rec, "counters", key)
        try:
            result = self.rec.call(
                "counters", key, "incr", {},
                lambda: store.transform_item(key, transformer=increment,
                                             n_retries=TRANSFORM_RETRIES),
                lambda r: {"v": r.new_value, "re": etag(r.resulting_etag)},
            )  # fmt: skip
            rec["val"] = result.new_value
        finally:
            rec["retries"] = max(calls - 1, 0)

    def op_counter_cas(self, rec: dict[str, Any]) -> None:
        """Increment a shared counter with a hand-written get_with_etag/set_item_if loop."""
        key = rec["key"] = f"c{self.rng.randrange(N_COUNTERS)}"
        store = self.stores["counters"]
        self.begin(rec, "counters", key)
        for attempt in range(CAS_MAX_ATTEMPTS):
            rec["retries"] = attempt
            seen = self.rec.get_with_etag("counters", key)
            current = seen.new_value
            if isinstance(current, int):
                base = current
            elif current is ITEM_NOT_AVAILABLE:
                base = 0
            else:
                rec["viol"] = f"{key}: get_with_etag returned {current!r}"
                return
            expected = seen.actual_etag
            result = self.rec.call(
                "counters", key, "sif", {"v": base + 1, "c": "same", "x": etag(expected)},
                lambda b=base + 1, x=expected: store.set_item_if(  # type: ignore[misc]
                    key, value=b, condition=ETAG_IS_THE_SAME, expected_etag=x,
                    retrieve_value=NEVER_RETRIEVE),
                cond,
            )  # fmt: skip
            if result.condition_was_satisfied:
                rec["val"] = base + 1
                return
        rec["gave_up"] = 1

    def op_insert_race(self, rec: dict[str, Any]) -> None:
        """Insert-if-absent on a fresh key every worker is racing for."""
        key = rec["key"] = self.race_key("i")
        tok = rec["tok"] = self.token()
        store = self.stores["inserts"]
        variant = rec["via"] = self.rng.choice(("setdefault_if", "set_item_if", "setdefault"))
        rec["won"] = False
        self.begin(rec, "inserts", key)
        if variant == "setdefault":
            current = self.rec.call("inserts", key, "sd", {"v": tok},
                                    lambda: store.setdefault(key, tok), lambda r: {"v": enc(r)})
            rec["won"] = current == tok
            rec["seen"] = current
            return
        absent = {"v": tok, "c": "same", "x": None}
        if variant == "setdefault_if":
            result = self.rec.call(
                "inserts", key, "sdif", absent,
                lambda: store.setdefault_if(key, default_value=tok, condition=ETAG_IS_THE_SAME,
                                            expected_etag=ITEM_NOT_AVAILABLE),
                cond,
            )  # fmt: skip
        else:
            result = self.rec.insert_if_absent("inserts", key, tok)
        rec["won"] = result.condition_was_satisfied and result.actual_etag is ITEM_NOT_AVAILABLE
        if not rec["won"] and isinstance(result.new_value, str):
            rec["seen"] = result.new_value

    def op_append_race(self, rec: dict[str, Any]) -> None:
        """Race to insert into the append-only store; then try (and fail) to mutate."""
        key = rec["key"] = self.race_key("a")
        tok = rec["tok"] = self.token()
        store = self.stores["append"]
        rec["won"] = False
        self.begin(rec, "append", key)

        def insert(value: str) -> None:
            store[key] = value

        try:
            self.rec.call("append", key, "ins", {"v": tok}, lambda: insert(tok), ok)
            rec["won"] = True
        except MutationPolicyError:
            rec["seen"] = self.rec.get("append", key, lambda: store[key])
        # The value must never change once written: every mutation must be refused.
        mutation = self.rng.choice(("overwrite", "discard", "delete"))
        try:
            if mutation == "overwrite":
                bad = tok + "-overwrite"
                self.rec.call("append", key, "ins", {"v": bad}, lambda: insert(bad), ok)
            elif mutation == "discard":
                self.rec.call("append", key, "disc", {}, lambda: store.discard(key),
                              lambda r: {"ok": bool(r)})
            else:
                self.rec.delete("append", key)
            rec["viol"] = f"append-only {key}: {mutation} was not refused"
        except MutationPolicyError:
            pass

    def op_discard_race(self, rec: dict[str, Any]) -> None:
        """Insert this round's key if absent; race everyone to remove the previous one."""
        key = rec["key"] = self.race_key("d")
        # Removing the key of the *previous* round gives every worker time to
        # insert it first, so removals really contend (exactly one may succeed).
        dkey = rec["dkey"] = self._prev_discard_key or key
        self._prev_discard_key = key
        tok = rec["tok"] = self.token()
        store = self.stores["discards"]
        rec["put"] = rec["removed"] = False
        self.begin(rec, "discards", key, dkey)
        result = self.rec.insert_if_absent("discards", key, tok)
        rec["put"] = result.condition_was_satisfied and result.actual_etag is ITEM_NOT_AVAILABLE
        via = rec["via"] = self.rng.choice(("discard", "discard_if", "pop", "del"))
        if via == "discard":
            rec["removed"] = self.rec.call("discards", dkey, "disc", {},
                                           lambda: store.discard(dkey), lambda r: {"ok": bool(r)})
        elif via == "pop":
            popped = self.rec.call("discards", dkey, "pop", {}, lambda: store.pop(dkey, None),
                                   lambda r: {"v": enc(r)})
            if popped is not None:
                rec["removed"], rec["rtok"] = True, popped
        elif via == "del":
            with contextlib.suppress(KeyError):
                rec["removed"] = self.rec.delete("discards", dkey)
        else:
            self.discard_if_unchanged(rec, dkey)

    def discard_if_unchanged(self, rec: dict[str, Any], dkey: str) -> None:
        """Read the key with its etag, then discard it only if nobody changed it."""
        store = self.stores["discards"]
        if not self.rec.call("discards", dkey, "in", {}, lambda: dkey in store,
                             lambda r: {"b": bool(r)}):
            return
        seen = self.rec.get_with_etag("discards", dkey)
        if seen.actual_etag is ITEM_NOT_AVAILABLE:
            return
        expected = seen.actual_etag
        result = self.rec.call(
            "discards", dkey, "dif", {"c": "same", "x": etag(expected)},
            lambda: store.discard_if(dkey, condition=ETAG_IS_THE_SAME, expected_etag=expected),
            cond,
        )  # fmt: skip
        if result.condition_was_satisfied and result.actual_etag is not ITEM_NOT_AVAILABLE:
            rec["removed"] = True
            rec["rtok"] = seen.new_value

    def op_popitem_race(self, rec: dict[str, Any]) -> None:
        """Insert one unique item, then popitem() against every other worker."""
        key = rec["key"] = f"p{self.cfg.wid}.{self.cfg.incarnation}.{self.seq}"
        tok = rec["tok"] = self.token()
        store = self.stores["pops"]
        # Any key may be popped; the oracle pins "unknown" only on our own key.
        self.begin(rec, "pops", key)
        self.rec.set("pops", key, tok)
        rec["stored"] = True
        try:
            popped_key, popped_value = self.rec.call(
                "pops", None, "popitem", {}, store.popitem,
                lambda r: {"k": "/".join(r[0]), "v": enc(r[1])},
            )
        except KeyError:
            return  # claims the store was empty at some instant: history-checked
        rec["pk"] = "/".join(popped_key)
        rec["pv"] = popped_value

    def op_blob_write(self, rec: dict[str, Any]) -> None:
        """Overwrite a shared key with a large self-checking value."""
        key = rec["key"] = f"b{self.rng.randrange(N_BLOBS)}"
        tok = rec["tok"] = self.token()
        blob = make_blob(tok, self.rng.randbytes(self.rng.randint(BLOB_MIN, BLOB_MAX)))
        self.begin(rec, "blobs", key)
        self.rec.set("blobs", key, blob, logged=tok)

    def op_blob_read(self, rec: dict[str, Any]) -> None:
        """Read a large value while others overwrite it: it must never be torn."""
        key = rec["key"] = f"b{self.rng.randrange(N_BLOBS)}"
        self.begin(rec, "blobs")  # reads change nothing: no key becomes unknown
        store = self.stores["blobs"]
        checked: list[tuple[str | None, str]] = []

        def logged(value: Any) -> dict[str, Any]:
            checked.append(check_blob(value) if value is not None else (None, ""))
            tok, why = checked[0]
            return {"v": tok if tok is not None or value is None else f"<torn: {why}>"}

        value = self.rec.call("blobs", key, "get", {}, lambda: store.get(key), logged)
        if value is None:
            return
        tok, reason = checked[0] if checked else check_blob(value)
        if tok is None:
            rec["viol"] = f"torn read of {key}: {reason}"
        else:
            rec["seen"] = tok

    def op_listing_write(self, rec: dict[str, Any]) -> None:
        """Overwrite one of the fixed keys of "listing" (present throughout the run)."""
        key = rec["key"] = f"L{self.rng.randrange(LISTING_KEYS)}"
        self.begin(rec, "listing", key)
        self.rec.set("listing", key, self.token())

    def op_list_keys(self, rec: dict[str, Any]) -> None:
        """List a namespace's keys while others write (history check: crosskey.py)."""
        ns = rec["ns"] = self.rng.choice(("listing", "discards"))
        store = self.stores[ns]
        self.begin(rec, ns)
        keys = self.rec.call(ns, None, "keys", {}, lambda: ["/".join(k) for k in store.keys()],  # noqa: SIM118
                             lambda r: {"ks": r})
        rec["n"] = len(keys)
