"""Adversary of the locked transform: tmpfs mounts (root only, else skipped): a
full disk mid-transform, a key directory on another filesystem (see
test_adversary_update13.py)."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import pytest

from persidict import DELETE_CURRENT, ITEM_NOT_AVAILABLE, FileDirDict
from persidict.backends.key_grants import held
from persidict.engine.keys import to_key


def _store(tmp_path: pathlib.Path, **kw: Any) -> FileDirDict[Any]:
    return FileDirDict(base_dir=str(tmp_path / "s"), durable=False, **kw)


@pytest.mark.timeout(60)
def test_enospc_mid_transform_on_a_full_tmpfs(tmp_path: pathlib.Path) -> None:
    """Growing a value by transform on a 1 MiB tmpfs until the disk is full: the
    failing transform raises ENOSPC and stores nothing, leaves no temp file and
    no grant, and a transform that fits commits afterwards."""
    import errno
    import os

    from persidict import BackendError
    from persidict.cli import main

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        d: FileDirDict[Any] = FileDirDict(base_dir=str(mnt / "s"), durable=True)
        told = ""
        with pytest.raises(BackendError) as info:
            for _ in range(100):
                told = d.transform_item(("a", "k"), transformer=lambda v: (
                    "" if v is ITEM_NOT_AVAILABLE else v) + "y" * 60_000).new_value
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
        assert len(told) > 0 and d["a", "k"] == told and held() == {}
        tmp = mnt / "s" / "@persidict" / "tmp"
        assert not tmp.exists() or os.listdir(tmp) == []
        r = d.transform_item(("a", "k"), transformer=lambda v: v[:10])
        assert r.new_value == "y" * 10 == d["a", "k"] and r.resulting_etag == d.etag(("a", "k"))
        assert main(["check", str(mnt / "s")]) == 0
    finally:
        # -l: the lock file's descriptors (thread-locals) may still be open.
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@pytest.mark.timeout(60)
def test_a_key_directory_on_another_mount(tmp_path: pathlib.Path) -> None:
    """The key's directory is a tmpfs mounted inside the store: the journal's
    temp file cannot be renamed there (EXDEV), so the write falls back to a
    temp in the key's directory; transforms commit and leave no temp file."""
    import os

    d = _store(tmp_path)
    d["a", "k"] = 0
    directory = os.path.dirname(d.byte_store.location(to_key(("a", "k"))))
    os.unlink(d.byte_store.location(to_key(("a", "k"))))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", directory],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        for i in range(20):
            r = d.transform_item(("a", "k"), transformer=lambda v: (
                0 if v is ITEM_NOT_AVAILABLE else v + 1))
            assert r.new_value == i == d["a", "k"] and r.resulting_etag == d.etag(("a", "k"))
        assert sorted(os.listdir(directory)) == [os.path.basename(
            d.byte_store.location(to_key(("a", "k"))))]
        assert d.transform_item(("a", "k"), transformer=lambda v: DELETE_CURRENT).new_value is (
            ITEM_NOT_AVAILABLE)
        assert held() == {}
    finally:
        subprocess.run(["umount", "-l", directory], capture_output=True, check=False)
