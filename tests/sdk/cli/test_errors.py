"""Every way a command can fail says so in one line on stderr, with a non-zero exit code and
never a traceback: no token, a revoked or wrong token (401), a missing scope (403), a server
that cannot be reached or is not Pulse, a server error, a bad file, a bad option."""

from __future__ import annotations

import socket
import subprocess

import pytest
from pulse_sdk.api import PulseAPI, ServerError, Unreachable

from .conftest import PULSE_BIN, free_port, one_line_error, run_pulse

REJECTED = "It may be revoked, expired or mistyped: run `pulse login` with a valid token."


def test_no_token(cli):
    assert one_line_error(cli("costs", key=None)) == "Error: Not logged in: run `pulse login` or set PULSE_API_KEY."


def test_a_revoked_token(cli, pulse):
    token, raw = pulse.issue_token(["read"])
    token.revoke(by=pulse.personas.owner)
    line = one_line_error(cli("budgets", key=raw))
    assert line == f"Error: Token rejected by {pulse.url}: This API token has been revoked. {REJECTED}"


def test_a_wrong_token(cli, pulse):
    line = one_line_error(cli("alerts", key="pk_live_not_a_real_token"))
    assert line == f"Error: Token rejected by {pulse.url}: Invalid API token. {REJECTED}"


def test_a_token_without_the_scope(cli, pulse):
    _token, raw = pulse.issue_token(["ingest"])
    assert one_line_error(cli("costs", key=raw)) == "Error: Not allowed: This API token lacks the 'read' scope."


def test_a_project_the_token_cannot_see(cli, pulse):
    line = one_line_error(cli("--project", str(pulse.personas.other_project.uuid), "costs"))
    assert line.startswith("Error: Not found: ") and "/api/v1/costs/summary" in line


def test_a_server_that_is_not_running(cli):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(cli("costs", base_url=url))
    assert line == (
        f"Error: Cannot reach Pulse at {url}: the connection was refused (is the server running on that port?). "
        "Set the server with --base-url or PULSE_BASE_URL."
    )


def test_a_host_name_that_does_not_resolve(cli):
    line = one_line_error(cli("costs", base_url="http://pulse.invalid"))
    assert line.startswith("Error: Cannot reach Pulse at http://pulse.invalid: its host name does not resolve")


def test_a_server_that_is_not_pulse(cli, fake_server):
    url = fake_server(200, b"<html>Welcome to nginx</html>", "text/html")
    line = one_line_error(cli("costs", base_url=url))
    assert line == (
        f"Error: {url} answered GET /api/v1/costs/summary with 200 text/html, not Pulse's JSON: "
        "is it the right server (--base-url, PULSE_BASE_URL)?"
    )


def test_a_server_error_after_the_retries(cli, fake_server):
    url = fake_server(502, b"<html>Bad gateway</html>", "text/html")
    line = one_line_error(cli("budgets", base_url=url))
    assert line == (
        f"Error: Pulse at {url} failed with 502 Bad Gateway (GET /api/v1/budgets); try again later."
    )


def test_reads_are_retried_on_server_errors_and_writes_only_when_idempotent(fake_server):
    url = fake_server(503, b'{"detail": "busy"}', "application/json")
    waits: list[float] = []
    api = PulseAPI("pk_x", url, max_attempts=3, sleep=waits.append)
    with pytest.raises(ServerError):
        api.get("/api/v1/budgets")
    assert len(waits) == 2  # three attempts
    waits.clear()
    with pytest.raises(ServerError):
        api.post("/api/v1/benchmarks/runs", {"target": "x"})
    assert waits == []  # a plain write is sent once


def test_a_file_that_does_not_exist(cli, tmp_path):
    missing = tmp_path / "nope.jsonl"
    line = one_line_error(cli("events", "import", str(missing)))
    assert line == f"Error: Cannot read {missing}: No such file or directory."


def test_a_csv_nobody_knows(cli, tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("date,amount\n2026-01-01,3\n")
    line = one_line_error(cli("events", "import", str(path)))
    assert line.startswith(f"Error: {path}: Unknown CSV columns 'date', 'amount': use Pulse's field names")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["costs", "--range", "1y"], "Error: Invalid value for '--range': '1y' is not one of '7d', '30d', '90d'. (see `pulse costs --help`)"),
        (["costs", "--from", "2026-01-01"], "Error: Give both --from and --to. (see `pulse costs --help`)"),
        (["costs", "--frobnicate"], "Error: No such option '--frobnicate'. (see `pulse costs --help`)"),
        (["--project", "acme", "costs"], "Error: The project 'acme' (--project) is not a project UUID."),
        (["events", "send", "--provider", "openai"], "Error: Missing option '--model'. (see `pulse events send --help`)"),
        (["events", "send", "--provider", "o", "--model", "m", "--tag", "nokey"],
         "Error: Invalid value for --tag: 'nokey': write a tag as key=value, e.g. feature=search. (see `pulse events send --help`)"),
        (["nonsense"], "Error: No such command 'nonsense'. (see `pulse --help`)"),
    ],
)
def test_a_bad_option(cli, args, message):
    assert one_line_error(cli(*args), code=2) == message


def test_the_installed_command_fails_in_one_line_too(pulse):
    result = run_pulse("--base-url", pulse.url, "costs")
    assert one_line_error(result) == "Error: Not logged in: run `pulse login` or set PULSE_API_KEY."


def test_a_reader_that_leaves_early_is_no_error(pulse):
    """`pulse costs | true`: the pipe is closed before the table is written; nothing to say about it."""
    command = f"'{PULSE_BIN}' --base-url {pulse.url} --api-key {pulse.ingest_key} costs --range 90d --by day | true"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert "Error" not in result.stderr and "Exception" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_server_that_never_answers():
    """Connected, but silent: the timeout, named, rather than a hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection (the backlog), never reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        api = PulseAPI("pk_x", url, timeout=0.3, max_attempts=1)
        with pytest.raises(Unreachable) as caught:
            api.get("/api/v1/me")
    assert str(caught.value) == f"Cannot reach Pulse at {url}: no answer within 0.3 s. Set the server with --base-url or PULSE_BASE_URL."
