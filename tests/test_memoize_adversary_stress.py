"""The memoize stress scenario's oracle, attacked: memoize broken on purpose must be caught.

With the claims replaced by one that lets every caller compute (no
single-flight), a short run on the memory backend (worker threads, so the
monkeypatch reaches them) must report duplicates and fail; the same run
with the real claims reports none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from persidict.engine.keys import NonEmptySafeStrTuple
from persidict.memoize_claims import LocalClaims, Turn
from persidict.stress.memo import run_memo
from persidict.stress.options import Options


def _run() -> dict[str, object]:
    return run_memo(Options(workers=4, duration=1.5, seed=11, scenario="memoize",
                            backend="memory"))


def test_the_oracle_reports_duplicates_of_a_memoize_without_single_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @contextmanager
    def everyone_computes(
        self: LocalClaims, key: NonEmptySafeStrTuple, ready: Callable[[], bool]
    ) -> Iterator[Turn]:
        yield Turn(mine=True)

    monkeypatch.setattr(LocalClaims, "claim", everyone_computes)
    report = _run()
    assert not report["ok"]
    assert report["counts"]["duplicates"] > 0, report  # type: ignore[index]


def test_the_same_run_with_real_claims_reports_none() -> None:
    report = _run()
    assert report["ok"], report["violations"]
    assert report["counts"]["duplicates"] == 0  # type: ignore[index]
