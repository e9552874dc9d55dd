"""Cache wrappers: cases found by mutation testing of backends/cached.py.

The wrappers write main first and mirror into their cache after; these
tests pin down what the mirror may and may not leave behind. Faults and
interleavings are injected at the byte stores (``HookedBytes``), where the
wrappers meet main and the cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
from test_cache_records import FlakyCache, cached_entry, hooked


def _cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "persidict cache" in r.getMessage()]


def test_append_only_reads_of_a_cached_value_log_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A value already in the cache is no failure and must not be logged as one."""
    main = FileDirDict(base_dir=str(tmp_path / "main"), append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=LocalDict(append_only=True))
    with caplog.at_level(logging.WARNING, logger="persidict"):
        d["k"] = "v"
        for _ in range(3):
            assert d.get_with_etag("k").new_value == "v"
            assert d["k"] == "v"
    assert _cache_warnings(caplog) == []


def test_etag_answers_from_main_when_the_cache_cannot_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    cache = FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    main["k"] = "v"  # behind the wrapper: the cache knows nothing yet
    cache.broken = True
    with caplog.at_level(logging.WARNING, logger="persidict"):
        assert d.etag("k") == main.etag("k")
    assert any("mirror" in m for m in _cache_warnings(caplog))
    cache.broken = False
    assert d.etag("k") == main.etag("k")
    assert cached_entry(cache, "k") == (main.etag("k"), "v")  # the etag read filled it


def test_caches_forget_a_delete_that_raised_after_it_took_effect(tmp_path: Path) -> None:
    main, bytes_ = hooked(FileDirDict(base_dir=str(tmp_path / "main")))
    cache = LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = "v"
    assert d.etag("k") and cached_entry(cache, "k") is not None

    def lost_reply() -> None:
        raise OutcomeUnknownError("reply lost (injected)", backend="test", operation="delete",
                                  key="k")  # fmt: skip

    bytes_.after["delete"] = lost_reply  # the delete takes effect, then its reply is lost
    with pytest.raises(OutcomeUnknownError):
        del d["k"]
    assert "k" not in cache
    with pytest.raises(KeyError):
        d.etag("k")  # not the etag of a value that is gone


def test_a_reader_overtaken_by_a_writer_leaves_the_writers_entry(tmp_path: Path) -> None:
    """A reader's mirror that lost its race on the cache must not replace the
    writer's newer entry with its older one.

    The reader saw "A"; a writer sharing the cache stored "B" meanwhile. If
    the reader then wrote A's entry, ``etag()`` would answer A's etag for a
    key main holds as B.
    """
    base = str(tmp_path / "main")
    cache = LocalDict()
    main, main_bytes = hooked(FileDirDict(base_dir=base))
    reader = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    writer = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                               etag_cache=LocalDict())  # fmt: skip
    reader["k"] = "A"
    FileDirDict(base_dir=base)["k"] = "A2"  # behind both: the cached entry is stale

    def write_b() -> None:
        writer["k"] = "B"

    main_bytes.after["read"] = write_b  # right after the reader's read of main
    assert reader.get_with_etag("k").new_value == "A2"  # read before B landed
    assert cached_entry(cache, "k") == (main.etag("k"), "B")
    assert reader.etag("k") == main.etag("k")
    FileDirDict(base_dir=base)["k"] = "A2"  # another machine: main's etag is A2's again
    assert reader["k"] == "A2"


def test_two_writers_never_leave_the_older_entry(tmp_path: Path) -> None:
    """Writer 1 committed "X" and is about to mirror it; writer 2 stores "Y"
    and mirrors it first. Writer 1's late mirror must not replace Y's entry,
    and main's content returning to "X" (another machine writes it; etags are
    content hashes) is still read right.
    """
    base = str(tmp_path / "main")
    cache, cache_bytes = hooked(LocalDict())
    one = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                            etag_cache=LocalDict())  # fmt: skip
    two = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                            etag_cache=LocalDict())  # fmt: skip

    def write_y() -> None:
        two["k"] = "Y"

    cache_bytes.before["write"] = write_y  # just before writer 1's mirror
    one["k"] = "X"
    assert FileDirDict(base_dir=base)["k"] == "Y"
    assert cached_entry(cache, "k") == (FileDirDict(base_dir=base).etag("k"), "Y")
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
    assert cached_entry(cache, "k") == (main.etag("k"), "v")


def test_a_read_that_finds_the_key_gone_drops_its_entry(tmp_path: Path) -> None:
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    cache = LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = "v"
    del main["k"]  # behind the wrapper
    assert d.get_with_etag("k").new_value is ITEM_NOT_AVAILABLE
    assert "k" not in cache
    with pytest.raises(KeyError):
        d.etag("k")


def test_a_writer_overtaken_after_its_commit_never_caches_its_older_value(
    tmp_path: Path,
) -> None:
    """Writer 1 commits "X"; writer 2 commits "Y" and mirrors it before writer 1
    mirrors. Writer 1's value is the older one: it must not replace Y's entry."""
    base = str(tmp_path / "main")
    cache = LocalDict()
    main_one, one_bytes = hooked(FileDirDict(base_dir=base))
    one = MutableDictCached(main_dict=main_one, data_cache=cache, etag_cache=LocalDict())
    two = MutableDictCached(main_dict=FileDirDict(base_dir=base), data_cache=cache,
                            etag_cache=LocalDict())  # fmt: skip
    one["k"] = "old"

    def two_writes_y() -> None:
        two["k"] = "Y"

    one_bytes.after["write"] = two_writes_y  # right after writer 1's commit in main
    one["k"] = "X"
    assert cached_entry(cache, "k") == (main_one.etag("k"), "Y")
    assert one.etag("k") == main_one.etag("k")
    assert one["k"] == "Y"


def test_a_value_validated_by_main_is_served_even_if_evicted_meanwhile(
    tmp_path: Path,
) -> None:
    """Main confirmed the cached etag (no body sent); the cache entry is then
    dropped (another process forgot it): the value read before is the answer."""
    main, main_bytes = hooked(FileDirDict(base_dir=str(tmp_path / "main")))
    cache = LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = "v"
    main_bytes.after["read"] = lambda: cache.discard("k")
    assert d["k"] == "v"


def _die() -> None:
    os._exit(0)  # the writer dies here


@pytest.mark.parametrize("where", ["before main", "between main and cache", "after cache"])
def test_a_writer_killed_at_any_step_leaves_no_stale_entry(tmp_path: Path, where: str) -> None:
    """The writer's process dies around its write of "B" (in main, then in the
    cache): whatever the cache holds afterwards must never be served for
    another version, also once main's content is A's again (content-hash etags).
    """
    base = str(tmp_path / "main")

    def stores() -> tuple[FileDirDict, FileDirDict]:
        return FileDirDict(base_dir=base), FileDirDict(base_dir=str(tmp_path / "cache"))

    main, cache = stores()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = "A"
    assert d["k"] == "A"  # the cache holds A
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            (main, main_bytes), (cache, cache_bytes) = (hooked(s) for s in stores())
            child = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
            if where == "before main":
                main_bytes.before["write"] = _die
            elif where == "between main and cache":
                cache_bytes.before["write"] = _die
            else:
                cache_bytes.after["write"] = _die
            child["k"] = "B"
        finally:
            os._exit(1)  # not reached if it died where it should
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    written = FileDirDict(base_dir=base)["k"]
    assert written == ("A" if where == "before main" else "B")
    assert d["k"] == written
    FileDirDict(base_dir=base)["k"] = "A"  # another machine: main's etag is A's again
    assert d["k"] == "A"
    FileDirDict(base_dir=base)["k"] = "B"
    assert d["k"] == "B"
