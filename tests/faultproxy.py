"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for losing S3 requests on command.

Point boto3's ``endpoint_url`` at :attr:`FaultProxy.endpoint_url`; every
request is relayed to ``upstream`` unchanged (same bytes, so signatures hold)
over one upstream connection per client connection (keep-alive both ways).
:meth:`FaultProxy.arm` queues a fault for the next request matching a method
and a path substring:

- ``"before"``: the request is read whole and then the client connection is
  closed; the server never sees it.
- ``"after"``: the request is relayed, the server's whole response is read
  (so the server has applied it), and the client connection is closed
  without a byte of that response.

Either way boto3 sees a connection closed after it sent the request: the
ambiguous case. An optional ``hook`` runs just before the connection is
closed, i.e. while the client still waits (say, another writer acting then).

Messages are framed by Content-Length or chunked encoding; a request with
``Expect: 100-continue`` gets its interim response from the server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field


class _Closed(Exception):
    """The peer closed its end between messages."""


class _Stream:
    """A buffered reader over a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed
        self.buf += chunk

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        data, self.buf = self.buf[:i], self.buf[i:]
        return data

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_eof(self) -> bytes:
        with contextlib.suppress(_Closed):
            while True:
                self._fill()
        data, self.buf = self.buf, b""
        return data


def _head(stream: _Stream) -> tuple[bytes, str, dict[str, str]]:
    """Read a message head: its raw bytes, its first line and its headers (lowercased)."""
    raw = stream.read_until(b"\r\n\r\n")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return raw, lines[0], headers


def _body(stream: _Stream, headers: dict[str, str], *, to_eof: bool) -> bytes:
    """Read a message body framed by ``headers`` (raw bytes, chunk framing included)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = b""
        while True:
            size_line = stream.read_until(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = stream.read_until(b"\r\n")
                    out += line
                    if line == b"\r\n":
                        return out
            out += stream.read_exact(size + 2)
    if "content-length" in headers:
        return stream.read_exact(int(headers["content-length"]))
    return stream.read_to_eof() if to_eof else b""


@dataclass
class Fault:
    """One queued fault; ``fired`` is set once it has been applied."""

    mode: str
    method: str
    path: str
    hook: Callable[[], None] | None
    fired: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path in path


class FaultProxy:
    """The proxy: a listening thread plus one thread per client connection."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        # (method, path, what happened) of every request seen, in order
        self.log: list[tuple[str, str, str]] = []
        self.continued = 0  # requests relayed through an interim 100 Continue
        self._acceptor = threading.Thread(target=self._accept, name="faultproxy", daemon=True)
        self._acceptor.start()

    def arm(
        self, mode: str, method: str, path: str = "", hook: Callable[[], None] | None = None
    ) -> Fault:
        """Queue a fault ("before" or "after") for the next matching request."""
        if mode not in ("before", "after"):
            raise ValueError(f"mode must be 'before' or 'after', got {mode!r}")
        fault = Fault(mode, method.upper(), path, hook)
        with self._lock:
            self._faults.append(fault)
        return fault

    def disarm(self) -> None:
        """Forget every fault not yet fired."""
        with self._lock:
            self._faults.clear()

    def stop(self) -> None:
        """Close every socket and join every thread."""
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._sockets.add(client)
                self._threads.append(t)
            t.start()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(method, path):
                    return self._faults.pop(i)
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            stream = _Stream(client)
            up_stream: _Stream | None = None
            while not self._stopping.is_set():
                raw, line, headers = _head(stream)
                method, path = line.split(" ")[0], line.split(" ")[1]
                fault = self._take_fault(method, path)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    with self._lock:
                        self._sockets.add(upstream)
                    up_stream = _Stream(upstream)
                assert up_stream is not None
                if headers.get("expect", "").lower() == "100-continue":
                    self.continued += 1
                    upstream.sendall(raw)
                    interim, status_line, _ = _head(up_stream)
                    if " 100 " not in status_line + " ":
                        raise AssertionError(f"no 100 Continue from upstream: {status_line}")
                    client.sendall(interim)
                    request = _body(stream, headers, to_eof=False)
                else:
                    request = raw + _body(stream, headers, to_eof=False)
                if fault is not None and fault.mode == "before":
                    self.log.append((method, path, "dropped before"))
                    self._fire(fault)
                    return
                upstream.sendall(request)
                rraw, status_line, rheaders = _head(up_stream)
                status = int(status_line.split(" ")[1])
                no_body = method == "HEAD" or status in (204, 304) or status < 200
                response = rraw + (b"" if no_body else _body(up_stream, rheaders, to_eof=True))
                if fault is not None:
                    self.log.append((method, path, f"{status}, reply dropped"))
                    self._fire(fault)
                    return
                self.log.append((method, path, str(status)))
                client.sendall(response)
                if rheaders.get("connection", "").lower() == "close":
                    return
        except (_Closed, OSError):
            return
        finally:
            self._close(client, upstream)

    def _close(self, *sockets: socket.socket | None) -> None:
        """Close a connection's sockets and forget them."""
        for s in sockets:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
                with self._lock:
                    self._sockets.discard(s)

    @staticmethod
    def _fire(fault: Fault) -> None:
        try:
            if fault.hook is not None:
                fault.hook()
        finally:
            fault.fired.set()
