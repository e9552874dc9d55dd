"""Cross-process stress harness behind the ``persidict-stress`` console script.

Workers (processes for the file backend, threads for the memory backend)
hammer one store with contended conditional operations and append every
completed outcome to a per-worker log. The parent replays those logs into an
oracle that knows nothing about the store's internals, reads the final state
back, and reports every broken invariant. Every store call is also logged
with its start and end time, and the parent checks that each key's history
is linearizable (history.py, linearize.py, model.py) and that popitem()
KeyErrors and listings tell the truth (crosskey.py).
"""
