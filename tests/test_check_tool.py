"""``persidict check PATH [--fix]`` and ``FileDirDict.check``.

A store is seeded with every kind of damage a crash or an outside hand
leaves; the check must find each, the fix must repair each without losing a
byte (unreadable values and strays are moved into the quarantine, never
deleted), the keys must be untouched, and a second check must be clean.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys

import pytest

from persidict import FileDirDict
from persidict.backends.file_walk import path_parts
from persidict.cli import main
from persidict.concurrency.journal import temp_name

_PRINT_NAME = "from persidict.concurrency.journal import temp_name; print(temp_name(), flush=True)"


def _dead_temp_name() -> str:
    out = subprocess.run([sys.executable, "-c", _PRINT_NAME], capture_output=True, check=True)
    return out.stdout.decode().strip()


def _seed_damage(base: pathlib.Path) -> tuple[FileDirDict, dict[str, list[pathlib.Path]], dict]:
    """A store with good keys plus one or more instances of every damage kind."""
    d = FileDirDict(base_dir=base)
    good = {("k1",): 1, ("a", "b", "k2"): [2, 2], ("a", "k3"): "three"}
    for k, v in good.items():
        d[k] = v
    d["torn"] = list(range(1000))
    d[("a", "garbage")] = "x"
    d[("deep", "gone")] = 0
    del d[("deep", "gone")]  # pruned properly
    journal = base / "@persidict" / "tmp"
    key_dir = next(p for p in base.iterdir() if p.name.startswith("a_"))

    seeded: dict[str, list[pathlib.Path]] = {k: [] for k in
                                             ("dead_intent", "orphan_temp", "unreadable",
                                              "stray", "empty_dir")}
    p = journal / _dead_temp_name()
    p.write_bytes(b"an interrupted write")
    seeded["dead_intent"].append(p)
    p = key_dir / _dead_temp_name()
    p.write_bytes(b"an interrupted same-directory write")
    seeded["orphan_temp"].append(p)

    torn = next(base.glob("torn_*.pkl"))
    torn.write_bytes(torn.read_bytes()[:50])  # a torn pickle
    seeded["unreadable"].append(torn)
    garbage = next(key_dir.glob("garbage_*.pkl"))
    garbage.write_bytes(b"\xff\xfe not a pickle at all")
    seeded["unreadable"].append(garbage)
    bad_json = base / "j_ffff.json"  # a name whose digest is wrong: no key maps to it
    bad_json.write_text("{")
    seeded["stray"].append(bad_json)

    (base / "README").write_text("notes someone left")
    seeded["stray"].append(base / "README")
    (key_dir / "@junk").write_text("an '@' name that is not ours")
    seeded["stray"].append(key_dir / "@junk")
    (base / "link_to_k1").symlink_to(next(base.glob("k1_*.pkl")))
    seeded["stray"].append(base / "link_to_k1")
    os.mkfifo(base / "fifo")
    seeded["stray"].append(base / "fifo")
    bad_dir = base / "not-a-signed-dir"
    bad_dir.mkdir()
    (bad_dir / "inner.pkl").write_bytes(pickle.dumps("inner"))
    seeded["stray"].append(bad_dir)

    e_dir, f_dir = path_parts(("e", "f"), d.byte_store.digest_len, "", d.byte_store.hashed)
    empty = base / e_dir
    (empty / f_dir).mkdir(parents=True)  # a tree holding no file: one finding
    seeded["empty_dir"].append(empty)
    return d, seeded, good


def _contents(paths: list[pathlib.Path]) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in paths:
        if p.is_symlink():
            out[p.name] = "->" + os.readlink(p)
        elif p.is_file():
            out[p.name] = p.read_bytes()
        elif p.is_dir():
            for q in p.rglob("*"):
                if q.is_file():
                    out[str(q.relative_to(p.parent))] = q.read_bytes()
        else:
            out[p.name] = "fifo"
    return out


def _quarantined(base: pathlib.Path) -> list[pathlib.Path]:
    runs = list((base / "@persidict" / "quarantine").iterdir())
    assert len(runs) == 1
    return [p for p in runs[0].rglob("*") if not p.is_dir() or p.name == "not-a-signed-dir"]


def test_check_finds_and_fixes_every_kind(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d, seeded, good = _seed_damage(base)
    report = d.check()
    found = {k: sorted(f.path for f in report.findings if f.kind == k) for k in seeded}
    # a stray directory is moved whole: its children are not looked into
    for kind, paths in seeded.items():
        assert found[kind] == sorted(str(p) for p in paths), kind
    assert not report.clean and report.counts()["stray"] == len(seeded["stray"])
    for p in seeded["dead_intent"] + seeded["orphan_temp"] + seeded["stray"]:
        assert os.path.lexists(p), "check without fix must not change anything"

    moved = seeded["unreadable"] + seeded["stray"]
    before = _contents(moved)
    fixed = d.check(fix=True)
    assert [f.kind for f in fixed.findings] == [f.kind for f in report.findings]
    assert all(f.action and "NOT" not in f.action for f in fixed.findings), fixed
    for paths in seeded.values():
        for p in paths:
            assert not os.path.lexists(p), p
    after = _contents(_quarantined(base))
    for name, content in before.items():  # every moved byte is in the quarantine
        assert after.get(name) == content or any(
            k.endswith(name) and v == content for k, v in after.items()
        ), name

    again = FileDirDict(base_dir=base).check()
    assert again.clean, str(again)
    fresh = FileDirDict(base_dir=base)
    assert {tuple(k): v for k, v in fresh.items()} == good
    fresh["k1"] = "still writable"
    assert fresh["k1"] == "still writable"


def test_cli_exit_codes_and_report(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    base = tmp_path / "s"
    _seed_damage(base)
    assert main(["check", str(base)]) == 1
    out = capsys.readouterr().out
    for kind in ("dead_intent", "orphan_temp", "unreadable", "stray", "empty_dir"):
        assert kind in out
    assert main(["check", str(base), "--fix"]) == 1  # problems were found (and fixed)
    assert "repaired" in capsys.readouterr().out
    assert main(["check", str(base), "--json"]) == 0
    assert '"clean": true' in capsys.readouterr().out
    assert main(["check", str(tmp_path / "missing")]) == 2


def test_console_script_runs(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    for k in ("k", "l", "m"):  # enough names to detect digest_len=4
        d[k] = 1
    exe = pathlib.Path(sys.executable).with_name("persidict")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "persidict.cli"]
    ok = subprocess.run([*cmd, "check", str(base)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (base / "stray.txt").write_text("x")
    bad = subprocess.run([*cmd, "check", str(base)], capture_output=True, text=True)
    assert bad.returncode == 1 and "stray" in bad.stdout


def test_check_does_not_recover_by_itself(tmp_path: pathlib.Path) -> None:
    """The CLI reports dead intents rather than silently removing them."""
    base = tmp_path / "s"
    FileDirDict(base_dir=base)["k"] = 1
    dead = base / "@persidict" / "tmp" / _dead_temp_name()
    dead.write_bytes(b"x")
    assert main(["check", str(base)]) == 1
    assert dead.exists()


def test_live_temps_and_other_formats_are_not_problems(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    FileDirDict(base_dir=base)["k"] = 1
    FileDirDict(base_dir=base, serialization_format="json")["j"] = {"a": 1}
    FileDirDict(base_dir=base, serialization_format="txt", base_class_for_values=str)["t"] = "text"
    (base / "@persidict" / "tmp" / temp_name()).write_bytes(b"in flight")
    report = FileDirDict(base_dir=base).check(fix=True)
    assert report.clean, str(report)
    assert report.live_temps == 1 and report.value_files == 3


@pytest.mark.parametrize("digest_len", [0, 4, 8])
def test_cli_detects_digest_len(tmp_path: pathlib.Path, digest_len: int) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=digest_len)
    for i in range(20):
        d[("dir", f"k{i}")] = i
    assert main(["check", str(base), "--fix"]) == 0
    assert len(FileDirDict(base_dir=base, digest_len=digest_len)) == 20


def test_unpicklable_class_is_not_unreadable(tmp_path: pathlib.Path) -> None:
    """Structural check only: a value whose class is not importable is fine."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    # A protocol-4 pickle of a class from a module that does not exist.
    data = b"\x80\x04\x8c\x0cno_such_modl\x94\x8c\x03Cls\x94\x93\x94."
    next(base.glob("k_*.pkl")).write_bytes(data)
    with pytest.raises(Exception):  # noqa: B017 - the store cannot load it...
        d["k"]
    assert d.check().clean  # ...but its bytes are intact: not quarantined
