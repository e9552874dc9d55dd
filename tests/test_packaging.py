"""What a new user installs: version, license, metadata, and an sdist without broken tests."""

from __future__ import annotations

import importlib.metadata
import pathlib
import shutil
import tarfile

import pytest

import persidict

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_version_has_one_source() -> None:
    assert persidict.__version__ == importlib.metadata.version("persidict")


def test_metadata_names_license_platform_and_pythons() -> None:
    meta = importlib.metadata.metadata("persidict")
    classifiers = meta.get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.1") for c in classifiers)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_sdist_ships_no_tests_that_cannot_run(tmp_path: pathlib.Path) -> None:
    """An sdist with tests/test_*.py but no conftest.py cannot even collect them."""
    build_meta = pytest.importorskip("setuptools.build_meta")
    src = tmp_path / "src-tree"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "__pycache__", ".*_cache", "build", "dist"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(src)
        name = build_meta.build_sdist(str(tmp_path / "dist"))
    with tarfile.open(tmp_path / "dist" / name) as tar:
        names = tar.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    assert any(n.endswith("src/persidict/py.typed") for n in names)
    shipped_tests = [n for n in names if "/tests/" in n]
    assert not shipped_tests, shipped_tests[:5]


def test_cli_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from persidict.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"persidict {persidict.__version__}"
