"""pop / popitem edge cases found by mutation testing of engine/conditional.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from persidict import FileDirDict, LocalDict, MutationPolicyError, PersiDict


def _stores(tmp_path: Path, **kwargs: Any) -> list[PersiDict[Any]]:
    return [LocalDict(**kwargs), FileDirDict(base_dir=str(tmp_path / "f"), **kwargs)]


def test_popitem_on_an_empty_append_only_store_is_refused(tmp_path: Path) -> None:
    """The policy, not the emptiness, decides: MutationPolicyError, not KeyError."""
    for d in _stores(tmp_path, append_only=True):
        with pytest.raises(MutationPolicyError):
            d.popitem()
        with pytest.raises(MutationPolicyError):
            d.pop("missing", None)


def test_pop_and_popitem_of_a_stored_none(tmp_path: Path) -> None:
    """None is a value like any other: popped once, never taken for "absent"."""
    for d in _stores(tmp_path):
        d["k"] = None
        assert d.pop("k", "default") is None
        assert "k" not in d
        d["k"] = None
        assert d.popitem() == (("k",), None)
        assert len(d) == 0
        with pytest.raises(KeyError):
            d.popitem()
