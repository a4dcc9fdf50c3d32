"""Fixtures for the SDK core's tests: a Pulse process that can be killed and restarted, a proxy
that loses answers or fails on cue in front of the live Pulse, and a check that a client's
counters account for every event.

    def test_restart(pulse, pulse_process):
        client = Client(api_key=pulse.ingest_key, base_url=pulse_process.base_url)
        pulse_process.kill(); pulse_process.start()      # same port

    def test_lost_answer(pulse, fault_proxy):
        fault_proxy.inject("drop-answer")                # the next request is stored, its answer lost
        client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pulse_sdk import Stats

from tests.gateway.conftest import GatewayProcess

from ..conftest import LivePulse

DROP_ANSWER = "drop-answer"
SLOW = "slow"


def assert_accounted(stats: Stats) -> None:
    """Every tracked event is in exactly one bucket."""
    settled = stats.queued + stats.sent + stats.duplicates + stats.rejected + stats.failed + stats.dropped
    assert stats.tracked == settled, stats


def pulse_messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    """What the SDK logged at `level` or above (with the `sdk_logs` fixture: down to DEBUG)."""
    return [r.getMessage() for r in caplog.records if r.name == "pulse_sdk" and r.levelno >= level]


def wait_until(condition, *, timeout: float = 30.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


class FaultProxy:
    """An HTTP server in front of the live Pulse that forwards each request, except when told
    otherwise for the next ones (`inject`): DROP_ANSWER forwards the request (Pulse stores the
    batch) and closes the connection without answering; SLOW waits `slow_s` seconds first; a
    status code answers with it (and `headers`) without forwarding. `seen` records each request: (monotonic time, what was done)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: deque[tuple[str | int, dict[str, str]]] = deque()
        self.seen: list[tuple[float, str | int]] = []
        self.slow_s = 1.0
        self._http = httpx.Client(timeout=60.0)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def inject(self, *faults: str | int, headers: dict[str, str] | None = None) -> None:
        self.faults.extend((fault, headers or {}) for fault in faults)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._http.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault, extra_headers = proxy.faults.popleft() if proxy.faults else ("forward", {})
                proxy.seen.append((time.monotonic(), fault))
                if isinstance(fault, int):
                    self._answer(fault, b'{"detail": "Injected by the test."}', "application/json", extra_headers)
                    return
                if fault == SLOW:
                    time.sleep(proxy.slow_s)
                forwarded = {name: self.headers[name] for name in ("Authorization", "Content-Type", "User-Agent")
                             if self.headers.get(name)}
                response = proxy._http.post(proxy.upstream + self.path, content=body, headers=forwarded)
                if fault == DROP_ANSWER:
                    self.close_connection = True  # stored upstream; the caller never hears of it
                    return
                headers = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers else {}
                self._answer(response.status_code, response.content,
                             response.headers.get("content-type", "application/json"), headers)

            def _answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def sdk_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="pulse_sdk")
    return caplog


@pytest.fixture
def fault_proxy(pulse: LivePulse) -> Iterator[FaultProxy]:
    proxy = FaultProxy(pulse.url)
    yield proxy
    proxy.close()


@pytest.fixture
def pulse_process(pulse: LivePulse, tmp_path) -> Iterator[GatewayProcess]:
    """Pulse (Django and the gateway, `config.asgi` under uvicorn) in a process of its own on the
    test database, on a fixed port: kill() it, start() it again, the SDK finds it where it was."""
    server = GatewayProcess(tmp_path / "pulse.log").start()
    yield server
    server.stop()
    print(server.output())  # shown by pytest only when the test fails
