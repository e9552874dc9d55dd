"""mypy sees a store's value type: ``PersiDict[ValueType]`` through the API (issue 10.7).

One mypy run, with the project's settings and ``src`` on MYPYPATH, over
snippet files written to ``tmp_path``: the good one must type-check (its
``assert_type`` calls pin what each method returns), each bad one must get
exactly the errors listed for it, on the lines listed.
"""

from __future__ import annotations

import pickle
import re
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from persidict import (
    AppendOnlyDictCached,
    BasicS3Dict,
    ByteStoreDict,
    EmptyDict,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    PersiDict,
    S3Dict,
    S3Dict_FileDirCached,
    WriteOnceDict,
)

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
from typing import Any

from typing_extensions import assert_type

from persidict import (
    ANY_ETAG,
    DELETE_CURRENT,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    AppendOnlyDictCached,
    BasicS3Dict,
    ByteStoreDict,
    ConditionalOperationResult,
    EmptyDict,
    FileDirDict,
    ItemNotAvailableFlag,
    Joker,
    LocalDict,
    MutableDictCached,
    NonEmptySafeStrTuple,
    OperationResult,
    PersiDict,
    S3Dict,
    S3Dict_FileDirCached,
    ValueNotRetrievedFlag,
    WriteOnceDict,
)

d = FileDirDict[int](base_dir="/nowhere")
assert_type(d, FileDirDict[int])
assert_type(d["k"], int)
d["k"] = 1
d["k"] = KEEP_CURRENT
d["k"] = DELETE_CURRENT
assert_type(d.get("k"), int | None)
assert_type(d.get("k", 0), int)
assert_type(d.get("k", "s"), int | str)
assert_type(d.pop("k"), int)
assert_type(d.pop("k", None), int | None)
assert_type(d.popitem(), tuple[NonEmptySafeStrTuple, int])
assert_type(d.setdefault("k", 3), int)
assert_type(list(d.values()), list[int])
assert_type(list(d.items()), list[tuple[NonEmptySafeStrTuple, int]])
assert_type(list(d.items_and_timestamps()), list[tuple[NonEmptySafeStrTuple, int, float]])
assert_type(list(d.values_and_timestamps()), list[tuple[int, float]])
assert_type(d.newest_values(), list[int])
assert_type(d.oldest_values(max_n=2), list[int])
assert_type(d.get_subdict("a"), FileDirDict[int])
assert_type(d.subdicts(), dict[str, FileDirDict[int]])
assert_type(
    d.get_item_if("k", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE),
    ConditionalOperationResult[int],
)
r = d.set_item_if("k", value=1, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
assert_type(r, ConditionalOperationResult[int])
assert_type(r.new_value, int | ItemNotAvailableFlag | ValueNotRetrievedFlag)
assert_type(
    d.setdefault_if("k", default_value=1, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE),
    ConditionalOperationResult[int],
)
assert_type(
    d.discard_if("k", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE),
    ConditionalOperationResult[int],
)
assert_type(d.get_with_etag("k"), ConditionalOperationResult[int])


def inc(v: int | ItemNotAvailableFlag) -> int | Joker:
    return 1 if isinstance(v, ItemNotAvailableFlag) else v + 1


assert_type(d.transform_item("k", transformer=inc), OperationResult[int])
assert_type(d.transform_item("k", transformer=lambda v: DELETE_CURRENT), OperationResult[int])

untyped = FileDirDict(base_dir="/nowhere")  # no parameter: values are Any, as before
untyped["a"] = "anything"
assert_type(untyped["a"], Any)

lists = LocalDict[list[int]]()
assert_type(lists.get("k", []), list[int])
assert_type(lists.get_subdict("q"), LocalDict[list[int]])
assert_type(EmptyDict[int]()["k"], int)
assert_type(BasicS3Dict[str]()["k"], str)
assert_type(S3Dict_FileDirCached[bytes]()["k"], bytes)
assert_type(S3Dict[float]()["k"], float)
once = WriteOnceDict(wrapped_dict=FileDirDict[str](base_dir="/nowhere", append_only=True))
assert_type(once, WriteOnceDict[str])
cached = MutableDictCached(main_dict=lists, data_cache=LocalDict(), etag_cache=LocalDict())
assert_type(cached["k"], list[int])
frozen = AppendOnlyDictCached(main_dict=LocalDict[int](append_only=True), data_cache=LocalDict())
assert_type(frozen.get_subdict("p"), AppendOnlyDictCached[int])
assert_type(ByteStoreDict[int](byte_store=EmptyDict().byte_store)["k"], int)


def total(store: PersiDict[int]) -> int:
    return sum(store.values())


total(d)
"""

PRELUDE = """\
from persidict import FileDirDict, ItemNotAvailableFlag, LocalDict

d = FileDirDict[int](base_dir="/nowhere")
"""

# name -> (body after PRELUDE, [(line in body, mypy error code, message fragment)])
BAD = {
    "bad_read": ('x: str = d["k"]\n', [(1, "assignment", 'has type "int"')]),
    "bad_write": ('d["k"] = "s"\n', [(1, "assignment", 'has type "str"')]),
    "bad_transformer": (
        "def up(v: str | ItemNotAvailableFlag) -> str:\n"
        '    return "s"\n'
        'd.transform_item("k", transformer=up)\n',
        [(3, "arg-type", "TransformingFunction[int]")],
    ),
    "bad_optional_get": (
        'lists = LocalDict[list[int]]()\nv: list[int] = lists.get("k")\n',
        [(2, "assignment", '"list[int] | None"')],
    ),
    "bad_conditional_value": (
        "from persidict import ANY_ETAG, ITEM_NOT_AVAILABLE\n"
        'd.set_item_if("k", value="s", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)\n',
        [(2, "arg-type", 'expected "int | Joker"')],
    ),
    "bad_setdefault": ('d.setdefault("k", "s")\n', [(1, "call-overload", "setdefault")]),
}

_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+): error: (?P<msg>.*)  \[(?P<code>[a-z-]+)\]$")


def _run_mypy(tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MYPYPATH", str(ROOT / "src"))
    stdout, stderr, _ = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(tmp_path / "mypy_cache"),
        "--no-pretty", "--show-error-codes", "--no-error-summary",
        *map(str, files),
    ])
    assert not stderr.strip(), stderr
    return str(stdout)


def test_mypy_sees_value_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snippets = {"good": GOOD, **{name: PRELUDE + body for name, (body, _) in BAD.items()}}
    files = []
    for name, text in snippets.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        files.append(path)
    out = _run_mypy(tmp_path, files, monkeypatch)

    found: dict[str, list[tuple[int, str, str]]] = {name: [] for name in snippets}
    for line in out.splitlines():
        m = _ERROR.match(line)
        if m is None:
            continue
        name = Path(m["file"]).stem
        assert name in found, f"an error outside the snippets (is src mypy clean?): {line}"
        found[name].append((int(m["line"]), m["code"], m["msg"]))

    assert found["good"] == [], out
    prelude_lines = PRELUDE.count("\n")
    for name, (_, expected) in BAD.items():
        got = found[name]
        want = [(prelude_lines + line, code) for line, code, _ in expected]
        assert [(line, code) for line, code, _ in got] == want, (name, out)
        for (_, _, text), (_, _, msg) in zip(expected, got, strict=True):
            assert text in msg, (name, msg)


def test_mypy_targets_the_oldest_supported_python() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    oldest = config["project"]["requires-python"]
    assert re.fullmatch(r">=3\.\d+", oldest), oldest
    assert config["tool"]["mypy"]["python_version"] == oldest[2:]
    assert config["tool"]["ruff"]["target-version"] == "py" + oldest[2:].replace(".", "")
    assert sys.version_info >= tuple(map(int, oldest[2:].split(".")))


def _stores(tmp_path: Path) -> dict[str, PersiDict[int]]:
    files = FileDirDict[int](base_dir=tmp_path / "files")
    frozen = FileDirDict[int](base_dir=tmp_path / "frozen", append_only=True)
    return {
        "FileDirDict": files,
        "LocalDict": LocalDict[int](),
        "EmptyDict": EmptyDict[int](),
        "WriteOnceDict": WriteOnceDict[int](wrapped_dict=frozen),
        "MutableDictCached": MutableDictCached[int](
            main_dict=LocalDict[int](), data_cache=LocalDict(), etag_cache=LocalDict()
        ),
        "AppendOnlyDictCached": AppendOnlyDictCached[int](
            main_dict=LocalDict[int](append_only=True), data_cache=LocalDict(append_only=True)
        ),
        "ByteStoreDict": ByteStoreDict[int](byte_store=LocalDict().byte_store),
    }


@pytest.mark.parametrize(
    "name",
    ["FileDirDict", "LocalDict", "EmptyDict", "WriteOnceDict", "MutableDictCached",
     "AppendOnlyDictCached", "ByteStoreDict"],
)
def test_parameterized_stores_work_at_runtime(tmp_path: Path, name: str) -> None:
    store = _stores(tmp_path)[name]
    assert type(store).__name__ == name  # Store[int](...) builds a plain Store
    store["a", "b"] = 1
    sub = store.get_subdict("a")
    assert type(sub) is type(store)
    assert sub.get("b") == store.get(("a", "b"))
    copy = pickle.loads(pickle.dumps(store))
    assert type(copy) is type(store) and copy == store
    assert copy.get(("a", "b")) == store.get(("a", "b"))


@pytest.mark.parametrize("cls", [BasicS3Dict, S3Dict_FileDirCached, S3Dict])
def test_s3_stores_are_generic_at_runtime(cls: type[PersiDict[Any]]) -> None:
    alias = cls[int]  # type: ignore[index]
    assert typing.get_origin(alias) is cls and typing.get_args(alias) == (int,)
