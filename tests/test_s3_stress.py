"""persidict-stress --backend s3 against the real server: no invariant may break."""

from __future__ import annotations

from _s3_plugin import BUCKET
from persidict.stress.cli import Options, run_stress
from s3_server import REGION, S3Server


def test_stress_s3_backend_holds_every_invariant(s3_server: S3Server) -> None:
    report = run_stress(Options(backend="s3", endpoint_url=s3_server.endpoint_url,
                                bucket=BUCKET, region=REGION, workers=3, duration=5.0,
                                progress=False))
    assert report["ok"], report
    history = report["history"]
    assert history["checked"] and history["undecided"] == [], history
    assert history["ops_checked"] > 0 and history["listings"] > 0
