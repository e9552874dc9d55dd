"""OverlappingMultiDict without sub-dicts is an empty container, not an error.

The API reference lists TypeError as the class's only exception (pickling,
item access); we raised ValueError when no sub-dict was named, so a test that
builds a bare container to check those TypeErrors failed at construction.
"""

from __future__ import annotations

import copy
import pathlib
import pickle
from typing import Any

import pytest

from persidict import FileDirDict, LocalDict, OverlappingMultiDict, PersiDict


@pytest.mark.parametrize("dict_type", [FileDirDict, LocalDict])
def test_no_sub_dicts_builds_an_empty_container(
    dict_type: type[PersiDict[Any]], tmp_path: pathlib.Path
) -> None:
    shared = {"base_dir": str(tmp_path / "m")} if dict_type is FileDirDict else {}
    m = OverlappingMultiDict(dict_type=dict_type, shared_subdicts_params=shared)
    assert m.subdicts_names == []
    assert m.individual_subdicts_params == {}
    assert m.dict_type is dict_type
    assert "OverlappingMultiDict" in repr(m)


def test_an_empty_container_still_refuses_items_and_pickling() -> None:
    m = OverlappingMultiDict(dict_type=LocalDict, shared_subdicts_params={})
    with pytest.raises(TypeError, match="no items of its own"):
        m["k"]
    with pytest.raises(TypeError, match="no items of its own"):
        m["k"] = 1
    with pytest.raises(TypeError, match="no items of its own"):
        del m["k"]
    with pytest.raises(TypeError):
        pickle.dumps(m)
    with pytest.raises(TypeError):
        copy.copy(m)
