"""More faults for FaultProxy: held requests, server errors and cut bodies.

:class:`MoreFaultProxy` adds these modes to ``"before"`` and ``"after"``:

- ``"hold"``: the request is read whole and held until ``fault.release`` is
  set; only then is it relayed (the server applies it late, after the client
  gave up and maybe retried: a zombie request). ``fault.relayed`` is set once
  the server has answered it; the client connection is then closed.
- ``"503"`` / ``"500"``: the request never reaches the server; the client
  gets that status with an S3 error body (SlowDown / InternalError).
- ``"after500"``: the request is relayed and applied; the client gets a 500
  InternalError instead of the server's reply.
- ``"cut"``: the request is relayed; the client gets the response head and
  half of its body, then the connection is closed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from faultproxy import Fault, FaultProxy, _body, _Closed, _head, _Stream

MODES = ("before", "after", "hold", "503", "500", "after500", "cut")

_ERRORS = {
    503: ("Service Unavailable", "SlowDown", "Please reduce your request rate."),
    500: ("Internal Server Error", "InternalError", "We encountered an internal error."),
}


def _error_response(status: int) -> bytes:
    reason, code, message = _ERRORS[status]
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


@dataclass
class HeldFault(Fault):
    """A fault whose request waits for ``release``; ``relayed`` once applied."""

    release: threading.Event = field(default_factory=threading.Event)
    relayed: threading.Event = field(default_factory=threading.Event)


class MoreFaultProxy(FaultProxy):
    """FaultProxy with the extra modes above."""

    def arm(
        self, mode: str, method: str, path: str = "", hook: Callable[[], None] | None = None
    ) -> HeldFault:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        fault = HeldFault(mode, method.upper(), path, hook)
        with self._lock:
            self._faults.append(fault)
        return fault

    def stop(self) -> None:
        with self._lock:
            held = [f for f in self._faults if isinstance(f, HeldFault)]
        for f in held:
            f.release.set()
        super().stop()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            stream = _Stream(client)
            up: _Stream | None = None
            while not self._stopping.is_set():
                raw, line, headers = _head(stream)
                method, path = line.split(" ")[0], line.split(" ")[1]
                fault = self._take_fault(method, path)
                if fault is not None and not isinstance(fault, HeldFault):
                    raise AssertionError("a MoreFaultProxy queues only HeldFaults")
                if headers.get("expect", "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    request = raw.replace(b"Expect: 100-continue\r\n", b"")
                    request += _body(stream, headers, to_eof=False)
                else:
                    request = raw + _body(stream, headers, to_eof=False)
                mode = fault.mode if fault is not None else ""
                if fault is not None and mode in ("before", "503", "500"):
                    self.log.append((method, path, f"not relayed ({mode})"))
                    self._fire(fault)
                    if mode == "before":
                        return
                    client.sendall(_error_response(int(mode)))
                    continue
                if fault is not None and mode == "hold":
                    self.log.append((method, path, "held"))
                    self._fire(fault)
                    fault.release.wait(30)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    with self._lock:
                        self._sockets.add(upstream)
                    up = _Stream(upstream)
                assert up is not None
                upstream.sendall(request)
                status = 100
                while status == 100:  # an interim answer to an Expect left in place
                    rraw, status_line, rheaders = _head(up)
                    status = int(status_line.split(" ")[1])
                no_body = method == "HEAD" or status in (204, 304) or status < 200
                body = b"" if no_body else _body(up, rheaders, to_eof=True)
                if fault is None:
                    self.log.append((method, path, str(status)))
                    client.sendall(rraw + body)
                    if rheaders.get("connection", "").lower() == "close":
                        return
                    continue
                self.log.append((method, path, f"{status}, {mode}"))
                if mode == "hold":
                    fault.relayed.set()
                    return
                if mode == "after":
                    self._fire(fault)
                    return
                if mode == "after500":
                    self._fire(fault)
                    client.sendall(_error_response(500))
                    continue
                # "cut": half the body, then the connection goes
                client.sendall(rraw + body[: len(body) // 2])
                self._fire(fault)
                return
        except (_Closed, OSError):
            return
        finally:
            self._close(client, upstream)
