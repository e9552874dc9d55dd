"""Every public class and method of the API has a numpy-style docstring (issue 15.4).

Walks ``persidict.__all__``: each class, and each public method or property a
user calls on it (the mapping dunders included), must say what it takes
(Parameters, each parameter by name), what it gives back (Returns or
Yields) and what it raises (Raises, naming the errors listed below), and a
store or a conditional operation must say what is atomic. Docstrings
inherited from a base class count (``inspect.getdoc``), so an override
marked ``# docstring inherited`` passes when its base's docstring does.

``python tests/test_docstrings.py`` prints every gap, with counts.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

import persidict

PENDING_MODULES: tuple[str, ...] = ()  # modules whose gaps are listed by main(), not failed

DUNDERS = ("__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__len__")

# Methods whose Raises section must name these errors (by class name).
MUST_RAISE = {
    "set_item_if": ("MutationPolicyError", "ConcurrencyConflictError", "TypeError"),
    "setdefault_if": ("ConcurrencyConflictError", "TypeError"),
    "discard_if": ("MutationPolicyError", "ConcurrencyConflictError"),
    "get_item_if": ("TypeError",),
    "transform_item": ("ConcurrencyConflictError", "MutationPolicyError"),
    "pop": ("KeyError", "MutationPolicyError"),
    "popitem": ("KeyError", "MutationPolicyError"),
    "setdefault": ("TypeError",),
    "discard": ("MutationPolicyError",),
    "__getitem__": ("KeyError",),
    "__setitem__": ("MutationPolicyError", "TypeError"),
    "__delitem__": ("KeyError", "MutationPolicyError"),
    "clear": ("MutationPolicyError",),
    "etag": ("KeyError",),
    "timestamp": ("KeyError",),
}

# Methods that must say what is atomic about them.
MUST_SAY_ATOMIC = frozenset(
    {"get_item_if", "set_item_if", "setdefault_if", "discard_if", "transform_item",
     "pop", "popitem", "setdefault", "discard", "get_with_etag"}
)

# Methods that raise nothing of their own, whatever their parameters.
NO_RAISES = frozenset({"__contains__", "__len__", "__iter__"})

_SECTION = re.compile(r"^[ \t]*([A-Z][A-Za-z ]+)\n[ \t]*-{3,}[ \t]*$", re.M)


def sections(doc: str) -> dict[str, str]:
    """Map each numpy section title of ``doc`` to its body."""
    found = list(_SECTION.finditer(doc))
    out = {"": doc[: found[0].start()] if found else doc}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(doc)
        out[m.group(1).strip()] = doc[m.end() : end]
    return out


def _documents(body: str, name: str) -> bool:
    return re.search(rf"^[ \t]*\**{re.escape(name)}\b[^\n]*:", body, re.M) is not None or (
        re.search(rf"^[ \t]*\**{re.escape(name)}[ \t]*$", body, re.M) is not None
    )


def _params(func: Any) -> list[str]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind not in kinds]


def _returns_something(func: Any) -> bool:
    try:
        ann = inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return False
    return ann not in (None, "None", "NoReturn", NoReturn, inspect.Signature.empty)


def method_gaps(cls: type, name: str, member: Any) -> list[str]:
    """What the docstring of ``cls.name`` lacks (empty when complete)."""
    doc = inspect.getdoc(getattr(cls, name)) or ""
    if not doc.strip():
        return ["no docstring"]
    if isinstance(member, property):
        return []
    sec = sections(doc)
    gaps = []
    params = _params(member)
    if params:
        if "Parameters" not in sec:
            gaps.append("no Parameters")
        else:
            gaps += [f"parameter {p} undocumented" for p in params
                     if not _documents(sec["Parameters"], p)]
    if _returns_something(member) and "Returns" not in sec and "Yields" not in sec:
        gaps.append("no Returns")
    needs_raises = name in MUST_RAISE or (
        name not in NO_RAISES and any(p in ("key", "prefix_key") for p in params)
    )
    if needs_raises and "Raises" not in sec:
        gaps.append("no Raises")
    required = MUST_RAISE.get(name, ()) if issubclass(cls, persidict.PersiDict) else ()
    for error in required:
        if error not in sec.get("Raises", ""):
            gaps.append(f"Raises lacks {error}")
    if name in MUST_SAY_ATOMIC and not re.search(r"atomic|lineariz", doc, re.I):
        gaps.append("does not say what is atomic")
    return gaps


def class_gaps(cls: type) -> list[str]:
    """What the docstring of the class itself lacks."""
    doc = inspect.getdoc(cls) or ""
    if not doc.strip() or doc == inspect.getdoc(object):
        return ["no docstring"]
    sec = sections(doc)
    gaps = []
    init = cls.__dict__.get("__init__")
    params = _params(init) if init is not None else []
    fields = getattr(cls, "__dataclass_fields__", {})
    params = params or list(fields)
    if params:
        body = sec.get("Parameters", "") + sec.get("Attributes", "")
        if not body:
            gaps.append("no Parameters")
        gaps += [f"parameter {p} undocumented" for p in params if body and not _documents(body, p)]
    is_store = isinstance(cls, type) and issubclass(cls, persidict.PersiDict)
    if is_store and not re.search(r"atomic|lineariz", doc, re.I):
        gaps.append("does not say what is atomic")
    return gaps


def _defining_module(cls: type, name: str) -> str:
    for base in cls.__mro__:
        if name in base.__dict__:
            member = base.__dict__[name]
            func = getattr(member, "fget", member)
            return str(getattr(func, "__module__", base.__module__))
    return cls.__module__


def public_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties of ``cls`` defined in persidict's own code."""
    seen: set[str] = set()
    for base in cls.__mro__:
        if not base.__module__.startswith("persidict"):
            continue
        for name, member in base.__dict__.items():
            if name in seen or (name.startswith("_") and name not in DUNDERS):
                continue
            seen.add(name)
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                yield name, member


def audit() -> Iterator[tuple[str, str, bool, list[str]]]:
    """Yield (qualified name, defining module, pending, gaps) for every public item."""
    for export in sorted(persidict.__all__):
        obj = getattr(persidict, export)
        if inspect.isfunction(obj):
            func_gaps = method_gaps(type("_", (), {export: staticmethod(obj)}), export, obj)
            yield export, obj.__module__, obj.__module__.startswith(PENDING_MODULES), func_gaps
            continue
        if not inspect.isclass(obj) or getattr(obj, "__module__", "") == "typing":
            continue  # constants, type aliases, TypeVars, NewTypes
        mod = obj.__module__
        yield export, mod, mod.startswith(PENDING_MODULES), class_gaps(obj)
        for name, member in public_members(obj):
            where = _defining_module(obj, name)
            yield (f"{export}.{name}", where, where.startswith(PENDING_MODULES),
                   method_gaps(obj, name, member))


def test_every_public_item_has_full_sections() -> None:
    gaps = [f"{q}: {', '.join(g)}" for q, _, pending, g in audit() if g and not pending]
    assert not gaps, "\n".join(gaps)


def test_the_audit_sees_the_api() -> None:
    names = {q for q, _, _, _ in audit()}
    for expected in ("PersiDict.set_item_if", "LocalDict.__setitem__", "BasicS3Dict.get_subdict",
                     "ConditionalOperationResult", "LockTimeoutError", "WriteOnceDict.pop"):
        assert expected in names


@pytest.mark.parametrize(
    ("doc", "gap"),
    [
        ("Store a value.", "no Raises"),
        ("Store.\n\nRaises\n------\nTypeError\n    bad.", "Raises lacks MutationPolicyError"),
    ],
)
def test_the_audit_catches_a_short_docstring(doc: str, gap: str) -> None:
    def set_item_if(self: Any, key: Any, *, value: Any) -> Any: ...

    set_item_if.__doc__ = doc
    store = type("C", (persidict.LocalDict,), {"set_item_if": set_item_if})
    assert gap in method_gaps(store, "set_item_if", set_item_if)


def main() -> int:
    done = todo = 0
    distinct: dict[tuple[str, str], bool] = {}
    for qualname, module, pending, gaps in audit():
        distinct[(module, qualname.rpartition(".")[2])] = not gaps
        if gaps:
            todo += 1
            print(f"{'PENDING ' if pending else ''}{qualname} ({module}): {', '.join(gaps)}")
        else:
            done += 1
    print(f"per class: complete {done}, incomplete {todo}")
    full = sum(distinct.values())
    print(f"distinct definitions: complete {full}, incomplete {len(distinct) - full}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
