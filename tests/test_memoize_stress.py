"""``persidict-stress --scenario memoize``: a short real run, and its oracle judged alone."""

from __future__ import annotations

from persidict.stress.cli import main
from persidict.stress.memo import judge, run_memo
from persidict.stress.options import Options


def test_a_short_run_with_kills_reports_no_duplicate() -> None:
    report = run_memo(Options(workers=3, duration=3.0, kill=2, seed=5, scenario="memoize"))
    assert report["ok"], report["violations"]
    assert report["counts"]["duplicates"] == 0
    assert report["counts"]["arguments"] > 0
    assert report["settings"]["kills"] == 2


def test_the_command_line_runs_the_memory_scenario() -> None:
    assert main(["--scenario", "memoize", "--backend", "memory", "--workers", "3",
                 "--duration", "1", "--quiet"]) == 0


def _done(x: int, wid: int, token: str) -> list[str]:
    return ["done", str(x), str(wid), token]


def test_the_oracle_counts_a_second_seen_result_as_a_duplicate() -> None:
    comps = [_done(1, 0, "a"), _done(1, 1, "b")]
    returns = [{"x": 1, "got": [1, "a"]}, {"x": 1, "got": [1, "b"]}]
    violations, counts = judge(comps, returns, {1: (1, "a")}, set())
    assert counts["duplicates"] == 1 and violations


def test_the_oracle_forgives_only_killed_workers_unseen_computations() -> None:
    comps = [_done(1, 0, "a"), _done(1, 1, "b")]
    returns = [{"x": 1, "got": [1, "b"]}]
    violations, counts = judge(comps, returns, {1: (1, "b")}, {0})
    assert not violations and counts == {**counts, "duplicates": 0, "lost_to_kills": 1}
    violations, _ = judge(comps, returns, {1: (1, "b")}, set())
    assert any("nobody saw it" in v for v in violations)


def test_the_oracle_refuses_wrong_results() -> None:
    comps = [_done(1, 0, "a")]
    violations, _ = judge(comps, [{"x": 1, "got": [2, "a"]}], {1: (1, "zz")}, set())
    assert len(violations) == 2
