"""Property test: ``persidict.testing``'s state machine on every store and stack.

Random operation sequences against a model dict and the etags seen, on every
kind of ``test_conformance_stacks.KINDS`` (stores, cached wrappers,
write-once), with the files or bucket objects under each stack read as
ground truth. ``PERSIDICT_HYPOTHESIS_PROFILE=deep`` runs a longer search.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from persidict import PersiDict
from persidict.testing import (
    PROFILE_ENV,
    PersiDictStateMachine,
    hypothesis_settings,
    run_state_machine,
)
from test_conformance_stacks import KINDS, read_around


@pytest.mark.parametrize("name", list(KINDS))
def test_state_machine(name: str) -> None:
    kind = KINDS[name]

    class Machine(PersiDictStateMachine):
        transform_item_refused = kind.transform_item_refused

        def make_store(self, tmp_path: pathlib.Path) -> PersiDict:
            return kind.make(tmp_path)

        def ground_truth(self, store: PersiDict) -> dict[tuple[str, ...], Any] | None:
            return read_around(store)

    Machine.__name__ = f"StoreMachine_{name}"
    run_state_machine(Machine, max_examples=40, steps=30)


def test_hypothesis_profile_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ci`` (the default) keeps CI short; ``deep`` searches ten times longer."""
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    ci = hypothesis_settings(max_examples=40, stateful_step_count=30)
    assert (ci.max_examples, ci.stateful_step_count, ci.deadline) == (40, 30, None)
    monkeypatch.setenv(PROFILE_ENV, "deep")
    deep = hypothesis_settings(max_examples=40, stateful_step_count=30)
    assert (deep.max_examples, deep.stateful_step_count) == (400, 60)
    monkeypatch.setenv(PROFILE_ENV, "dep")
    with pytest.raises(ValueError, match="PERSIDICT_HYPOTHESIS_PROFILE"):
        hypothesis_settings(max_examples=40)
