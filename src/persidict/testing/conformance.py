"""PersiDictConformance: the whole public API of a store, against a plain dict.

Subclass it in a test module, name the subclass ``Test...`` and define
``make_store``; pytest then runs every test on your store::

    class TestMyStore(PersiDictConformance):
        def make_store(self, tmp_path, **params):
            return MyStore(base_dir=str(tmp_path), **params)

Each test writes through the store's API, keeps what it wrote in a plain
dict, and compares every answer (values, ``ConditionalOperationResult``
fields, etags, timestamps, refusals) with it; ``ground_truth`` adds a reading
of the stored data that does not go through the store.
"""

from __future__ import annotations

from ._base import ConformanceBase, StoreMaker
from ._conditional import ConditionalTests
from ._isolation import IsolationTests
from ._mapping import MappingTests
from ._ordering import OrderingTests
from ._policy import PolicyTests

__all__ = ["ConformanceBase", "PersiDictConformance", "StoreMaker"]


class PersiDictConformance(
    MappingTests, OrderingTests, ConditionalTests, PolicyTests, IsolationTests
):
    """Every conformance test; see the module docstring and ``ConformanceBase``.

    A store whose ``make_store()`` is append-only or write-once skips the
    tests that overwrite or delete (saying so) and is checked by the
    ``test_append_only*`` tests, which expect every such attempt refused with
    ``MutationPolicyError`` and the store unchanged.
    """
