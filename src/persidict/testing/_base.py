"""The hooks and fixtures every part of the conformance class builds on."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from ..engine.persidict import PersiDict
from ..engine.sampling import SamplingOps
from ._support import Key, policy_of, snapshot

StoreMaker = Callable[..., PersiDict[Any]]


class ConformanceBase:
    """Hooks a subclass fills in, and the fixtures the tests take.

    Override ``make_store``; override ``ground_truth`` when the store's data
    can be read without its API (files on disk, objects in a bucket), so
    that every check also compares against what is really stored.
    """

    pickle_shares_data: ClassVar[bool] = True
    """A pickled copy reads and writes the same data (False for in-RAM stores)."""

    pickles: ClassVar[bool] = True
    """The store can be pickled (False skips the pickling tests, saying so)."""

    _counter = itertools.count()

    def make_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict[Any]:
        """Return a fresh, empty store that may keep its data under ``tmp_path``.

        ``params`` may ask for ``append_only=True`` and/or
        ``base_class_for_values=<type>``; call ``pytest.skip(...)`` for a
        parameter the store cannot honour.
        """
        raise NotImplementedError("subclasses of PersiDictConformance define make_store")

    def ground_truth(self, store: PersiDict[Any]) -> dict[Key, Any] | None:
        """Everything ``store`` holds, read around it (not through its API), or None."""
        return None

    def new_store(self, tmp_path: pathlib.Path, **params: Any) -> PersiDict[Any]:
        """``make_store`` in a directory of its own."""
        sub = tmp_path / f"store{next(self._counter)}"
        sub.mkdir(parents=True, exist_ok=True)
        return self.make_store(sub, **params)

    @pytest.fixture
    def store(self, tmp_path: pathlib.Path) -> PersiDict[Any]:
        """A fresh, empty store."""
        return self.new_store(tmp_path)

    @pytest.fixture
    def store_maker(self, tmp_path: pathlib.Path) -> StoreMaker:
        """Build further fresh stores: ``store_maker(append_only=True)``."""

        def maker(**params: Any) -> PersiDict[Any]:
            return self.new_store(tmp_path, **params)

        return maker

    def assert_state(self, store: PersiDict[Any], expected: dict[Key, Any]) -> None:
        """The store holds exactly ``expected``: through its API and around it."""
        assert snapshot(store) == expected
        assert len(store) == len(expected)
        truth = self.ground_truth(store)
        if truth is not None:
            assert truth == expected, "what is stored differs from what the store reports"

    @staticmethod
    def require_mutable(store: PersiDict[Any]) -> None:
        """Skip a test that overwrites or deletes when the store refuses to."""
        policy = policy_of(store)
        if policy != "mutable":
            pytest.skip(f"overwrites or deletes, which {policy} stores refuse "
                        "(test_append_only* checks the refusals)")

    @staticmethod
    def has_subdicts(store: PersiDict[Any]) -> bool:
        """Whether the store has a hierarchical key space (``get_subdict`` works).

        Decided without calling it (a subdict may create a directory): the
        store's class defines its own, or its ByteStore declares
        ``capabilities.subdicts``; otherwise get_subdict raises
        NotImplementedError (e.g. a ByteStore with only the five operations).
        """
        own = type(store).get_subdict is not SamplingOps.get_subdict  # e.g. FileDirDict's
        return own or store.byte_store.capabilities.subdicts

    def require_subdicts(self, store: PersiDict[Any]) -> None:
        """Skip a test of prefixes when the store has no hierarchical key space."""
        if not self.has_subdicts(store):
            pytest.skip(f"no subdicts: {type(store).__name__}.get_subdict is not implemented")

    def require_pickling(self) -> None:
        """Skip a pickling test when the subclass says its store does not pickle."""
        if not self.pickles:
            pytest.skip("the store does not pickle (pickles = False)")
