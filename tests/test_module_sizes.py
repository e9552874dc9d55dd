"""House rule: no module of the package is over 400 lines (STYLE.md)."""

from __future__ import annotations

import pathlib

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "persidict"
LIMIT = 400


def too_long(root: pathlib.Path) -> dict[str, int]:
    sizes = {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines())
             for p in root.rglob("*.py")}
    return {name: n for name, n in sizes.items() if n > LIMIT}


def test_no_module_over_the_limit() -> None:
    assert too_long(SRC) == {}


def test_the_check_sees_a_long_module(tmp_path: pathlib.Path) -> None:
    (tmp_path / "long.py").write_text("x = 1\n" * (LIMIT + 1), encoding="utf-8")
    (tmp_path / "short.py").write_text("x = 1\n" * LIMIT, encoding="utf-8")
    assert too_long(tmp_path) == {"long.py": LIMIT + 1}
