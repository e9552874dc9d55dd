"""``k in d`` reports storage errors as every other operation does.

A key whose path is longer than the OS accepts (ENAMETOOLONG) made ``in``
raise a bare OSError while get, set, del and timestamp raised the mapped
StorageOSError (a BackendError naming key, path and operation).
"""

from __future__ import annotations

import errno
import pathlib

import pytest

from persidict import BackendError, FileDirDict


def test_in_maps_a_path_too_long_like_every_operation(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    key = tuple("c" * 200 + str(i) for i in range(24))  # a path of ~5 KB > PATH_MAX
    for op in (lambda: key in d, lambda: d.timestamp(key), lambda: d[key]):
        with pytest.raises(BackendError) as info:
            op()
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENAMETOOLONG
        assert "c" * 40 in str(info.value)  # names the key


def test_in_and_timestamp_still_agree_on_absent_and_present(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    assert "k" not in d and ("a", "b") not in d
    with pytest.raises(KeyError):
        d.timestamp("k")
    d["k"] = 1
    d["a", "b"] = 2
    assert "k" in d and ("a", "b") in d and d.timestamp("k") > 0
    (tmp_path / "s" / "dir_only").mkdir()
    assert "dir_only" not in d
