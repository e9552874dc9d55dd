"""``persidict.testing`` catches broken stores: both kits fail on them.

LocalDict subclasses, each with one bug a backend author could make:
a conditional put that writes even when the etag does not match (while
reporting the condition as failed), a pop that returns the value but
forgets to delete it, and reads that hand out one shared object. The
conformance class runs in a child pytest and must fail on them (and pass
on a plain LocalDict, so the failures are the bugs and not the harness);
the state machine must raise on them.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from persidict import IF_ETAG_CHANGED, Joker, LocalDict, PersiDict
from persidict.testing import PersiDictStateMachine, run_state_machine


class IgnoresEtag(LocalDict):
    """set_item_if: reports a failed condition, but writes anyway."""

    def set_item_if(
        self, key: Any, *, value: Any, condition: Any, expected_etag: Any,
        retrieve_value: Any = IF_ETAG_CHANGED,
    ) -> Any:
        result = super().set_item_if(key, value=value, condition=condition,
                                     expected_etag=expected_etag, retrieve_value=retrieve_value)
        if not result.condition_was_satisfied and not isinstance(value, Joker):
            self[key] = value
        return result


class PopKeeps(LocalDict):
    """pop: returns the value and leaves the key in place."""

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            return self[key]
        if default:
            return default[0]
        raise KeyError(key)


class SharesObjects(LocalDict):
    """Reads hand out one object per key (as LocalDict did before issue 10.4)."""

    def __getitem__(self, key: Any) -> Any:
        held = self.__dict__.setdefault("_held", {})
        if key not in held or not self.__contains__(key):
            held[key] = super().__getitem__(key)
        return held[key]


# The child pytest imports the stores above from this file.
CONFORMANCE_MODULE = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})

from persidict import LocalDict
from persidict.testing import PersiDictConformance
from test_conformance_broken import IgnoresEtag, PopKeeps, SharesObjects


def _kit(store_type):
    class Kit(PersiDictConformance):
        pickle_shares_data = False

        def make_store(self, tmp_path, **params):
            return store_type(**params)

    return Kit


TestHealthy = _kit(LocalDict)
TestIgnoresEtag = _kit(IgnoresEtag)
TestPopKeeps = _kit(PopKeeps)
TestSharesObjects = _kit(SharesObjects)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """class name -> test name -> "passed" / "failed" / "skipped", from a child pytest."""
    tmp = tmp_path_factory.mktemp("kit")
    (tmp / "test_kit.py").write_text(CONFORMANCE_MODULE)
    report = tmp / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}", "test_kit.py"],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, dict[str, str]] = defaultdict(dict)
    for case in ET.parse(report).iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "")
        tags = {child.tag for child in case}
        status = ("failed" if tags & {"failure", "error"}
                  else "skipped" if "skipped" in tags else "passed")
        result[cls][name] = status
    return result


def _failed(outcome: dict[str, str]) -> set[str]:
    return {name.split("[")[0] for name, status in outcome.items() if status == "failed"}


def test_conformance_passes_a_correct_store(outcomes: dict[str, dict[str, str]]) -> None:
    healthy = outcomes["TestHealthy"]
    assert len(healthy) > 150
    assert _failed(healthy) == set()


def test_conformance_fails_a_store_whose_conditional_put_ignores_the_etag(
    outcomes: dict[str, dict[str, str]],
) -> None:
    failed = _failed(outcomes["TestIgnoresEtag"])
    assert {"test_set_item_if", "test_compare_and_swap_loop"} <= failed
    assert "test_get" not in failed and "test_pop" not in failed  # only the bug fails


def test_conformance_fails_a_store_whose_pop_forgets_to_delete(
    outcomes: dict[str, dict[str, str]],
) -> None:
    failed = _failed(outcomes["TestPopKeeps"])
    assert "test_pop" in failed
    assert "test_set_item_if" not in failed and "test_get" not in failed


def test_conformance_fails_a_store_whose_reads_alias_the_stored_value(
    outcomes: dict[str, dict[str, str]],
) -> None:
    failed = _failed(outcomes["TestSharesObjects"])
    assert "test_mutating_a_read_value_changes_nothing_stored" in failed
    assert "test_set_item_if" not in failed and "test_pop" not in failed


def _machine(store_type: type[LocalDict]) -> type[PersiDictStateMachine]:
    class Machine(PersiDictStateMachine):
        def make_store(self, tmp_path: Path) -> PersiDict:
            return store_type()

    return Machine


def test_state_machine_passes_a_correct_store() -> None:
    run_state_machine(_machine(LocalDict), max_examples=20)


@pytest.mark.parametrize("store_type", [IgnoresEtag, PopKeeps], ids=["ignores_etag", "pop_keeps"])
def test_state_machine_fails_a_broken_store(store_type: type[LocalDict]) -> None:
    try:
        run_state_machine(_machine(store_type), max_examples=200)
    except Exception as exc:  # one failure, or a group of distinct ones
        assert _leaves(exc) and all(isinstance(e, AssertionError) for e in _leaves(exc)), exc
    else:
        raise AssertionError(f"the state machine passed a broken {store_type.__name__}")


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``, groups flattened."""
    inner = getattr(exc, "exceptions", None)
    if inner is None:
        return [exc]
    return [leaf for e in inner for leaf in _leaves(e)]
