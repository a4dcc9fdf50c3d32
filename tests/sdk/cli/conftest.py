"""Running `pulse` against the live Pulse of tests/sdk/conftest.py: in-process with Click's
CliRunner (`cli(...)`), or as the installed console script in a subprocess (`PULSE_BIN`), the way
a user runs it.

    result = cli("costs", "--by", "day")            # the project token of `pulse` (ingest + read)
    result = cli("whoami", key=None)                 # whatever the environment/config file says
    assert result.exit_code == 0, result.stderr
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pulse_sdk.cli import cli as pulse_cli

PULSE_BIN = Path(sys.executable).with_name("pulse")
DEFAULT = object()


@pytest.fixture
def cli(pulse):
    """cli(*args, key=DEFAULT, input=None, env=None) -> Result, with --base-url of the live server
    and --api-key the project's ingest+read token unless `key` says otherwise (None: no --api-key)."""

    def run(*args: str, key: object = DEFAULT, base_url: object = DEFAULT, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        options: list[str] = []
        if base_url is not None:
            options += ["--base-url", pulse.url if base_url is DEFAULT else str(base_url)]
        if key is not None:
            options += ["--api-key", pulse.ingest_key if key is DEFAULT else str(key)]
        return CliRunner().invoke(pulse_cli, [*options, *args], input=input, env=env, catch_exceptions=False, prog_name="pulse")

    return run


def run_pulse(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The installed `pulse` in a subprocess; the test's environment (its PULSE_CONFIG_DIR) plus `env`."""
    return subprocess.run(
        [str(PULSE_BIN), *args], env={**os.environ, **(env or {})}, input=input, capture_output=True,
        text=True, timeout=timeout,
    )


def one_line_error(result: Result | subprocess.CompletedProcess, code: int = 1) -> str:
    """The error's single stderr line, once the exit code and the absence of a traceback are checked."""
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    assert exit_code == code, (exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert lines[0].startswith("Error: ")
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_server() -> Iterator:
    """fake_server(status, body, content_type) -> its URL: a server that is not Pulse, answering
    every GET and POST with that."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, body: bytes, content_type: str = "application/json") -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
