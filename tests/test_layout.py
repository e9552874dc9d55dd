"""FileDirDict(layout="hashed"): paths, the recorded layout, check, listings (issue 17).

Paths are computed here independently (base64 of hashlib's MD5), so a
mapping bug cannot hide behind the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing as mp
import os
import pathlib
import pickle
import random
import string
from typing import Any

import pytest

from persidict import BackendError, FileDirDict
from persidict.cli import main
from persidict.concurrency.locks import META_DIR
from persidict.engine.names import sign_component, unsign_component, unsign_names


def _b32(component: str) -> str:
    return base64.b32encode(hashlib.md5(component.encode()).digest()).decode().lower()


def _expected_path(base: pathlib.Path, key: tuple[str, ...], digest_len: int = 4) -> pathlib.Path:
    path = base
    for c in key:
        name = f"{c}_{_b32(c)[:digest_len]}" if digest_len else c
        path = path / f"+{_b32(c)[:2]}" / name
    return path.with_name(path.name + ".pkl")


def _all_files(base: pathlib.Path) -> set[pathlib.Path]:
    return {p for p in base.rglob("*") if p.is_file() and META_DIR not in p.parts}


@pytest.mark.parametrize("digest_len", [0, 1, 4, 26])
def test_hashed_paths_listing_and_pruning(tmp_path: pathlib.Path, digest_len: int) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, layout="hashed", digest_len=digest_len, durable=False)
    keys = [("k",), ("K",), ("a", "b"), ("a", "c", "d"), ("x.y",), ("a",)]
    for i, k in enumerate(keys):
        d[k] = i
    assert _all_files(base) == {_expected_path(base, k, digest_len) for k in keys}
    assert len(d) == len(keys)
    assert sorted(k.strings for k in d) == sorted(keys)
    assert sorted(k.strings for k, _ in d.keys_and_timestamps()) == sorted(keys)
    assert {k.strings: v for k, v in d.items()} == {k: i for i, k in enumerate(keys)}
    sub = d.get_subdict("a")
    assert sub.layout == "hashed"
    assert pathlib.Path(sub.base_dir) == _expected_path(base, ("a",), digest_len).with_suffix("")
    assert sorted(k.strings for k in sub) == [("b",), ("c", "d")]
    sub["e"] = "via the subdict"
    assert d[("a", "e")] == "via the subdict"
    for k in keys:
        del d[k]
    del d[("a", "e")]
    assert len(d) == 0 and list(d) == []
    assert sorted(os.listdir(base)) == [META_DIR]  # buckets and key directories pruned


def test_hashed_spreads_one_directory(tmp_path: pathlib.Path) -> None:
    hashed = FileDirDict(base_dir=tmp_path / "h", layout="hashed", durable=False)
    direct = FileDirDict(base_dir=tmp_path / "d", durable=False)
    for i in range(3000):
        hashed[f"key{i}"] = direct[f"key{i}"] = i
    widest = max(len(os.listdir(p)) for p, _, _ in os.walk(tmp_path / "h"))
    assert widest <= 1025  # the top level: at most 1024 buckets (+ the marker)
    per_bucket = [len(files) for p, _, files in os.walk(tmp_path / "h") if "+" in p]
    assert max(per_bucket) < 30 and sum(per_bucket) == 3000
    assert len(os.listdir(tmp_path / "d")) == 3001
    assert len(hashed) == len(direct) == 3000


def test_layout_is_recorded_and_the_other_refused(tmp_path: pathlib.Path) -> None:
    FileDirDict(base_dir=tmp_path / "h", layout="hashed")["k"] = 1
    FileDirDict(base_dir=tmp_path / "d")["k"] = 1
    params = json.loads((tmp_path / "h" / META_DIR / "params.json").read_text())
    assert params == {"digest_len": 4, "layout": "hashed"}
    # The default records what it always did: stores stay interchangeable.
    assert json.loads((tmp_path / "d" / META_DIR / "params.json").read_text()) == {
        "digest_len": 4
    }
    for where, other in (("h", "direct"), ("d", "hashed")):
        with pytest.raises(ValueError, match="layout") as info:
            FileDirDict(base_dir=tmp_path / where, layout=other)
        assert "'hashed'" in str(info.value) and "'direct'" in str(info.value)
    assert FileDirDict(base_dir=tmp_path / "h", layout="hashed")["k"] == 1
    with pytest.raises(ValueError, match="layout must be one of"):
        FileDirDict(base_dir=tmp_path / "x", layout="flat")


def _open_racing(base: str, layout: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    try:
        d = FileDirDict(base_dir=base, layout=layout, durable=False)
        d[f"by-{os.getpid()}"] = layout
        out.put(("ok", layout))
    except ValueError as exc:
        out.put(("refused", f"{layout}: {exc}"))


def test_racing_openers_with_two_layouts_agree_on_one(tmp_path: pathlib.Path) -> None:
    """Processes open one fresh directory at once, half with each layout:
    one layout wins, every other opener is refused, and nothing is mixed."""
    ctx = mp.get_context("fork")
    for round_ in range(4):
        base = str(tmp_path / f"s{round_}")
        n = 6
        barrier, out = ctx.Barrier(n), ctx.Queue()
        layouts = ["direct", "hashed"] * (n // 2)
        procs = [ctx.Process(target=_open_racing, args=(base, lay, barrier, out))
                 for lay in layouts]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        winners = {lay for kind, lay in results if kind == "ok"}
        assert len(winners) == 1, results
        (winner,) = winners
        loser = "direct" if winner == "hashed" else "hashed"
        refused = [msg for kind, msg in results if kind == "refused"]
        assert len(refused) == layouts.count(loser)
        assert all(msg.startswith(loser) and repr(winner) in msg for msg in refused)
        d = FileDirDict(base_dir=base, layout=winner)
        assert len(d) == n - len(refused) and d.check().clean


def _broken_hashed_store(base: pathlib.Path) -> tuple[FileDirDict, list[pathlib.Path]]:
    d = FileDirDict(base_dir=base, layout="hashed")
    good = {("k1",): 1, ("a", "k2"): 2, ("a", "b", "k3"): 3}
    for k, v in good.items():
        d[k] = v
    wrong_bucket = base / ("+aa" if _b32("moved")[:2] != "aa" else "+ab")
    wrong_bucket.mkdir()
    misplaced = wrong_bucket / sign_component("moved", 4)
    misplaced = misplaced.with_name(misplaced.name + ".pkl")
    misplaced.write_bytes(pickle.dumps("a right name in the wrong bucket"))
    top_level = base / (sign_component("direct", 4) + ".pkl")  # a direct-layout name
    top_level.write_bytes(pickle.dumps("a file outside the buckets"))
    bad_digest = _expected_path(base, ("k1",)).with_name("k1_zzzz.pkl")
    bad_digest.write_bytes(pickle.dumps("a digest that is not k1's"))
    not_a_bucket = base / "notabucket"
    not_a_bucket.mkdir()
    (not_a_bucket / "x.pkl").write_bytes(pickle.dumps("under a directory no key maps to"))
    return d, [misplaced, top_level, bad_digest, not_a_bucket]


def test_check_catches_a_broken_hashed_store(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d, planted = _broken_hashed_store(base)
    assert len(d) == 3 and ("moved",) not in d and sorted(k.strings for k in d) == [
        ("a", "b", "k3"), ("a", "k2"), ("k1",)
    ]
    report = d.check()
    assert {f.path for f in report.findings if f.kind == "stray"} == {str(p) for p in planted}
    assert report.counts()["stray"] == len(planted) and report.value_files == 3
    fixed = d.check(fix=True)
    strays = [f for f in fixed.findings if f.kind == "stray"]
    assert len(strays) == 4 and all(f.action.startswith("moved to") for f in strays), fixed
    # The wrong bucket, empty once its stray is moved, is pruned in the same run.
    assert [(f.kind, f.path) for f in fixed.findings if f.kind != "stray"] == [
        ("empty_dir", str(planted[0].parent))
    ]
    assert not any(p.exists() for p in planted)
    assert d.check().clean
    assert {k.strings: d[k] for k in d} == {("k1",): 1, ("a", "k2"): 2, ("a", "b", "k3"): 3}


def test_cli_check_reads_the_layout(tmp_path: pathlib.Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    clean = FileDirDict(base_dir=tmp_path / "clean", layout="hashed")
    for i in range(20):
        clean[("p", f"k{i}")] = i
    assert main(["check", str(tmp_path / "clean")]) == 0
    assert "clean" in capsys.readouterr().out
    _broken_hashed_store(tmp_path / "broken")
    assert main(["check", str(tmp_path / "broken")]) != 0
    assert "stray=4" in capsys.readouterr().out


def test_a_planted_bucket_symlink_is_no_way_out(tmp_path: pathlib.Path) -> None:
    """In the hashed layout even a one-component key lies below a directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    d = FileDirDict(base_dir=tmp_path / "s", layout="hashed")
    d["k"] = "inside"
    path = _expected_path(tmp_path / "s", ("k",))
    bucket = path.parent
    (outside / path.name).write_bytes(pickle.dumps("outside"))
    path.unlink()
    bucket.rmdir()
    bucket.symlink_to(outside, target_is_directory=True)
    assert "k" not in d and d.get("k") is None and list(d) == [] and len(d) == 0
    with pytest.raises(BackendError, match="symlink"):
        d["k"] = "must not leave the store"
    assert not d.discard("k")
    assert os.listdir(outside) == [path.name]
    assert pickle.loads((outside / path.name).read_bytes()) == "outside"
    assert any(f.kind == "stray" and f.path == str(bucket) for f in d.check().findings)


@pytest.mark.parametrize("layout", ["direct", "hashed"])
def test_names_that_do_not_map_back_are_not_keys(tmp_path: pathlib.Path, layout: str) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", layout=layout)
    d["real"] = 1
    where = pathlib.Path(d.byte_store.path(next(iter(d)))).parent
    junk = ["real_zzzz.pkl", "real_" + _b32("real")[:4].upper() + ".pkl",
            "._" + _b32(".")[:4] + ".pkl", "_" + _b32("")[:4] + ".pkl", "re al_abcd.pkl",
            sign_component("elsewhere", 4) + ".pkl"]  # in the hashed layout: another bucket
    if layout == "direct":
        junk.pop()
    for name in junk:
        (where / name).write_bytes(pickle.dumps("junk"))
    assert [k.strings for k in d] == [("real",)] and len(d) == 1
    assert [k.strings for k, _ in d.keys_and_timestamps()] == [("real",)]
    assert "elsewhere" not in d


def _reference_unsign(name: str, digest_len: int) -> str | None:
    """The rule, written plainly: a safe component whose digest suffix is its own."""
    if digest_len:
        component, sep, digest = name.rpartition("_")
        if not sep or len(digest) != digest_len or _b32(component)[:digest_len] != digest:
            return None
    else:
        component = name
    safe = set(string.ascii_letters + string.digits + "()_-~.=")
    ok = component and set(component) <= safe and component not in (".", "..")
    return component if ok else None


def test_unsign_names_matches_the_plain_rule() -> None:
    rng = random.Random(17)
    alphabet = string.ascii_letters + string.digits + "()_-~.=@ é+/"
    for digest_len in (0, 1, 2, 4, 7, 25, 26):
        names = []
        for _ in range(400):
            c = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            name = sign_component(c, digest_len) if rng.random() < 0.6 else c
            if rng.random() < 0.3 and name:  # damage one character
                i = rng.randrange(len(name))
                name = name[:i] + rng.choice(alphabet) + name[i + 1:]
            names.append(name)
        want = [c for c in map(lambda n: _reference_unsign(n, digest_len), names) if c]
        assert unsign_names(names, digest_len) == want
        assert [unsign_component(n, digest_len) for n in names] == [
            _reference_unsign(n, digest_len) for n in names
        ]
        files = [n + ".pkl" for n in names]
        assert unsign_names(files, digest_len, None, ".pkl") == want
        for bucket in ("+aa", "+" + _b32(want[0])[:2] if want else "+ab"):
            assert unsign_names(files, digest_len, bucket, ".pkl") == [
                c for c in want if "+" + _b32(c)[:2] == bucket
            ]


def _plus_one(v: Any) -> int:
    return v + 1 if isinstance(v, int) else 1


def _add_many(base: str, sub: bool, n: int) -> None:
    d = FileDirDict(base_dir=base, layout="hashed", durable=False)
    target = d.get_subdict("p") if sub else d
    key = "count" if sub else ("p", "count")
    for _ in range(n):
        target.transform_item(key, transformer=_plus_one, n_retries=None)


def test_subdict_and_store_share_locks_across_processes(tmp_path: pathlib.Path) -> None:
    base = str(tmp_path / "s")
    FileDirDict(base_dir=base, layout="hashed")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(base, i % 2 == 1, 150)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert FileDirDict(base_dir=base, layout="hashed")[("p", "count")] == 600
