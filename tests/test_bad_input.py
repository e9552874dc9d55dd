# ruff: noqa: SIM118  (the .keys() API itself is under test)
"""Bad input gets a clear ValueError/TypeError naming what was wrong, and loses nothing."""

from __future__ import annotations

import os
import pathlib
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import (
    all_files,
    assert_state,
    digest,
    make_store,
    path_for_key,
    read_ground_truth,
    snapshot,
    store_layout,
)
from persidict import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    BackendError,
    FileDirDict,
    NonEmptySafeStrTuple,
    PersiDict,
    SafeStrTuple,
    get_safe_chars,
)

BAD = (ValueError, TypeError)
INITIAL = {("k",): "original", ("dir", "k"): [1, 2]}


def _seed(d: PersiDict) -> None:
    for k, v in INITIAL.items():
        d[k] = v


def _mentions(exc: BaseException, *candidates: object) -> bool:
    msg = str(exc)
    return any(str(c) in msg or repr(c) in msg for c in candidates)


def _key_ops(d: PersiDict, key: Any) -> dict[str, Callable[[], Any]]:
    return {
        "setitem": lambda: d.__setitem__(key, "new"),
        "getitem": lambda: d.__getitem__(key),
        "delitem": lambda: d.__delitem__(key),
        "get": lambda: d.get(key),
        "setdefault": lambda: d.setdefault(key, "new"),
        "discard": lambda: d.discard(key),
        "etag": lambda: d.etag(key),
        "timestamp": lambda: d.timestamp(key),
        "set_item_if": lambda: d.set_item_if(
            key, value="new", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
        ),
        "get_item_if": lambda: d.get_item_if(
            key, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
        ),
        "transform_item": lambda: d.transform_item(key, transformer=lambda v: "new"),
        "pop": lambda: d.pop(key, None),
    }


UNSAFE_CHARS = ["/", "\\", " ", "*", "é", "\x00", "\n", ":", "?", '"', "<", "|", "#", "%", "ж"]


@pytest.mark.parametrize("ch", UNSAFE_CHARS, ids=[repr(c) for c in UNSAFE_CHARS])
def test_unsafe_characters_rejected(store: PersiDict, ch: str) -> None:
    _seed(store)
    bad_component = f"a{ch}b"
    for key in (bad_component, ("dir", bad_component), (bad_component, "k")):
        for op_name, op in _key_ops(store, key).items():
            with pytest.raises(BAD) as ei:
                op()
            assert _mentions(ei.value, bad_component, ch), (op_name, str(ei.value))
    assert_state(store, INITIAL)


@pytest.mark.parametrize(
    "key",
    [
        ".", "..", ("..", "k"), ("dir", ".."), ("dir", "..", "..", "k"), (".", "k"),
        ("dir", ".", "k"),
    ],
    ids=repr,
)
def test_dot_components_rejected(store: PersiDict, key: Any, tmp_path: pathlib.Path) -> None:
    _seed(store)
    before_outside = _outside_files(store, tmp_path)
    for op_name, op in _key_ops(store, key).items():
        with pytest.raises(BAD) as ei:
            op()
        assert _mentions(ei.value, ".", ".."), (op_name, str(ei.value))
    assert_state(store, INITIAL)
    assert _outside_files(store, tmp_path) == before_outside


@pytest.mark.parametrize(
    "key",
    ["", ("",), ("dir", ""), ("", "k"), (), [], SafeStrTuple()],
    ids=["empty_str", "tuple_empty_str", "trailing_empty", "leading_empty", "empty_tuple",
         "empty_list", "empty_safestrtuple"],
)
def test_empty_keys_and_components_rejected(store: PersiDict, key: Any) -> None:
    _seed(store)
    for op_name, op in _key_ops(store, key).items():
        with pytest.raises(BAD) as ei:
            op()
        assert str(ei.value), op_name
    assert_state(store, INITIAL)


def test_non_empty_safe_str_tuple_rejects_empty() -> None:
    with pytest.raises(BAD):
        NonEmptySafeStrTuple()
    with pytest.raises(BAD):
        NonEmptySafeStrTuple([])


def test_over_long_component_rejected(store: PersiDict) -> None:
    _seed(store)
    long = "x" * 300
    for key in (long, ("dir", long), (long, "k")):
        for op_name, op in _key_ops(store, key).items():
            with pytest.raises(BAD) as ei:
                op()
            msg = str(ei.value).lower()
            assert "long" in msg or "length" in msg or "300" in msg, (op_name, msg)
    assert_state(store, INITIAL)


@pytest.mark.parametrize("length", [200, 240, 245, 250, 253, 254, 255, 256])
def test_near_limit_components_work_or_fail_cleanly(store: PersiDict, length: int) -> None:
    """A component is either stored and read back, or rejected with ValueError/TypeError.

    Never an OSError (ENAMETOOLONG) from the filesystem after the suffix and
    extension are added.
    """
    _seed(store)
    comp = "y" * length
    try:
        store[comp] = "long"
    except BAD:
        assert_state(store, INITIAL)
        return
    assert store[comp] == "long"
    assert (comp,) in {tuple(k) for k in store.keys()}
    store["dir", comp] = "long2"
    assert store["dir", comp] == "long2"
    del store[comp]
    del store["dir", comp]
    assert_state(store, INITIAL)


@pytest.mark.parametrize(
    "key",
    [1, None, b"k", ("dir", 1), ("dir", None), ("dir", b"k"), (1.5,)],
    ids=repr,
)
def test_non_str_key_parts_rejected(store: PersiDict, key: Any) -> None:
    _seed(store)
    for op_name, op in _key_ops(store, key).items():
        with pytest.raises(BAD) as ei:
            op()
        assert str(ei.value), op_name
    assert_state(store, INITIAL)


def test_non_str_key_message_names_the_type(store: PersiDict) -> None:
    for key, names in [(("dir", 17), ("int", "17")), (("dir", None), ("None", "NoneType")),
                       (b"raw", ("bytes", "raw"))]:
        with pytest.raises(BAD) as ei:
            store[key] = 1
        assert _mentions(ei.value, *names), str(ei.value)


def test_wrong_base_class_for_values(store_maker: Callable[..., PersiDict]) -> None:
    d = store_maker(base_class_for_values=str)
    _seed_str = {("k",): "original"}
    d["k"] = "original"
    for bad in (1, None, ["list"], b"bytes"):
        ops: list[Callable[[Any], Any]] = [
            lambda b: d.__setitem__("k", b),
            lambda b: d.__setitem__("new", b),
            lambda b: d.setdefault("new", b),
            lambda b: d.set_item_if("k", value=b, condition=ANY_ETAG,
                                    expected_etag=ITEM_NOT_AVAILABLE),
            lambda b: d.setdefault_if("new", default_value=b, condition=ANY_ETAG,
                                      expected_etag=ITEM_NOT_AVAILABLE),
            lambda b: d.transform_item("k", transformer=lambda v: b),
        ]
        for op in ops:
            with pytest.raises(TypeError) as ei:
                op(bad)
            assert _mentions(ei.value, "str", type(bad).__name__), str(ei.value)
    assert_state(d, _seed_str)


def test_base_class_must_be_a_type(store_maker: Callable[..., PersiDict]) -> None:
    with pytest.raises(BAD):
        store_maker(base_class_for_values="int")


def test_bad_serialization_format_rejected(tmp_path: pathlib.Path) -> None:
    for fmt in ("", "../x", "a/b", "p kl", 7):
        with pytest.raises(BAD):
            FileDirDict(base_dir=str(tmp_path / "s"), serialization_format=fmt)


def _unpicklable() -> list[tuple[str, Any]]:
    return [
        ("lambda", lambda x: x),
        ("lock", threading.Lock()),
        ("nested_lock", {"inner": [threading.Lock()]}),
        ("generator", (i for i in range(3))),
    ]


@pytest.mark.parametrize("name", ["file", "file_nodigest", "file_nodurable"])
def test_unpicklable_values(name: str, tmp_path: pathlib.Path) -> None:
    d = make_store(name, tmp_path)
    _seed(d)
    base, _, _ = store_layout(d)
    files_before = all_files(base)
    for label, value in _unpicklable():
        for key in (("k",), ("dir", "k"), ("fresh",), ("fresh_dir", "k")):
            with pytest.raises(BAD) as ei:
                d[key] = value
            assert _mentions(ei.value, key[-1]), (label, str(ei.value))
            with pytest.raises(BAD):
                d.set_item_if(key, value=value, condition=ANY_ETAG,
                              expected_etag=ITEM_NOT_AVAILABLE)
            with pytest.raises(BAD):
                d.transform_item(key, transformer=lambda v, value=value: value)
    assert_state(d, INITIAL)
    # no temp files, half-written files or empty directories left behind
    leftovers = {p for p in all_files(base) - files_before if not _is_internal(p, base)}
    assert not leftovers, sorted(map(str, leftovers))


def _is_internal(p: pathlib.Path, base: pathlib.Path) -> bool:
    """Files a store may keep for itself (bookkeeping such as locks/journals).

    Hidden names, or names with a character no key component can contain.
    """
    safe = get_safe_chars()
    return any(
        part.startswith(".") or not set(part) <= safe for part in p.relative_to(base).parts
    )


JOKER_OPS = {
    "setdefault": lambda d, j: d.setdefault("k", j),
    "setdefault_absent": lambda d, j: d.setdefault("absent", j),
    "setdefault_if": lambda d, j: d.setdefault_if(
        "absent", default_value=j, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
    ),
    "setdefault_if_present": lambda d, j: d.setdefault_if(
        "k", default_value=j, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
    ),
}


@pytest.mark.parametrize("op", list(JOKER_OPS))
def test_jokers_where_not_allowed(store: PersiDict, op: str) -> None:
    _seed(store)
    for joker in (KEEP_CURRENT, DELETE_CURRENT):
        with pytest.raises(TypeError) as ei:
            JOKER_OPS[op](store, joker)
        assert str(ei.value)
    assert_state(store, INITIAL)


def test_joker_nested_in_value_is_not_a_command(store: PersiDict) -> None:
    """A joker is only a command at the top level; inside a container it is data or an error."""
    _seed(store)
    try:
        store["k"] = [DELETE_CURRENT]
    except BAD:
        assert_state(store, INITIAL)
        return
    got = store["k"]  # it was stored as data, not executed as a delete
    assert isinstance(got, list) and len(got) == 1
    assert got[0] is DELETE_CURRENT or store.serialization_format != "pkl"


def _flag_ops(d: PersiDict, e: Any) -> dict[str, Callable[..., Any]]:
    return {
        "get_item_if": lambda **kw: d.get_item_if("k", **kw),
        "set_item_if": lambda **kw: d.set_item_if("k", value="new", **kw),
        "setdefault_if": lambda **kw: d.setdefault_if("absent", default_value="new", **kw),
        "discard_if": lambda **kw: d.discard_if(
            "k", **{k: v for k, v in kw.items() if k != "retrieve_value"}
        ),
    }


WRONG_FLAGS = {
    "condition_str": {"condition": "x"},
    "condition_none": {"condition": None},
    "condition_bool": {"condition": True},
    "condition_is_retrieve_flag": {"condition": ALWAYS_RETRIEVE},
    "condition_is_item_not_available": {"condition": ITEM_NOT_AVAILABLE},
    "retrieve_is_condition_flag": {"retrieve_value": ETAG_IS_THE_SAME},
    "retrieve_str": {"retrieve_value": "always"},
    "retrieve_bool": {"retrieve_value": True},
    "expected_int": {"expected_etag": 123},
    "expected_none": {"expected_etag": None},
    "expected_flag": {"expected_etag": ANY_ETAG},
    "expected_bytes": {"expected_etag": b"etag"},
}


@pytest.mark.parametrize("wrong", list(WRONG_FLAGS))
def test_wrong_flag_types(store: PersiDict, wrong: str) -> None:
    _seed(store)
    etag = store.etag("k")
    override = WRONG_FLAGS[wrong]
    for op_name, op in _flag_ops(store, etag).items():
        if "retrieve_value" in override and op_name == "discard_if":
            continue
        kwargs: dict[str, Any] = {"condition": ANY_ETAG, "expected_etag": etag,
                                  "retrieve_value": ALWAYS_RETRIEVE}
        kwargs.update(override)
        with pytest.raises(TypeError) as ei:
            op(**kwargs)
        bad_param = next(iter(override))
        assert bad_param in str(ei.value), (op_name, str(ei.value))
    assert_state(store, INITIAL)


# ---------------------------------------------------------------------------
# Corrupt files
# ---------------------------------------------------------------------------

GARBAGE = [b"\x80\x04\x95garbage\x00\xff\xfe", b"", b"{not json", b"\xff" * 64]


@pytest.mark.parametrize("garbage", GARBAGE, ids=["pickle_like", "empty", "half_json", "ff"])
def test_corrupt_file(file_store: FileDirDict, garbage: bytes) -> None:
    d = file_store
    _seed(d)
    d["good", "one"] = 1
    bad_key = ("dir", "k")
    path = path_for_key(d, bad_key)
    assert path.is_file()
    path.write_bytes(garbage)
    with pytest.raises(Exception) as ei:
        d[bad_key]
    assert not isinstance(ei.value, KeyError), "a corrupt value is not a missing key"
    msg = str(ei.value)
    assert "k" in msg and "dir" in msg, msg
    assert str(path) in msg or os.path.realpath(path) in msg, msg
    assert bad_key in d  # it exists, it is just unreadable
    # operations that need the value fail the same way and leave the file alone
    for op in (lambda: d.pop(bad_key), lambda: d.transform_item(bad_key, transformer=repr)):
        with pytest.raises(Exception) as ei2:
            op()
        assert not isinstance(ei2.value, KeyError)
        assert "k" in str(ei2.value)
        assert path.read_bytes() == garbage
    # the other keys still work
    keys = {tuple(k) for k in d.keys()}
    assert keys == {("k",), ("dir", "k"), ("good", "one")}
    assert len(d) == 3
    assert d["k"] == "original"
    assert d["good", "one"] == 1
    # the corrupt value can be replaced or deleted
    d[bad_key] = "repaired"
    assert d[bad_key] == "repaired"
    path.write_bytes(garbage)
    del d[bad_key]
    assert bad_key not in d


# ---------------------------------------------------------------------------
# Keys never resolve outside base_dir
# ---------------------------------------------------------------------------


def _outside_files(d: PersiDict, tmp_path: pathlib.Path) -> set[pathlib.Path]:
    """Files under tmp_path that are not inside the store's base_dir."""
    files = all_files(tmp_path)
    try:
        base = pathlib.Path(d.get_params()["base_dir"]).resolve()
    except KeyError:
        return files
    return {p for p in files if not p.resolve().is_relative_to(base) and p.resolve() != base}


TRICKY_VALID = ["~", "~root", "...", "-rf", "=", ".hidden", "a.", "..a", "a..b", "_", "__",
                "x_abcd", ".pkl", "k.json", "CON", "nul", "(", ")"]


def test_tricky_valid_keys_stay_inside(file_store: FileDirDict, tmp_path: pathlib.Path) -> None:
    d = file_store
    before = _outside_files(d, tmp_path)
    home_before = set(os.listdir(os.path.expanduser("~")))
    base = pathlib.Path(d.base_dir).resolve()
    for i, comp in enumerate(TRICKY_VALID):
        d[comp] = i
        d[comp, comp] = -i
        p = path_for_key(d, (comp, comp))
        assert p.resolve().is_relative_to(base), p
    for i, comp in enumerate(TRICKY_VALID):
        assert d[comp] == i and d[comp, comp] == -i
    expected = {(c,): i for i, c in enumerate(TRICKY_VALID)}
    expected.update({(c, c): -i for i, c in enumerate(TRICKY_VALID)})
    assert_state(d, expected)
    assert _outside_files(d, tmp_path) == before
    assert set(os.listdir(os.path.expanduser("~"))) == home_before
    for f in all_files(base):
        assert f.resolve().is_relative_to(base)


def test_read_of_escaping_key_does_not_read_outside(tmp_path: pathlib.Path) -> None:
    """Plant a file where '..' would resolve to; reading must not find it."""
    d = make_store("file_nodigest", tmp_path)
    base = pathlib.Path(d.base_dir)
    planted = base.parent / "secret.pkl"
    planted.write_bytes(pickle.dumps("secret"))
    for key in (("..", "secret"), ("dir", "..", "..", "secret")):
        with pytest.raises(BAD):
            d[key]
        with pytest.raises(BAD):
            d.discard(key)
    assert planted.read_bytes() == pickle.dumps("secret")


def test_relative_base_dir(tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    """A relative base_dir is fixed at construction (cwd changes do not move the store)."""
    monkeypatch.chdir(tmp_path)
    d = FileDirDict(base_dir="rel_store")
    assert os.path.isabs(d.base_dir)
    d["a"] = 1
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert d["a"] == 1
    assert (tmp_path / "rel_store").is_dir()
    assert not (other / "rel_store").exists()


# ---------------------------------------------------------------------------
# Junk in base_dir is ignored
# ---------------------------------------------------------------------------


def test_junk_files_ignored(tmp_path: pathlib.Path) -> None:
    d = make_store("file", tmp_path)  # digest_len=4, pkl
    _seed(d)
    base = pathlib.Path(d.base_dir)
    dir_name = f"dir_{digest('dir', 4)}"
    junk = [
        base / "junk.txt",
        base / "noext",
        base / "x.pkl",  # no digest suffix
        base / "x_zzzz.pkl",  # wrong digest
        base / f"x_{digest('x', 4)}.json",  # wrong extension for a pkl store
        base / f"x_{digest('x', 4)}.pkl.tmp",
        base / f"x_{digest('y', 4)}.pkl",  # digest of another name
        base / "wrongdir_zzzz" / f"k_{digest('k', 4)}.pkl",  # bad dir suffix
        base / "nodigestdir" / f"k_{digest('k', 4)}.pkl",
        base / dir_name / "k.pkl",
        base / dir_name / "README",
    ]
    for p in junk:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(pickle.dumps("junk"))
    assert {tuple(k) for k in d.keys()} == set(INITIAL)
    assert len(d) == len(INITIAL)
    assert snapshot(d) == INITIAL
    assert {tuple(k) for k, _ in d.keys_and_timestamps()} == set(INITIAL)
    assert len(d.get_subdict("dir")) == 1
    for _ in range(30):
        assert tuple(d.random_key()) in INITIAL
    assert read_ground_truth(d) == INITIAL


def test_junk_files_ignored_nodigest(tmp_path: pathlib.Path) -> None:
    d = make_store("file_nodigest", tmp_path)
    _seed(d)
    base = pathlib.Path(d.base_dir)
    for p in (base / "junk.txt", base / "noext", base / "x.json", base / "dir" / "k.pkl.tmp",
              base / "bad name.pkl", base / "dir" / "bad*char.pkl"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(pickle.dumps("junk"))
    assert {tuple(k) for k in d.keys()} == set(INITIAL)
    assert len(d) == len(INITIAL)


# ---------------------------------------------------------------------------
# Bad configuration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("digest_len", [1, 8, 26, 32, 40, 100])
def test_digest_len_range(tmp_path: pathlib.Path, digest_len: int) -> None:
    """Any digest_len is either rejected up front or fully works (keys() sees the keys)."""
    try:
        d = FileDirDict(base_dir=str(tmp_path / "s"), digest_len=digest_len)
    except ValueError:
        return
    d["a"] = 1
    d["b", "c"] = 2
    assert {tuple(k) for k in d.keys()} == {("a",), ("b", "c")}
    assert len(d) == 2
    assert read_ground_truth(d) == {("a",): 1, ("b", "c"): 2}


@pytest.mark.parametrize("bad", [-1, "4", 2.0, None])
def test_digest_len_type(tmp_path: pathlib.Path, bad: Any) -> None:
    with pytest.raises(BAD) as ei:
        FileDirDict(base_dir=str(tmp_path / "s"), digest_len=bad)
    assert "digest_len" in str(ei.value)


def test_base_dir_is_a_file(tmp_path: pathlib.Path) -> None:
    """A clear library error (not a raw OSError) naming the path."""
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises((ValueError, TypeError, BackendError)) as ei:
        d = FileDirDict(base_dir=str(f))
        d["a"] = 1
    assert str(f) in str(ei.value)
    assert f.read_text() == "x"


def test_missing_base_dir_is_created(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "deep" / "er" / "store"))
    assert len(d) == 0
    d["a"] = 1
    assert d["a"] == 1


def test_stored_value_of_wrong_class_is_rejected_on_read(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "s"), base_class_for_values=int)
    d["k"] = 1
    path_for_key(d, "k").write_bytes(pickle.dumps("a str"))
    with pytest.raises(TypeError) as ei:
        d["k"]
    assert "k" in str(ei.value)


def test_json_values_that_cannot_round_trip(tmp_path: pathlib.Path) -> None:
    """A value jsonpickle cannot restore must be rejected at write time, not read back as None.

    (The API reference says nothing about this; silently losing a value is what
    a storage library must never do.)
    """
    d = make_store("file_json", tmp_path)
    _seed(d)

    def local_function(x: int) -> int:
        return x

    for label, value in [("lambda", lambda x: x), ("local_function", local_function)]:
        try:
            d["k"] = value
        except BAD as exc:
            assert _mentions(exc, "k"), (label, str(exc))
            continue
        got = d["k"]
        assert got is not None, f"{label} was stored and silently read back as None"
        assert got is value or got == value, (label, got)
        d["k"] = INITIAL[("k",)]
    assert_state(d, INITIAL)


@pytest.mark.parametrize("flag_name", ["ITEM_NOT_AVAILABLE", "VALUE_NOT_RETRIEVED"])
def test_status_sentinels_are_not_values(store: PersiDict, flag_name: str) -> None:
    """Storing a status sentinel would make a present key look absent / unread in results.

    The reference does not say; a stored ITEM_NOT_AVAILABLE would make
    get_item_if / transform_item report a present key as absent, so we expect
    the same TypeError as for jokers where they are not allowed.
    """
    import persidict

    flag = getattr(persidict, flag_name)
    _seed(store)
    ops: dict[str, Callable[[], Any]] = {
        "setitem": lambda: store.__setitem__("k", flag),
        "setitem_new": lambda: store.__setitem__("new", flag),
        "setdefault": lambda: store.setdefault("new", flag),
        "update": lambda: store.update({"new": flag}),
        "set_item_if": lambda: store.set_item_if(
            "new", value=flag, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
        ),
        "setdefault_if": lambda: store.setdefault_if(
            "new", default_value=flag, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
        ),
    }
    for name, op in ops.items():
        with pytest.raises(TypeError):
            op()
        assert "new" not in store, name
    assert_state(store, INITIAL)


def test_base_dir_with_spaces_and_unicode(tmp_path: pathlib.Path) -> None:
    """Key safety rules apply to keys, not to the user's base_dir."""
    d = FileDirDict(base_dir=str(tmp_path / "my dir & ünï (1)"))
    d["a"] = 1
    d["b", "c"] = 2
    assert_state(d, {("a",): 1, ("b",  "c"): 2})
    assert d.get_subdict("b")["c"] == 2
