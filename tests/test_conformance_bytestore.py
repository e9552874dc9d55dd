"""A ByteStore with only the five operations passes the conformance kit.

No ``child`` (so no subdicts: those tests skip, saying so), no locks and
no pickling (``pickles = False``):
everything else of the API comes from the engine over ``DictBytes``, the
thirty-line backend of ``test_engine_bytes.py``.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from persidict import ByteStoreDict, PersiDict
from persidict.testing import PersiDictConformance, PersiDictStateMachine, run_state_machine
from test_engine_bytes import DictBytes


def wall_clock_bytes() -> DictBytes:
    """DictBytes stamping writes with the wall clock (its own default is a counter)."""
    store = DictBytes()
    store.clock = iter(time.time, None)  # type: ignore[assignment]
    return store


class TestFiveOperationByteStore(PersiDictConformance):
    pickles = False  # DictBytes holds a threading.Lock

    def make_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict[Any]:
        return ByteStoreDict(byte_store=wall_clock_bytes(), **params)


class FiveOperationMachine(PersiDictStateMachine):
    def make_store(self, tmp_path: pathlib.Path) -> PersiDict[Any]:
        return ByteStoreDict(byte_store=wall_clock_bytes())


def test_five_operation_store_state_machine() -> None:
    run_state_machine(FiveOperationMachine, max_examples=20)
