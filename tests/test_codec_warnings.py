"""json stores raise no warning and store what they always stored (issue 15.2)."""

from __future__ import annotations

import warnings
from pathlib import Path

from persidict import FileDirDict, LocalDict


def test_json_writes_and_reads_raise_no_warning(tmp_path: Path) -> None:
    stores = [FileDirDict(base_dir=tmp_path / "f", serialization_format="json"),
              LocalDict(serialization_format="json")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for d in stores:
            d["k"] = {"a": [1, 2.5, None], "t": (1, 2)}
            assert d["k"] == {"a": [1, 2.5, None], "t": (1, 2)}
    assert not caught, [str(w.message) for w in caught]


def test_json_bytes_use_the_reference_options(tmp_path: Path) -> None:
    """indent 4, non-string keys stringified (keys=False), tuples tagged."""
    d = FileDirDict(base_dir=tmp_path / "f", serialization_format="json")
    d["k"] = {3: (1,)}
    (path,) = (tmp_path / "f").glob("*.json")
    expected = '{\n    "3": {\n        "py/tuple": [\n            1\n        ]\n    }\n}'
    assert path.read_text() == expected
