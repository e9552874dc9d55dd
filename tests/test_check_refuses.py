"""``persidict check --fix`` touches only a store's own junk (issue 9.6).

Catches: on a directory that was never a store the CLI guessed
``digest_len=0`` and moved a Makefile and an image into quarantine; on a
store holding another store (``nest`` and ``nest/models``) it moved the
inner store's values away; and the CLI guessed digest_len from file names
even though the store knows it.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from persidict import FileDirDict
from persidict.cli import main
from persidict.concurrency.locks import META_DIR
from persidict.concurrency.marker import PARAMS
from persidict.engine.names import sign_component


def _tree(top: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in top.rglob("*") if p.is_file()}


def test_a_directory_that_is_no_store_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    (project / "img").mkdir(parents=True)
    (project / "Makefile").write_text("all:\n\ttrue\n")
    (project / "img" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    before = _tree(project)
    assert main(["check", str(project), "--fix"]) == 2
    assert "not a persidict store" in capsys.readouterr().err
    assert _tree(project) == before
    assert sorted(p.name for p in project.iterdir()) == ["Makefile", "img"]  # nothing made


@pytest.mark.parametrize("inner_digest_len", [4, 0])
@pytest.mark.parametrize("via", ["cli", "api"])
def test_a_nested_store_is_left_alone(
    tmp_path: pathlib.Path, via: str, inner_digest_len: int
) -> None:
    nest, models = tmp_path / "nest", tmp_path / "nest" / "models"
    # made first, so a root of its own
    inner = FileDirDict(base_dir=models, digest_len=inner_digest_len)
    for i in range(5):
        inner[("m", f"w{i}")] = i
    outer = FileDirDict(base_dir=nest)
    outer["k"] = "outer"
    inner_files = _tree(models)
    if via == "cli":
        assert main(["check", str(nest), "--fix"]) == 0
    else:
        report = outer.check(fix=True)
        assert report.clean and report.nested_stores == [str(models)], str(report)
    assert _tree(models) == inner_files
    reopened = FileDirDict(base_dir=models, digest_len=inner_digest_len)
    assert {tuple(k): v for k, v in reopened.items()} == {("m", f"w{i}"): i for i in range(5)}
    assert dict(FileDirDict(base_dir=nest).items()) == {("k",): "outer"}


def test_cli_reads_digest_len_from_the_marker(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names that look signed fool a guess; the recorded digest_len does not."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=0)
    for name in ("a", "b", "c"):
        d[sign_component(name, 4)] = name  # a key whose name looks signed
    d["plain"] = "a key like any other"
    keys = {tuple(k) for k in d}
    assert main(["check", str(base), "--fix", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digest_len"] == 0
    assert {tuple(k) for k in FileDirDict(base_dir=base, digest_len=0)} == keys
    assert main(["check", str(base), "--digest-len", "4"]) == 1  # the override still works


def test_older_stores_without_params_are_detected(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=6)
    for i in range(20):
        d[f"k{i}"] = i
    os.unlink(base / META_DIR / PARAMS)  # as a store made by an older version
    assert main(["check", str(base), "--fix"]) == 0
    assert len(FileDirDict(base_dir=base, digest_len=6)) == 20


def test_a_directory_of_stores_is_checked_store_by_store(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The layout ``persidict-stress --dir`` keeps: one store per namespace."""
    run = tmp_path / "persidict-stress-1"
    for ns in ("counters", "pops", "blobs"):
        FileDirDict(base_dir=run / ns)[("x", "k")] = ns
    (run / "notes.txt").write_text("not in any store: not ours to judge")
    assert main(["check", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.count("clean") == 3, out
    (run / "pops" / "junk").write_text("x")
    assert main(["check", str(run), "--fix"]) == 1
    assert not (run / "pops" / "junk").exists() and (run / "notes.txt").exists()
