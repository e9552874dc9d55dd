"""Test kits for persidict stores, shipped with the package (like ``zarr.testing``).

Needs ``pytest`` and ``hypothesis`` (``pip install persidict[testing]``);
``import persidict`` itself never imports them.

- ``PersiDictConformance``: subclass it as ``Test...`` and define
  ``make_store(tmp_path, **params)``; pytest runs the whole public API on
  your store against a plain dict oracle.
- ``PersiDictStateMachine``: a hypothesis state machine over the public API;
  subclass it with ``make_store(tmp_path)`` and call ``run_state_machine``.

Both take an optional ``ground_truth(store)`` hook that reads the stored data
without going through the store. ``$PERSIDICT_HYPOTHESIS_PROFILE=deep`` runs
ten times the examples of the default ``ci`` profile.
"""

from ._support import PROFILE_ENV, Key, hypothesis_settings, policy_of
from .conformance import PersiDictConformance
from .state_machine import PersiDictStateMachine, run_state_machine

__all__ = [
    "PROFILE_ENV",
    "Key",
    "PersiDictConformance",
    "PersiDictStateMachine",
    "hypothesis_settings",
    "policy_of",
    "run_state_machine",
]
