"""Key components and their file names: duties found unchecked by mutation testing (round 15)."""

from __future__ import annotations

import pathlib

import pytest

from persidict import FileDirDict, LocalDict, NonEmptySafeStrTuple, SafeStrTuple


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


class _Sneaky(str):
    """A str subclass whose str() and format() name another place than its text."""

    def __str__(self) -> str:
        return "../../escaped"

    def __format__(self, spec: str) -> str:
        return "../../escaped"

    def __hash__(self) -> int:
        return 0


@pytest.mark.parametrize("digest_len", [0, 4])
def test_a_str_subclass_component_is_kept_as_its_text_only(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    """Its text is validated, so only its text may be used: never its __str__/__format__."""
    base = tmp_path / "deep" / "s"
    d = FileDirDict(base_dir=base, digest_len=digest_len)
    d[_Sneaky("k")] = 1
    d[("a", _Sneaky("b"))] = 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"], "a file outside base_dir"
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["s"]
    key = NonEmptySafeStrTuple(_Sneaky("k"))
    assert [type(s) for s in key.strings] == [str]
    assert {tuple(k): v for k, v in FileDirDict(base_dir=base, digest_len=digest_len).items()} \
        == {("k",): 1, ("a", "b"): 2}
    assert d["k"] == 1 and d[("a", "b")] == 2
