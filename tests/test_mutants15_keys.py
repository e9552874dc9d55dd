"""Key components and their file names: duties found unchecked by mutation testing (round 15)."""

from __future__ import annotations

import pytest

from persidict import LocalDict, NonEmptySafeStrTuple, SafeStrTuple


def test_the_component_length_limit_is_253_characters() -> None:
    d = LocalDict()
    d["x" * 253] = 1
    assert d["x" * 253] == 1
    with pytest.raises(ValueError, match="limit is 253"):
        d["y" * 254] = 2
    with pytest.raises(ValueError, match="limit is 253"):
        NonEmptySafeStrTuple("a", "y" * 254)
    assert SafeStrTuple("z" * 253).strings == ("z" * 253,)
    assert dict(d.items()) == {("x" * 253,): 1}
