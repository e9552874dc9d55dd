"""LocalDict after fork(): every live store gets a fresh lock in the child.

Found by mutation testing: the stores made by unpickling were not covered.
"""

from __future__ import annotations

import pickle
import threading

from persidict import LocalDict
from test_fork_locks import _fork_and_use


def test_fork_while_a_thread_holds_the_lock_of_an_unpickled_store() -> None:
    original = LocalDict()
    original["k"] = "parent"
    d = pickle.loads(pickle.dumps(original))  # a new store, built by __setstate__
    assert d._store is not original._store
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with d._store.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        assert _fork_and_use(d) == 0  # None: the child hung on the inherited lock
    finally:
        release.set()
        t.join()
    assert d["k"] == "parent"
