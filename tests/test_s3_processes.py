"""Real races between processes against the real S3 server (SeaweedFS on loopback).

A few racers x ~20 rounds: SeaweedFS serializes conditional writes on one key
with a back-off, so heavy contention is slow, not wrong. The oracle is each
worker's own account of what it did, compared with the end state read back.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import _s3_workers as w
from _s3_plugin import BUCKET, fresh_prefix
from persidict import BasicS3Dict, PersiDict, S3Dict
from s3_server import REGION, S3Server

RACERS = 3
CTX = multiprocessing.get_context("spawn")


def basic(server: S3Server) -> BasicS3Dict:
    return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                       endpoint_url=server.endpoint_url)


@pytest.fixture(params=["basic", "cached"])
def shared(request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Any) -> PersiDict:
    if request.param == "basic":
        return basic(s3_server)
    return S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                  base_dir=str(tmp_path / "cache"), endpoint_url=s3_server.endpoint_url)


def test_insert_if_absent_has_exactly_one_winner_per_key(shared: PersiDict) -> None:
    keys = [f"k{i}" for i in range(20)]
    barrier = CTX.Manager().Barrier(RACERS)
    with ProcessPoolExecutor(RACERS, mp_context=CTX) as pool:
        futures = [pool.submit(w.insert_if_absent, shared, barrier, me, keys)
                   for me in range(RACERS)]
        won = [f.result(timeout=300) for f in futures]
    winners: dict[str, list[int]] = {k: [] for k in keys}
    for me, ks in enumerate(won):
        for k in ks:
            winners[k].append(me)
    assert all(len(v) == 1 for v in winners.values()), winners
    # the end state, read back, is exactly what the winners wrote
    assert {tuple(k): v for k, v in shared.items()} == {(k,): winners[k][0] for k in keys}


@pytest.fixture(params=["basic", "cached"])
def counter_store(request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Any) -> PersiDict:
    if request.param == "basic":
        return basic(s3_server)
    return S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                  base_dir=str(tmp_path / "cache"), endpoint_url=s3_server.endpoint_url)


def test_contended_counter_loses_no_update(counter_store: PersiDict) -> None:
    shared = counter_store
    rounds = 20
    barrier = CTX.Manager().Barrier(RACERS)
    with ProcessPoolExecutor(RACERS, mp_context=CTX) as pool:
        futures = [pool.submit(w.increment, shared, barrier, rounds, "n")
                   for _ in range(RACERS)]
        calls = [f.result(timeout=300) for f in futures]
    assert shared["n"] == RACERS * rounds
    assert sum(calls) >= RACERS * rounds


def test_basic_s3_dict_pickles_and_works_in_a_child(s3_server: S3Server) -> None:
    d = basic(s3_server)
    d["from_parent"] = [1, 2, 3]
    clone = pickle.loads(pickle.dumps(d))
    assert clone.get_params() == d.get_params() and clone == d
    with ProcessPoolExecutor(1, mp_context=CTX) as pool:
        pid, seen, keys = pool.submit(w.roundtrip, d).result(timeout=120)
    assert seen == [1, 2, 3]
    assert ("from_child", str(pid)) in keys
    assert d["from_child", str(pid)] == "hello"
