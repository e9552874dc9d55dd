"""Existing FileDirDict test modules, run again with ``layout="hashed"`` as the default.

The layout must not change any behaviour these tests pin down (threads,
listing snapshots under overwrites, the journal, post-commit errors, symlinks
at key paths). Left out: tests that plant files at paths of the direct
layout (they would test nothing here; tests/test_layout.py has the hashed
counterparts) and tests whose workers are spawned (they would not see the
patched default).
"""

from __future__ import annotations

import os
import pathlib

import pytest

from persidict import FileDirDict
from persidict.engine.keys import to_key


@pytest.fixture(autouse=True)
def _hashed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = dict(FileDirDict.__init__.__kwdefaults__ or {})
    assert defaults["layout"] == "direct"
    defaults["layout"] = "hashed"
    monkeypatch.setattr(FileDirDict.__init__, "__kwdefaults__", defaults)


from test_concurrency_threads import *  # noqa: E402,F403
from test_journal import *  # noqa: E402,F403
from test_listing_consistency import *  # noqa: E402,F403
from test_post_commit import *  # noqa: E402,F403
from test_symlinks import (  # noqa: E402,F401
    mode,
    test_file_symlink_at_a_key_path,
    test_nested_directory_symlink,
)

# Plant files at direct-layout paths:
del test_cross_device_key_directory_falls_back_to_a_local_temp  # noqa: F821
del test_a_failed_write_leaves_no_temp  # noqa: F821


def test_the_default_is_patched_here(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s")
    d["k"] = 1
    assert d.layout == "hashed"
    assert os.path.basename(os.path.dirname(d.byte_store.path(to_key("k")))).startswith("+")
