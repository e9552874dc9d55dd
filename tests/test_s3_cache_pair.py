"""S3Dict's local cache must never make an atomic operation lose an update.

A cache entry is one record (S3's etag and S3's bytes), so it can be old
but never a mismatched pair. Here it is old: another machine wrote S3
behind this handle's back (the cache still holds 5 under 5's etag). Reads
send the cached etag as If-None-Match; S3 has moved on, so it answers with
the current body and transform_item increments the real current value.
"""

from __future__ import annotations

from typing import Any

from _s3_plugin import BUCKET, fresh_prefix
from persidict import FileDirDict, S3Dict
from s3_server import REGION, S3Server
from test_cache_records import cached_entry


def test_transform_item_ignores_a_stale_cache_entry(s3_server: S3Server, tmp_path: Any) -> None:
    d = S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
               base_dir=str(tmp_path), endpoint_url=s3_server.endpoint_url)
    prefix = [p for p in d.root_prefix.split("/") if p]
    cache = FileDirDict(base_dir=str(tmp_path / "data" / BUCKET), digest_len=d.digest_len)
    cache = cache.get_subdict(prefix)
    d["n"] = 5
    assert d["n"] == 5
    old = d.etag("n")
    assert cached_entry(cache, "n") == (old, 5)
    d.main_dict["n"] = 6  # another machine writes S3, not this cache
    result = d.transform_item("n", transformer=lambda v: v + 1)
    assert result.new_value == 7
    assert d.main_dict["n"] == 7
    assert d["n"] == 7
    assert cached_entry(cache, "n") == (d.main_dict.etag("n"), 7)  # the write refreshed it
