"""The public facade: ``persidict.__all__`` and the import direction of layers."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

import persidict

DOCUMENTED_CLASSES = {
    "AlwaysRetrieveFlag",
    "AnyETagFlag",
    "AppendOnlyDictCached",
    "BasicS3Dict",
    "ConditionalOperationResult",
    "DeleteCurrentFlag",
    "ETagConditionFlag",
    "ETagHasChangedFlag",
    "ETagIsTheSameFlag",
    "EmptyDict",
    "FileDirDict",
    "IfETagChangedRetrieveFlag",
    "ItemNotAvailableFlag",
    "Joker",
    "KeepCurrentFlag",
    "LocalDict",
    "MutableDictCached",
    "NeverRetrieveFlag",
    "NonEmptySafeStrTuple",
    "OperationResult",
    "OverlappingMultiDict",
    "PersiDict",
    "RetrieveValueFlag",
    "S3Dict_FileDirCached",
    "SafeStrTuple",
    "TransformingFunction",
    "ValueNotRetrievedFlag",
    "WriteOnceDict",
    "ByteStore",  # issue 10: the backend contract, for third-party backends
    "ByteStoreDict",  # issue 10: the whole API over any ByteStore
    "Blob",  # issue 10: what a ByteStore's read returns
    "Capabilities",  # issue 10: what a ByteStore declares
}
DOCUMENTED_EXCEPTIONS = {
    "PersiDictError",  # issue 10: the root of the hierarchy
    "PreconditionFailed",  # issue 10: what a ByteStore raises when a condition fails
    "WriteOnceConsistencyError",  # issue 11.14: both a MutationPolicyError and a ValueError
    "BackendError",
    "ConcurrencyConflictError",
    "LockTimeoutError",
    "LocksUnsupportedError",
    "MutationPolicyError",
    "OutcomeUnknownError",  # issue 9: a mutation whose outcome cannot be known
}
DOCUMENTED_FUNCTIONS = {
    "get_safe_chars",
    "replace_unsafe_chars",
    "contains_unsafe_chars",  # issue 11.6
    "memoize",  # issue 14
    "evict",  # issue 14
}
# issue 11.6: typing names and constants users of the original import from
# the top level.
DOCUMENTED_TYPING_NAMES = {
    "PersiDictKey",
    "NonEmptyPersiDictKey",
    "ETagValue",
    "ETagIfExists",
    "ValueType",
}
DOCUMENTED_VALUES = {"SAFE_CHARS_SET", "SAFE_STRING_MAX_LENGTH"}  # issue 11.6
ALIASES = {"S3Dict"}
CONSTANTS = {
    "KEEP_CURRENT": "KeepCurrentFlag",
    "DELETE_CURRENT": "DeleteCurrentFlag",
    "ANY_ETAG": "AnyETagFlag",
    "ETAG_IS_THE_SAME": "ETagIsTheSameFlag",
    "ETAG_HAS_CHANGED": "ETagHasChangedFlag",
    "ITEM_NOT_AVAILABLE": "ItemNotAvailableFlag",
    "VALUE_NOT_RETRIEVED": "ValueNotRetrievedFlag",
    "ALWAYS_RETRIEVE": "AlwaysRetrieveFlag",
    "NEVER_RETRIEVE": "NeverRetrieveFlag",
    "IF_ETAG_CHANGED": "IfETagChangedRetrieveFlag",
}
PUBLIC = (
    DOCUMENTED_CLASSES | DOCUMENTED_EXCEPTIONS | DOCUMENTED_FUNCTIONS | ALIASES | set(CONSTANTS)
    | DOCUMENTED_TYPING_NAMES | DOCUMENTED_VALUES
)

SRC = pathlib.Path(persidict.__file__).resolve().parent


def test_all_is_exactly_the_public_api() -> None:
    exported = list(persidict.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    missing = PUBLIC - set(exported)
    extra = set(exported) - PUBLIC
    assert not missing, f"missing from __all__: {sorted(missing)}"
    assert not extra, f"not documented, but in __all__: {sorted(extra)}"


def test_facade_defines_nothing_else() -> None:
    """Every public attribute of the package is in __all__ (subpackages aside)."""
    import types

    stray = [
        name for name, obj in vars(persidict).items()
        if not name.startswith("_") and name not in persidict.__all__
        and not isinstance(obj, types.ModuleType)
    ]
    assert not stray, stray


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_public_name_importable(name: str) -> None:
    mod = importlib.import_module("persidict")
    assert hasattr(mod, name), name
    ns: dict[str, object] = {}
    exec(f"from persidict import {name}", ns)
    assert ns[name] is getattr(persidict, name)


def test_kinds_of_public_names() -> None:
    for name in DOCUMENTED_CLASSES:
        assert isinstance(getattr(persidict, name), type), name
    for name in DOCUMENTED_EXCEPTIONS:
        obj = getattr(persidict, name)
        assert isinstance(obj, type) and issubclass(obj, Exception), name
    for name in DOCUMENTED_FUNCTIONS:
        assert callable(getattr(persidict, name)), name
    for const, cls_name in CONSTANTS.items():
        assert isinstance(getattr(persidict, const), getattr(persidict, cls_name)), const
    assert persidict.S3Dict is persidict.S3Dict_FileDirCached
    assert issubclass(persidict.MutationPolicyError, TypeError)
    assert issubclass(persidict.BackendError, RuntimeError)
    assert issubclass(persidict.ConcurrencyConflictError, RuntimeError)
    assert issubclass(persidict.NonEmptySafeStrTuple, persidict.SafeStrTuple)
    for store_cls in (
        "FileDirDict", "LocalDict", "EmptyDict", "BasicS3Dict", "S3Dict_FileDirCached",
        "WriteOnceDict", "AppendOnlyDictCached", "MutableDictCached",
    ):
        assert issubclass(getattr(persidict, store_cls), persidict.PersiDict), store_cls


def test_typing_names_and_values() -> None:
    """issue 11.6: what each typing name and constant is."""
    import collections.abc
    import typing

    assert typing.get_args(persidict.PersiDictKey) == (
        persidict.SafeStrTuple, collections.abc.Sequence[str], str,
    )
    assert typing.get_args(persidict.NonEmptyPersiDictKey) == (
        persidict.NonEmptySafeStrTuple, collections.abc.Sequence[str], str,
    )
    assert persidict.ETagValue("x") == "x"
    assert persidict.ETagValue.__supertype__ is str  # type: ignore[attr-defined]
    assert set(typing.get_args(persidict.ETagIfExists)) == {
        persidict.ETagValue, persidict.ItemNotAvailableFlag,
    }
    assert isinstance(persidict.ValueType, typing.TypeVar)
    assert persidict.SAFE_STRING_MAX_LENGTH == 254
    assert isinstance(persidict.SAFE_CHARS_SET, set)
    assert persidict.get_safe_chars() == persidict.SAFE_CHARS_SET
    assert isinstance(persidict.__version__, str) and persidict.__version__


def test_import_persidict_loads_no_boto3() -> None:
    """The S3 stores load lazily: a plain ``import persidict`` costs no boto3."""
    import subprocess
    import sys

    code = (
        "import sys, persidict\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
        "persidict.BasicS3Dict\n"
        "assert 'boto3' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_safe_chars_helpers() -> None:
    import string

    chars = persidict.get_safe_chars()
    assert isinstance(chars, set)
    assert chars == set(string.ascii_letters + string.digits + "()_-~.=")
    chars.add("/")  # a copy: mutating it changes nothing
    assert "/" not in persidict.get_safe_chars()
    assert persidict.replace_unsafe_chars("a/b c*d", "_") == "a_b_c_d"
    assert persidict.replace_unsafe_chars("ok.txt", "-") == "ok.txt"
    assert persidict.replace_unsafe_chars("a/b", "--") == "a--b"


def _imported_modules(path: pathlib.Path, package: str) -> set[str]:
    """Absolute module names imported by a source file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def _package_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts)
    return ".".join(parts[:-1])


def test_engine_imports_no_backend_or_stress() -> None:
    engine_files = sorted((SRC / "engine").rglob("*.py"))
    assert engine_files, "persidict/engine/ has no modules"
    offenders = []
    for f in engine_files:
        for mod in _imported_modules(f, _package_of(f)):
            if mod.startswith(("persidict.backends", "persidict.stress")) or mod in (
                "backends", "stress",
            ):
                offenders.append(f"{f.relative_to(SRC)} imports {mod}")
    assert not offenders, offenders


def test_no_top_level_layer_names() -> None:
    """Layers are subpackages, never top-level import names (DESIGN)."""
    offenders = []
    for f in sorted(SRC.rglob("*.py")):
        for mod in _imported_modules(f, _package_of(f)):
            top = mod.split(".")[0]
            if top in ("engine", "backends", "concurrency", "stress"):
                offenders.append(f"{f.relative_to(SRC)} imports {mod}")
    assert not offenders, offenders


def test_relative_import_resolution_helper() -> None:
    """Guard the checker itself: it must see a backend import written relatively."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = pathlib.Path(tmp) / "x.py"
        p.write_text("from ..backends.files import FileDirDict\nfrom . import keys\n")
        mods = _imported_modules(p, "persidict.engine")
    assert "persidict.backends.files" in mods
    assert "persidict.engine" in mods
