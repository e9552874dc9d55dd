"""Cache wrappers: cases found by mutation testing of backends/cached.py.

The wrappers write main first and mirror into their caches after; these
tests pin down what the mirror may and may not leave behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persidict import (
    ANY_ETAG,
    ITEM_NOT_AVAILABLE,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
    AppendOnlyDictCached,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    OutcomeUnknownError,
)
from test_cache_after_commit import FlakyCache


def _cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "persidict cache" in r.getMessage()]


def test_append_only_reads_of_a_cached_value_log_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A value already in the cache is mirrored again on every snapshot read:
    that is no failure and must not be logged as one."""
    main = FileDirDict(base_dir=str(tmp_path / "main"), append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=LocalDict(append_only=True))
    with caplog.at_level(logging.WARNING, logger="persidict"):
        d["k"] = "v"
        for _ in range(3):
            assert d.get_with_etag("k").new_value == "v"
            assert d["k"] == "v"
    assert _cache_warnings(caplog) == []


def test_etag_answers_from_main_when_the_etag_cache_cannot_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    etags = FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=LocalDict(), etag_cache=etags)
    main["k"] = "v"  # behind the wrapper: the etag cache knows nothing yet
    etags.broken = True
    with caplog.at_level(logging.WARNING, logger="persidict"):
        assert d.etag("k") == main.etag("k")
    assert any("etag mirror" in m for m in _cache_warnings(caplog))


class LostDeleteReply(FileDirDict):
    """Main whose deletes take effect, then report that the outcome is unknown."""

    def _remove(self, key: Any, *, if_match: Any) -> bool:
        super()._remove(key, if_match=if_match)
        raise OutcomeUnknownError("reply lost (injected)", backend="test", operation="delete",
                                  key=key)  # fmt: skip


def test_caches_forget_a_delete_that_raised_after_it_took_effect(tmp_path: Path) -> None:
    main = LostDeleteReply(base_dir=str(tmp_path / "main"))
    cache, etags = LocalDict(), LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=etags)
    d["k"] = "v"
    assert d.etag("k") and "k" in etags
    with pytest.raises(OutcomeUnknownError):
        del d["k"]
    assert "k" not in cache and "k" not in etags
    with pytest.raises(KeyError):
        d.etag("k")  # not the etag of a value that is gone


class HookedMain(FileDirDict):
    """Main that runs ``hook`` (once) right after a read, before the caller goes on."""

    hook: Callable[[], None] | None = None

    def _get(self, key: Any, **kwargs: Any) -> Any:
        version = super()._get(key, **kwargs)
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return version


def test_a_reader_overtaken_by_a_writer_leaves_the_writers_etag(tmp_path: Path) -> None:
    """A reader's mirror that lost its race on the value cache must not write
    its (older) etag next to the writer's newer value.

    The reader saw "A"; a writer sharing the caches stored "B" meanwhile. If
    the reader then wrote A's etag, a later return of main's content to "A"
    (content-hash etags) would make the cache serve "B" for it.
    """
    base = str(tmp_path / "main")
    cache, etags = LocalDict(), LocalDict()
    main = HookedMain(base_dir=base)
    reader = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=etags)
    writer = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                               etag_cache=etags)  # fmt: skip
    reader["k"] = "A"

    def write_b() -> None:
        writer["k"] = "B"

    main.hook = write_b
    assert reader.get_with_etag("k").new_value == "A"  # read before B landed
    assert cache["k"] == "B"
    FileDirDict(base_dir=base)["k"] = "A"  # another machine: main's etag is A's again
    assert reader["k"] == "A"


class HookedEtags(LocalDict):
    """An etag cache that runs ``hook`` (once) just before storing an etag."""

    hook: Callable[[], None] | None = None

    def _put(self, key: Any, value: Any, **kwargs: Any) -> Any:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super()._put(key, value, **kwargs)


def test_two_writers_never_pair_a_value_with_the_other_ones_etag(tmp_path: Path) -> None:
    """Writer 1 mirrors "X" into the value cache; before it stores X's etag,
    writer 2 stores "Y" and Y's etag. Writer 1's late etag must not end up
    next to "Y": once main's content returns to "X" (another machine writes
    it; etags are content hashes), the cache would serve "Y" for it.
    """
    base = str(tmp_path / "main")
    cache, etags = LocalDict(), HookedEtags()
    one = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                            etag_cache=etags)  # fmt: skip
    two = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                            etag_cache=etags)  # fmt: skip

    def write_y() -> None:
        two["k"] = "Y"

    etags.hook = write_y
    one["k"] = "X"
    assert cache["k"] == "Y" and FileDirDict(base_dir=base)["k"] == "Y"
    FileDirDict(base_dir=base)["k"] = "X"  # another machine, same bytes as X
    assert one["k"] == "X"


def test_append_only_snapshot_without_value_caches_nothing(tmp_path: Path) -> None:
    """A read that did not fetch the value (NEVER_RETRIEVE) has nothing to mirror."""
    main = FileDirDict(base_dir=str(tmp_path / "main"), append_only=True)
    main["k"] = "v"  # behind the wrapper: the cache is empty
    cache = LocalDict(append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=cache)
    r = d.get_item_if("k", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE,
                      retrieve_value=NEVER_RETRIEVE)  # fmt: skip
    assert r.new_value is VALUE_NOT_RETRIEVED
    assert "k" not in cache
    assert d["k"] == "v"


def test_a_read_that_finds_the_key_gone_drops_its_cached_etag(tmp_path: Path) -> None:
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    cache, etags = LocalDict(), LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=etags)
    d["k"] = "v"
    del main["k"]  # behind the wrapper
    assert d.get_with_etag("k").new_value is ITEM_NOT_AVAILABLE
    assert "k" not in etags
    with pytest.raises(KeyError):
        d.etag("k")


class HookedPutMain(FileDirDict):
    """Main that runs ``hook`` (once) right after a write committed."""

    hook: Callable[[], None] | None = None

    def _put(self, key: Any, value: Any, **kwargs: Any) -> Any:
        etag = super()._put(key, value, **kwargs)
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return etag


def test_a_writer_overtaken_after_its_commit_never_caches_its_older_value(
    tmp_path: Path,
) -> None:
    """Writer 1 commits "X"; writer 2 commits "Y" and mirrors it before writer 1
    mirrors. Writer 1's value is the older one: it must not replace "Y" in the
    value cache, where it would be served under Y's cached etag."""
    base = str(tmp_path / "main")
    cache, etags = LocalDict(), HookedEtags()
    main_one = HookedPutMain(base_dir=base)
    one = MutableDictCached(main_dict=main_one, data_cache=cache, etag_cache=etags)
    two = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                            etag_cache=etags)  # fmt: skip
    reader = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                               etag_cache=etags)  # fmt: skip
    one["k"] = "old"
    seen: list[str] = []

    def two_writes_y() -> None:
        two["k"] = "Y"
        etags.hook = lambda: seen.append(reader["k"])  # fires if one stores an etag

    main_one.hook = two_writes_y
    one["k"] = "X"
    assert seen in ([], ["Y"])
    assert reader["k"] == "Y" and cache["k"] == "Y"


def test_a_value_validated_by_main_is_served_even_if_evicted_meanwhile(
    tmp_path: Path,
) -> None:
    """Main confirmed the cached etag (no body sent); the cache entry is then
    dropped (another process forgot it): the value read before is the answer."""
    main = HookedMain(base_dir=str(tmp_path / "main"))
    cache, etags = LocalDict(), LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=etags)
    d["k"] = "v"
    main.hook = lambda: cache.discard("k")
    assert d["k"] == "v"


class DyingEtags(FileDirDict):
    """An etag cache whose process dies (os._exit) just before it stores an etag."""

    armed = False

    def _put(self, key: Any, value: Any, **kwargs: Any) -> Any:
        if self.armed:
            os._exit(0)  # the writer dies between its two cache writes
        return super()._put(key, value, **kwargs)


def test_a_writer_killed_between_its_cache_writes_leaves_no_stale_pair(tmp_path: Path) -> None:
    """The writer's process dies after mirroring "B" into the value cache and
    before storing B's etag: A's etag must not be left next to "B", or the
    cache serves "B" once main's content is A's again."""
    base = str(tmp_path / "main")

    def wrapper() -> tuple[MutableDictCached, DyingEtags]:
        etags = DyingEtags(base_dir=str(tmp_path / "etags"))
        return MutableDictCached(main_dict=FileDirDict(base_dir=base),
                                 data_cache=FileDirDict(base_dir=str(tmp_path / "cache")),
                                 etag_cache=etags), etags  # fmt: skip

    d, _ = wrapper()
    d["k"] = "A"
    assert d["k"] == "A"  # both caches hold A
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            child, etags = wrapper()
            etags.armed = True
            child["k"] = "B"
        finally:
            os._exit(1)  # not reached if it died where it should
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert FileDirDict(base_dir=base)["k"] == "B"
    FileDirDict(base_dir=base)["k"] = "A"  # another machine: main's etag is A's again
    assert d["k"] == "A"
