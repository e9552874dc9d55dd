"""A marker without a state file that holds lock stripes is a root (flock stores)."""

from __future__ import annotations

import pathlib

from persidict.concurrency.marker import PENDING, ROOT, marker_state


def test_stripe_files_mark_a_root(tmp_path: pathlib.Path) -> None:
    meta = tmp_path / "@persidict"
    meta.mkdir()
    assert marker_state(str(tmp_path)) == PENDING
    (meta / "lock-1f").touch()  # what a store locked by the flock backend holds
    assert marker_state(str(tmp_path)) == ROOT
