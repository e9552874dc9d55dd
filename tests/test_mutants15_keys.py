"""Key components and their file names: duties found unchecked by mutation testing (round 15)."""

from __future__ import annotations

import pathlib
import pickle
import subprocess
import sys

import pytest

from persidict import FileDirDict, LocalDict, NonEmptySafeStrTuple, SafeStrTuple
from persidict.concurrency.locks import META_DIR
from persidict.engine.names import bucket_of, sign_component


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


def _names(base: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")
                  if META_DIR not in p.parts)


def _keys(d: FileDirDict) -> set[tuple[str, ...]]:
    return {tuple(k) for k in d}


@pytest.mark.parametrize("digest_len", [0, 4])
def test_names_that_only_resemble_a_signed_name_are_no_keys(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    """Written around the store: a suffix matched loosely ('Xpkl'), a non-ASCII letter
    beside a real component, a '.' or '..' component. None is a key, each is a stray."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=digest_len)
    d["real"] = 0
    k, dot, dots = (sign_component(c, digest_len) for c in ("k", ".", ".."))
    planted = [f"{k}Xpkl", f"{k[:1]}\u00e4{k[1:]}.pkl", f"{dot}.pkl", f"{dots}.pkl"]
    for name in planted:
        (base / name).write_bytes(pickle.dumps("planted"))
    assert _keys(d) == {("real",)} and len(d) == 1
    report = d.check()
    assert sorted(f.path for f in report.findings) == sorted(str(base / n) for n in planted)
    assert {f.kind for f in report.findings} == {"stray"}


@pytest.mark.parametrize("digest_len", [0, 1, 4])
def test_the_hashed_layout_lists_a_name_only_in_its_own_bucket(
    tmp_path: pathlib.Path, digest_len: int
) -> None:
    """A value moved into another bucket (or a '+' directory that is no bucket) is no key."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, layout="hashed", digest_len=digest_len)
    for i in range(6):
        d[f"k{i}"] = i
    d[("a", "b")] = "ab"
    assert _keys(d) == {*((f"k{i}",) for i in range(6)), ("a", "b")}
    src = next(base.glob(f"+*/{sign_component('k0', digest_len)}.pkl"))
    other = next(p for p in base.iterdir() if p.name.startswith("+") and p != src.parent)
    moved = other / src.name
    src.rename(moved)
    (other / "not signed.pkl").write_bytes(b"x")  # a bucket's names are checked one by one
    junk_dir = base / "+junk"
    junk_dir.mkdir()
    (junk_dir / src.name).write_bytes(moved.read_bytes())
    assert ("k0",) not in _keys(d) and len(_keys(d)) == 6
    assert "k0" not in d
    report = FileDirDict(base_dir=base, layout="hashed", digest_len=digest_len).check()
    expected = {("stray", str(moved)), ("stray", str(junk_dir)),
                ("stray", str(other / "not signed.pkl"))}
    if not any(src.parent.iterdir()):
        expected.add(("empty_dir", str(src.parent)))
    assert {(f.kind, f.path) for f in report.findings} == expected, str(report)


def test_digest_len_1_round_trips(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=1)
    d[("a", "b")] = 1
    d["c"] = 2
    assert _names(base) == sorted([sign_component("a", 1), f"{sign_component('a', 1)}/"
                                   f"{sign_component('b', 1)}.pkl",
                                   f"{sign_component('c', 1)}.pkl"])
    assert {tuple(k): v for k, v in FileDirDict(base_dir=base, digest_len=1).items()} == {
        ("a", "b"): 1, ("c",): 2}
    (base / "c.pkl").write_bytes(pickle.dumps("unsigned"))  # no digest: no key
    digit = sign_component("z", 1)[-1]
    for sep in "-~.=":  # the digest joined by another safe character: no key either
        (base / f"z{sep}{digit}.pkl").write_bytes(pickle.dumps("planted"))
    assert _keys(FileDirDict(base_dir=base, digest_len=1)) == {("a", "b"), ("c",)}


def test_a_store_opened_below_a_directory_that_is_no_bucket_is_left_alone(
    tmp_path: pathlib.Path,
) -> None:
    """``x/<c216 signed>`` is no key path of a hashed store whatever c216's bucket ('+aa',
    the bucket of all-zero bits): the inner store gets a marker, and check --fix leaves it."""
    assert bucket_of("c216") == "+aa"
    base = tmp_path / "s"
    outer = FileDirDict(base_dir=base, layout="hashed")
    outer["k"] = 1
    inner_dir = base / "x" / sign_component("c216", 4)
    code = ("import sys; from persidict import FileDirDict; "
            "FileDirDict(base_dir=sys.argv[1], layout='hashed')['w'] = 'inner'")
    subprocess.run([sys.executable, "-c", code, str(inner_dir)], check=True, timeout=60)
    assert (inner_dir / META_DIR).is_dir(), "no marker: x/... was taken for a key path"
    report = outer.check(fix=True)
    assert all(f.action.startswith("left:") for f in report.findings), str(report)
    assert FileDirDict(base_dir=inner_dir, layout="hashed")["w"] == "inner"


def test_replace_unsafe_chars_uses_the_given_replacement() -> None:
    from persidict import replace_unsafe_chars

    assert replace_unsafe_chars("a b/c", "-") == "a-b-c"
    assert replace_unsafe_chars("a b/c", "") == "abc"
    assert replace_unsafe_chars("ok_(1)", "!") == "ok_(1)"


def test_an_unordered_collection_is_no_key(tmp_path: pathlib.Path) -> None:
    """A set has no order, so it names no key path: TypeError, nothing stored."""
    d = FileDirDict(base_dir=tmp_path / "s")
    for bad in ({"a", "b"}, frozenset({"a"}), ("a", {"b"})):
        with pytest.raises(TypeError, match="sequence of str"):
            d[bad] = 1
        with pytest.raises(TypeError):
            NonEmptySafeStrTuple(bad)
    assert len(d) == 0
