"""``check`` / ``check --fix``, continued: where fixes put things, what they refuse,
and how the CLI reads an older store (mutation round 15)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from persidict import FileDirDict
from persidict.concurrency.locks import META_DIR
from persidict.concurrency.marker import PARAMS

_PRINT_NAME = "from persidict.concurrency.journal import temp_name; print(temp_name(), flush=True)"


def _dead_temp_name() -> str:
    """The temp name of a process that has exited."""
    out = subprocess.run([sys.executable, "-c", _PRINT_NAME], capture_output=True, check=True,
                         timeout=60)
    return out.stdout.decode().strip()


def test_quarantine_keeps_the_path_below_the_lock_root(tmp_path: pathlib.Path) -> None:
    """Strays of two substores with one name land apart (a run's stamp is per second)."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    subs = [d.get_subdict(p) for p in ("p", "q")]
    junk = []
    for i, sub in enumerate(subs):
        sub["k"] = i
        p = next(base.glob(f"{'pq'[i]}_*")) / "junk"
        p.write_text(f"junk of {'pq'[i]}")
        junk.append(p)
    for sub in subs:
        [finding] = sub.check(fix=True).findings
        dest = pathlib.Path(finding.action.removeprefix("moved to "))
        rel = junk[subs.index(sub)].relative_to(base)
        assert dest.relative_to(base / META_DIR / "quarantine").parts[1:] == rel.parts, dest
    found = sorted(p.read_text() for p in (base / META_DIR / "quarantine").rglob("junk"))
    assert found == ["junk of p", "junk of q"]


def test_half_signed_looking_names_of_an_unsigned_store_are_not_moved(
    tmp_path: pathlib.Path,
) -> None:
    """An older store (no recorded digest_len) whose names are half 'signed-looking'."""
    from persidict.cli import main
    from persidict.engine.names import sign_component

    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=0)
    d["plain"] = 1
    d[sign_component("x", 4)] = 2
    keys = {tuple(k) for k in d}
    os.unlink(base / META_DIR / PARAMS)  # as an older version left it
    assert main(["check", str(base), "--fix"]) == 0
    assert {tuple(k) for k in FileDirDict(base_dir=base, digest_len=0)} == keys


def test_digest_len_is_detected_from_key_names_only(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """persidict's own '@' entries are no key names: a small older store is still read right."""
    import json

    from persidict.cli import main

    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=6)
    d["a"] = 1
    d["b"] = 2
    (base / META_DIR / "quarantine" / "x" / "y").mkdir(parents=True)
    os.unlink(base / META_DIR / PARAMS)  # as an older version left it
    assert main(["check", str(base), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digest_len"] == 6


def test_a_value_file_at_a_hashed_key_level_is_a_stray(tmp_path: pathlib.Path) -> None:
    """A hashed layout's key levels hold buckets only: a file there is no key's."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, layout="hashed")
    d["k"] = 1
    [value] = [p for p in base.rglob("k_*.pkl")]
    planted = base / value.name  # a good value, but one bucket level too high
    planted.write_bytes(value.read_bytes())
    report = d.check()
    assert [(f.kind, f.path) for f in report.findings] == [("stray", str(planted))], str(report)
    assert report.value_files == 1


def test_fix_reports_a_directory_under_a_dead_temps_name_and_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    """It was removed with unlink: IsADirectoryError ended the whole check --fix."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    planted = base / META_DIR / "tmp" / _dead_temp_name()
    planted.mkdir()
    (planted / "f").write_bytes(b"not ours")
    (base / "junk").write_text("x")
    report = d.check(fix=True)
    kinds = {f.kind: f.action for f in report.findings}
    assert kinds.keys() == {"dead_intent", "stray"}, str(report)
    assert kinds["dead_intent"].startswith("NOT removed") and (planted / "f").exists()
    assert kinds["stray"].startswith("moved to") and not (base / "junk").exists()
