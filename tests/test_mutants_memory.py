"""LocalDict after fork(): every live store gets a fresh lock in the child.

Found by mutation testing: the stores made by unpickling were not covered.
"""

from __future__ import annotations

import pickle

from persidict import LocalDict
from test_fork_locks import fork_while_held


def test_fork_while_a_thread_holds_the_lock_of_an_unpickled_store() -> None:
    original = LocalDict()
    original["k"] = "parent"
    d = pickle.loads(pickle.dumps(original))  # a new store, built by __setstate__
    assert d.get_params()["backend"].store is not original.get_params()["backend"].store
    assert fork_while_held(d) == 0  # None: the child hung on the inherited lock
    assert d["k"] == "parent"
