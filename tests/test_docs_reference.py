"""Every public name has a place in the documentation site (issue 15.4).

``mkdocs build --strict`` (scripts/test) fails on a broken reference; this
fails on a missing one: a name exported in ``persidict.__all__`` that no
``::: persidict...`` directive of ``docs/`` renders.
"""

from __future__ import annotations

import pathlib
import re

import persidict

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
DIRECTIVE = re.compile(r"^::: persidict\.(?:[a-z_]+\.)*([A-Za-z_0-9]+)\s*$", re.M)


def referenced_names(docs: pathlib.Path) -> set[str]:
    text = "\n".join(page.read_text(encoding="utf-8") for page in docs.rglob("*.md"))
    return set(DIRECTIVE.findall(text))


def test_every_exported_name_is_in_the_api_reference() -> None:
    missing = sorted(set(persidict.__all__) - referenced_names(DOCS))
    assert not missing, f"exported but not in docs/: {missing}"


def test_the_check_catches_a_missing_name(tmp_path: pathlib.Path) -> None:
    (tmp_path / "api.md").write_text("# API\n\n::: persidict.LocalDict\n", encoding="utf-8")
    assert referenced_names(tmp_path) == {"LocalDict"}
    assert "FileDirDict" in set(persidict.__all__) - referenced_names(tmp_path)
