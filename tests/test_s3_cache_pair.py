"""S3Dict's local caches must never make an atomic operation lose an update.

The state below is what two writers sharing one cache directory can leave
when one of them dies between its two cache writes: the value cache holds an
older value while the etag cache holds main's current etag. Plain reads trust
the cache when main confirms the etag (as the API reference specifies), but
conditional operations (transform_item here) take their snapshot from main,
so the increment is applied to the real current value.
"""

from __future__ import annotations

from typing import Any

from _s3_plugin import BUCKET, fresh_prefix
from persidict import S3Dict
from persidict.engine.keys import NonEmptySafeStrTuple
from s3_server import REGION, S3Server


def test_transform_item_ignores_a_stale_cache_pair(s3_server: S3Server, tmp_path: Any) -> None:
    d = S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
               base_dir=str(tmp_path), endpoint_url=s3_server.endpoint_url)
    d["n"] = 6
    k = NonEmptySafeStrTuple("n")
    data_cache = d._inner._cache  # type: ignore[attr-defined]
    data_cache._put(k, 5, if_match=None, want_etag=False)  # the interleaved older writer
    assert d.main_dict["n"] == 6
    result = d.transform_item("n", transformer=lambda v: v + 1)
    assert result.new_value == 7
    assert d.main_dict["n"] == 7
    assert d["n"] == 7  # the write refreshed both caches
