"""``check`` / ``check --fix``: duties found unchecked by mutation testing (round 15).

What ``--fix`` may delete or move is the data-safety core of the tool: only
temps of writers proven dead, never a temp it cannot judge (another pid
namespace), never anything without ``fix``, never a stray that became a
store or a value rewritten while the check ran. Each test uses real
processes: a writer in another pid namespace (``unshare``), a dead opener,
another process opening a store or rewriting a key between the walk and
the fix.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from persidict import FileDirDict
from persidict.concurrency.journal import Owner, parse_temp_name, temp_name
from persidict.concurrency.locks import META_DIR
from persidict.concurrency.marker import PARAMS
from persidict.concurrency.repair import CheckReport, LockFor, check_tree

_PRINT_NAME = "from persidict.concurrency.journal import temp_name; print(temp_name(), flush=True)"


def _name_from(cmd: list[str]) -> str | None:
    out = subprocess.run([*cmd, sys.executable, "-c", _PRINT_NAME], capture_output=True,
                         timeout=60)
    return out.stdout.decode().strip() if out.returncode == 0 else None


def _dead_temp_name() -> str:
    """The temp name of a process that has exited."""
    name = _name_from([])
    assert name is not None
    return name


def _foreign_temp_name() -> str:
    """The temp name of a (now exited) process of another pid namespace.

    Made by a real process under ``unshare --pid`` where permitted; else the
    same name with another namespace number, as such a process records it.
    """
    if shutil.which("unshare"):
        name = _name_from(["unshare", "--pid", "--fork", "--mount-proc"])
        if name is not None and parse_temp_name(name) is not None:
            return name
    owner = parse_temp_name(temp_name())
    assert owner is not None
    other = Owner(owner.boot, owner.pidns + 1, 1, owner.start)
    return f"@tmp-{other.tag}-abc0"


Hook = Callable[[str], None] | None


def _check(
    d: FileDirDict, fix: bool, markers_before: Hook = None, lock_before: Hook = None
) -> CheckReport:
    """``d.check(fix)``, optionally running a hook just before each lock is taken."""
    tree = d._lock_tree

    def hooked(hold: LockFor, hook: Hook) -> LockFor:
        @contextlib.contextmanager
        def cm(rel: str) -> Iterator[None]:
            if hook is not None:
                hook(rel)
            with hold(rel):
                yield
        return cm

    return check_tree(
        d._base, meta_dir=os.path.join(d._home_root, META_DIR), digest_len=d.digest_len,
        layout=d.layout, lock_for=hooked(tree.hold, lock_before),
        markers_lock_for=hooked(tree.hold_markers, markers_before), fix=fix,
    )


def test_temps_of_another_pid_namespace_are_never_removed(tmp_path: pathlib.Path) -> None:
    """A container sharing the directory may still be writing: not ours to judge."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d[("a", "k")] = 1
    key_dir = next(p for p in base.iterdir() if p.name.startswith("a_"))
    in_journal = base / META_DIR / "tmp" / _foreign_temp_name()
    in_key_dir = key_dir / _foreign_temp_name()
    in_journal.write_bytes(b"a foreign writer's intent")
    in_key_dir.write_bytes(b"a foreign writer's same-directory temp")
    report = d.check(fix=True)
    assert report.clean and report.live_temps == 2, str(report)
    assert in_journal.read_bytes() == b"a foreign writer's intent"
    assert in_key_dir.read_bytes() == b"a foreign writer's same-directory temp"


def _marker_temp(directory: pathlib.Path, name: str) -> pathlib.Path:
    """A store marker an opener was making, as marker.py leaves it when killed."""
    tmp = directory / name
    tmp.mkdir()
    (tmp / PARAMS).write_text('{"digest_len": 4}')
    return tmp


def test_a_marker_being_made_in_another_namespace_is_left(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    tmp = _marker_temp(base, _foreign_temp_name())
    report = d.check(fix=True)
    assert report.clean and report.live_temps == 1, str(report)
    assert (tmp / PARAMS).is_file()


def test_a_dead_openers_marker_is_reported_but_only_fix_removes_it(
    tmp_path: pathlib.Path,
) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    tmp = _marker_temp(base, _dead_temp_name())
    report = d.check()
    assert [f.kind for f in report.findings] == ["orphan_temp"], str(report)
    assert (tmp / PARAMS).is_file(), "check without fix must change nothing"
    fixed = d.check(fix=True)
    assert [(f.kind, f.action) for f in fixed.findings] == [("orphan_temp", "removed")]
    assert not tmp.exists()
    assert d.check().clean and d["k"] == 1


def _run(code: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", code, *args], check=True, timeout=60)


def test_a_stray_that_became_a_store_meanwhile_is_not_moved(tmp_path: pathlib.Path) -> None:
    """Another process opens a store at the stray directory before the fix locks."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    models = base / "models"  # unsigned: a directory name no key of ``d`` maps to
    models.mkdir()
    (models / "notes").write_text("kept")
    opened: list[str] = []

    def open_store_there(rel: str) -> None:
        if not opened:
            _run("import sys; from persidict import FileDirDict; "
                 "FileDirDict(base_dir=sys.argv[1])['w'] = 'inner'", str(models))
            opened.append(rel)

    report = _check(d, fix=True, markers_before=open_store_there)
    assert opened, "the fix took no MARKERS_LOCK"
    [finding] = report.findings
    assert finding.kind == "stray" and finding.action.startswith("left:"), str(report)
    assert (models / "notes").read_text() == "kept"
    assert (models / META_DIR).is_dir()
    assert FileDirDict(base_dir=models)["w"] == "inner"


@pytest.mark.parametrize("fmt", ["pkl", "json"])
def test_an_unreadable_value_rewritten_meanwhile_is_not_moved(
    tmp_path: pathlib.Path, fmt: str
) -> None:
    """Another process writes a good value before the fix takes the key's lock."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, serialization_format=fmt)
    d["k"] = "old"
    path = next(base.glob(f"k_*.{fmt}"))
    path.write_bytes(path.read_bytes()[:-2])  # torn
    rewrote: list[str] = []

    def rewrite(rel: str) -> None:
        _run("import sys; from persidict import FileDirDict; "
             "FileDirDict(base_dir=sys.argv[1], serialization_format=sys.argv[2])['k'] = 'new'",
             str(base), fmt)
        rewrote.append(rel)

    report = _check(d, fix=True, lock_before=rewrite)
    assert rewrote == [path.name], "the fix did not take the key's lock"
    [finding] = report.findings
    assert finding.kind == "unreadable" and finding.action == "left: rewritten meanwhile"
    assert d["k"] == "new"
    assert not (base / META_DIR / "quarantine").exists()


def _values(top: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in top.rglob("*")
            if p.is_file() and META_DIR not in p.parts}


@pytest.mark.parametrize("inner", ["models", "a"])
def test_a_store_opened_below_with_a_sub_marker_is_left_alone(
    tmp_path: pathlib.Path, inner: str
) -> None:
    """An inner store made after the outer one has a sub marker, not a root marker."""
    base = tmp_path / "s"
    outer = FileDirDict(base_dir=base)
    outer["k"] = "outer"
    inner_dir = base / inner  # unsigned under digest_len=4: no key of ``outer`` maps here
    _run("import sys; from persidict import FileDirDict; "
         "d = FileDirDict(base_dir=sys.argv[1], digest_len=0); d[('m', 'w')] = 1; d['x'] = 2",
         str(inner_dir))
    before = _values(inner_dir)
    report = outer.check(fix=True)
    assert report.clean and report.nested_stores == [str(inner_dir)], str(report)
    assert _values(inner_dir) == before
    reopened = FileDirDict(base_dir=inner_dir, digest_len=0)
    assert {tuple(k): v for k, v in reopened.items()} == {("m", "w"): 1, ("x",): 2}


def test_names_that_only_look_like_ours_are_strays(tmp_path: pathlib.Path) -> None:
    """'@tmp-' names recording no owner, and files whose format part is unsafe."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    signed = next(base.glob("k_*.pkl")).name.rpartition(".")[0]
    junk = [base / "@tmp-notes", base / "@tmp-file", base / f"{signed}.", base / f"{signed}.p kl"]
    junk[0].mkdir()
    (junk[0] / "f").write_text("x")
    for p in junk[1:]:
        p.write_text("text")
    report = d.check()
    assert sorted((f.kind, f.path) for f in report.findings) == sorted(
        ("stray", str(p)) for p in junk
    ), str(report)
    assert report.value_files == 1 and report.live_temps == 0
    d.check(fix=True)
    assert not any(os.path.lexists(p) for p in junk)
    assert d.check().clean and d["k"] == 1


def test_an_empty_tree_in_a_substore_without_its_own_meta_is_pruned(
    tmp_path: pathlib.Path,
) -> None:
    """A substore's directory holds no ``@persidict``: its empty trees are still found."""
    base = tmp_path / "s"
    sub = FileDirDict(base_dir=base).get_subdict("p")
    sub[("x", "y")] = 1
    del sub[("x", "y")]
    sub[("e", "f")] = 2
    leaf = next(next(base.glob("p_*")).glob("e_*"))
    for p in leaf.iterdir():
        p.unlink()  # a crash between a delete and its pruning
    report = sub.check(fix=True)
    assert [(f.kind, f.path) for f in report.findings] == [("empty_dir", str(leaf))], str(report)
    assert not leaf.exists()
    assert sub.check().clean and len(sub) == 0


def test_a_symlink_planted_as_marker_meanwhile_does_not_shield_a_stray(
    tmp_path: pathlib.Path,
) -> None:
    """Only a real directory is a store marker: a planted link must not keep junk in place."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d[("a", "k")] = 1
    key_dir = next(base.glob("a_*"))
    junk = key_dir / "junk"
    junk.write_text("x")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / META_DIR).mkdir(parents=True)

    def plant(rel: str) -> None:
        if not (key_dir / META_DIR).is_symlink():
            (key_dir / META_DIR).symlink_to(elsewhere / META_DIR)

    report = _check(d, fix=True, markers_before=plant)
    [finding] = report.findings
    assert finding.kind == "stray" and finding.action.startswith("moved to"), str(report)
    assert not junk.exists()


def test_pruning_keeps_a_key_written_into_the_empty_tree_meanwhile(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rmdir, never rmtree: another process fills the tree between the walk and the prune."""
    from persidict.concurrency import repair

    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    d[("e", "f", "g")] = 0
    for p in next(next(base.glob("e_*")).glob("f_*")).iterdir():
        p.unlink()  # left empty by a crash
    prune = repair._prune_tree

    def writer_first(top: str) -> None:
        _run("import sys; from persidict import FileDirDict; "
             "FileDirDict(base_dir=sys.argv[1])[('e', 'f', 'new')] = 'kept'", str(base))
        prune(top)

    monkeypatch.setattr(repair, "_prune_tree", writer_first)
    report = d.check(fix=True)
    assert [f.kind for f in report.findings] == ["empty_dir"], str(report)
    assert d[("e", "f", "new")] == "kept"


def test_a_stray_removed_meanwhile_leaves_its_directory_prunable(tmp_path: pathlib.Path) -> None:
    """Another process removes the stray before the fix moves it: its emptied tree is pruned."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 1
    d[("a", "b")] = 2
    key_dir = next(base.glob("a_*"))
    junk = key_dir / "junk"
    junk.write_text("x")
    next(key_dir.glob("b_*.pkl")).unlink()  # only the stray is left in it

    def remove_it(rel: str) -> None:
        _run("import os, sys; os.unlink(sys.argv[1])", str(junk))

    report = _check(d, fix=True, markers_before=remove_it)
    assert [(f.kind, f.action) for f in report.findings] == [
        ("stray", "already gone"), ("empty_dir", "pruned")
    ], str(report)
    assert not key_dir.exists()
