"""PersiDict is an abstract base class, as the API reference says.

The original cannot be instantiated (``TypeError``); ours built an instance
with no backend, whose first access failed with an AttributeError. Concrete
stores and user subclasses are unaffected, and a store still pickles into
another process (unpickling goes through ``__new__`` too).
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
import pathlib
import pickle

import pytest

from persidict import EmptyDict, FileDirDict, LocalDict, PersiDict


@pytest.mark.parametrize("kwargs", [{}, {"append_only": True}, {"serialization_format": "json"}])
def test_persidict_itself_cannot_be_instantiated(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="abstract"):
        PersiDict(**kwargs)


def test_a_subclass_and_the_concrete_stores_still_instantiate() -> None:
    class Sub(EmptyDict[int]):
        pass

    assert isinstance(Sub(), PersiDict)
    assert isinstance(LocalDict(), PersiDict)


@pytest.mark.parametrize("cls", [PersiDict, EmptyDict])
def test_the_constructor_signature_stays_introspectable(cls: type) -> None:
    """The check lives in ``__init__``: a ``__new__(*args, **kwargs)`` would hide it."""
    params = inspect.signature(cls).parameters
    assert list(params) == ["append_only", "base_class_for_values", "serialization_format"]


def _write_in_child(blob: bytes) -> None:
    store = pickle.loads(blob)
    store["from", "child"] = 42


def test_an_unpickled_store_works_in_a_spawned_process(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "d")
    child = mp.get_context("spawn").Process(target=_write_in_child, args=(pickle.dumps(d),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert d["from", "child"] == 42
