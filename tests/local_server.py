"""A real HTTP server on a loopback address standing in for an operator's internal service (the
metadata endpoint, a database's HTTP port…), and a DNS stub, for tests of the egress guard.

The server counts the requests it receives and answers with a secret, so a test can assert both
that a refused request never reached it and that a leak would have shown the secret."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

INTERNAL_SECRET = "internal-secret-7f3a9c"  # noqa: S105 (what an internal service would leak)
PUBLIC_STAND_IN = "93.184.216.34"  # a public address the DNS stub answers with first


class InternalService:
    """`with InternalService() as service:` serves on `service.host:service.port`; every request
    is counted in `service.hits`. `redirect_to` makes it answer 302 to that URL instead."""

    def __init__(
        self, host: str = "127.0.0.1", *, status: int = 200, redirect_to: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.status, self.redirect_to, self.tls = host, status, redirect_to, tls
        self.hits: list[str] = []

    def __enter__(self) -> InternalService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                service.hits.append(f"{self.command} {self.path}")
                if service.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", service.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = f"{INTERNAL_SECRET}: the internal answer".encode()
                self.send_response(service.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 (http.server's naming)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self.port = self._server.server_address[1]
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/", *, host: str | None = None) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"


@contextmanager
def rebinding_dns(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> Iterator[list[str]]:
    """Make `name` resolve to answers[0] on the first lookup, answers[1] on the second, and so on
    (the last one from then on), at the lowest level: socket.getaddrinfo, which the save-time
    check, httpcore's backends (through anyio) and aiohttp's resolver all end up calling.
    Yields the list of answers given, one per lookup."""
    real: Callable = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 (socket's names)
        if (host.decode() if isinstance(host, bytes) else host) != name:  # anyio passes bytes
            return real(host, port, family, type, proto, flags)
        address = answers[min(len(given), len(answers) - 1)]
        given.append(address)
        family_of = socket.AF_INET6 if ":" in address else socket.AF_INET
        number = int(port) if port else 0
        sockaddr = (address, number, 0, 0) if family_of == socket.AF_INET6 else (address, number)
        return [(family_of, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield given
