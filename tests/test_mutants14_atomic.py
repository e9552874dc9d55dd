"""concurrency/atomic.py: duties found unchecked by mutation testing (round 14).

Real faults where the kernel gives one: a write past RLIMIT_FSIZE (a short
write, then EFBIG), a FIFO with a writer attached planted at a key's path.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persidict.concurrency import atomic

_FSIZE_CHILD = r"""
import json, resource, signal, sys
from persidict.concurrency import atomic
path, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    atomic.write_atomic(path, b"n" * (3 * limit), durable=True)
    print(json.dumps({"raised": None}))
except OSError as exc:
    print(json.dumps({"raised": exc.errno}))
"""


def test_a_short_write_then_efbig_commits_nothing(tmp_path: Path) -> None:
    """Past RLIMIT_FSIZE write(2) first writes short, then fails: no torn value is renamed in."""
    path = tmp_path / "k"
    path.write_bytes(b"old")
    limit = 100_000
    done = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(path), str(limit)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == {"raised": errno.EFBIG}
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # the temp file removed


def test_a_fifo_with_a_writer_attached_is_no_value(tmp_path: Path) -> None:
    """Data waiting in a planted FIFO is not a value: the EOF-confirming read sees EAGAIN."""
    fifo = tmp_path / "k"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer stays attached
    try:
        os.write(writer, b"not a value")
        assert atomic.read_file(str(fifo)) is None
        assert atomic.read_file(str(fifo), spare=atomic.Spare()) is None
    finally:
        os.close(writer)


def test_a_file_grown_since_fstat_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """st_size is a hint (stale on some mounts, or grown from outside): read to EOF.

    Simulated fault: fstat reports 0 bytes for a 300 KiB file, so the spare
    buffer (128 KiB) must grow while reading.
    """
    data = os.urandom(300 * 1024)
    path = tmp_path / "v"
    path.write_bytes(data)
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        fields = list(st)
        fields[6] = 0  # st_size
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", stale_fstat)
    got = atomic.read_file(str(path), spare=atomic.Spare())
    assert got is not None
    assert bytes(got) == data


def test_a_file_of_exactly_the_spare_buffer_size_is_read_whole(tmp_path: Path) -> None:
    """A file filling the spare buffer to its last byte ends only at a read of 0 bytes."""
    spare = atomic.Spare()
    for size in (2 * 65536, 2 * 65536 - 1, 2 * 65536 + 1, 5 * 65536):
        data = os.urandom(size)
        path = tmp_path / f"v{size}"
        path.write_bytes(data)
        got = atomic.read_file(str(path), spare=spare)
        assert got is not None
        assert bytes(got) == data


def test_a_short_readv_into_the_spare_buffer_reads_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short read is EOF on local disks, not on every mount (FUSE, NFS): read to 0 bytes."""
    data = os.urandom(200 * 1024)
    path = tmp_path / "v"
    path.write_bytes(data)
    real_readv = os.readv

    def short_readv(fd: int, buffers: list[memoryview]) -> int:
        return real_readv(fd, [buffers[0][:1000]])

    monkeypatch.setattr(os, "readv", short_readv)
    got = atomic.read_file(str(path), spare=atomic.Spare())
    assert got is not None
    assert bytes(got) == data


def test_a_big_file_read_with_a_spare_is_a_view_of_it(tmp_path: Path) -> None:
    """Over 64 KiB and below SPARE_MAX a read lands in the spare buffer (no second copy)."""
    spare = atomic.Spare()
    for size in (65536, 65537, 3 * 65536):
        data = os.urandom(size)
        path = tmp_path / f"v{size}"
        path.write_bytes(data)
        got = atomic.read_file(str(path), spare=spare)
        assert isinstance(got, memoryview)
        assert got.obj is spare.buf
        assert bytes(got) == data
        got.release()
    small = tmp_path / "small"
    small.write_bytes(b"x" * 65535)
    assert atomic.read_file(str(small), spare=spare) == b"x" * 65535


def test_a_socket_planted_at_a_path_is_no_value(tmp_path: Path) -> None:
    """open(2) of a unix socket fails with ENXIO: no value there, not an error."""
    import socket

    path = tmp_path / "k"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        assert atomic.read_file(str(path)) is None
    finally:
        sock.close()


def test_a_file_of_spare_max_bytes_is_not_read_into_the_spare(tmp_path: Path) -> None:
    """The spare buffer stays under SPARE_MAX: a file that big comes back as bytes."""
    spare = atomic.Spare()
    data = os.urandom(atomic.SPARE_MAX)
    path = tmp_path / "v"
    path.write_bytes(data)
    got = atomic.read_file(str(path), spare=spare)
    assert isinstance(got, bytes)
    assert got == data
    assert len(spare.buf) < atomic.SPARE_MAX
    below = tmp_path / "below"
    below.write_bytes(data[:-1])
    view = atomic.read_file(str(below), spare=spare)
    assert isinstance(view, memoryview) and bytes(view) == data[:-1]
    view.release()


def test_a_read_error_of_a_regular_file_is_raised_not_called_absent() -> None:
    """A real EIO (reading /proc/self/mem at offset 0): an unreadable value is no absent key."""

    path = "/proc/self/mem"
    if not os.path.exists(path):
        pytest.skip("no /proc here")
    with pytest.raises(OSError) as info:
        atomic.read_file(path)
    assert info.value.errno == errno.EIO
