"""The CLI's output and reading helpers, without a server: money and numbers as people read them,
tables aligned whatever the characters, colour and progress only on a terminal (and no colour
under NO_COLOR), and the importer's keys and counters."""

from __future__ import annotations

import io
import os
import pty
import random
import subprocess
from decimal import Decimal

import pytest
from pulse_sdk.cli.importing import (
    KeyMaker,
    Occurrences,
    _split,
    detect_mapping,
    read_csv,
    read_jsonl,
)
from pulse_sdk.cli.output import Progress, money, number, table, width

from .conftest import PULSE_BIN


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0", "$0.00"), ("1234.5", "$1,234.50"), ("0.5", "$0.50"), ("12.345678", "$12.35"), ("0.0012345", "$0.0012"),
        ("0.00000049", "$0.00000049"), ("-3.214", "-$3.21"), ("0.009999", "$0.01"), (None, "–"), ("n/a", "–"),
    ],
)
def test_money(value, shown):
    assert money(value) == shown


def test_numbers_have_thousands_separators():
    assert (number(1234567), number("42"), number(None)) == ("1,234,567", "42", "–")


def test_tables_align_wide_characters_and_colour_codes():
    lines = table(["Name", "Cost"], [["東京", "$1.00"], ["\x1b[31mred\x1b[0m", "$10.00"]], right=[False, True], stream=io.StringIO())
    assert [width(line) for line in lines] == [12, 12, 12, 12]
    assert lines[2] == "東京   $1.00"


class Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_only(monkeypatch):
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(200, label="Importing", stream=stream)
        progress.update(50, "50 lines", force=True)
        progress.close()
    assert pipe.getvalue() == ""
    drawn = terminal.getvalue()
    assert drawn.startswith("\r\x1b[2KImporting ██████░░░░░░░░░░░░░░░░░░  25.0% 50 lines") and drawn.endswith("\r\x1b[2K")


def run_on_a_terminal(*args: str, env: dict[str, str], stream: str = "stdout") -> str:
    """The installed command with its stdout (or stderr) on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    try:
        streams = {"stdout": follower, "stderr": subprocess.PIPE} if stream == "stdout" else {"stdout": subprocess.PIPE, "stderr": follower}
        process = subprocess.run([str(PULSE_BIN), *args], **streams, env={**os.environ, **env}, timeout=30)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.returncode == 0, (process.stdout, process.stderr)
        return b"".join(chunks).decode()
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


def test_colour_only_on_a_terminal_and_never_under_no_color(pulse):
    base = ["--base-url", pulse.url, "--api-key", pulse.ingest_key, "costs"]
    env = {"TERM": "xterm"}
    assert "\x1b[1m" in run_on_a_terminal(*base, env=env)  # the bold header
    os.environ.pop("NO_COLOR", None)
    assert "\x1b[" not in run_on_a_terminal(*base, env={**env, "NO_COLOR": "1"})
    piped = subprocess.run([str(PULSE_BIN), *base], capture_output=True, text=True, env={**os.environ, **env})
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout


# ------------------------------------------------------------------ the importer's pieces


def test_occurrences_count_like_a_dict_through_growth():
    counter, expected = Occurrences(capacity=8), {}
    rng = random.Random(7)
    fingerprints = [rng.getrandbits(64).to_bytes(8, "big") for _ in range(3000)]
    for fingerprint in fingerprints + rng.sample(fingerprints, 500) + [b"\x00" * 8]:
        expected[fingerprint] = expected.get(fingerprint, 0) + 1
        assert counter.add(fingerprint) == expected[fingerprint]


def test_keys_depend_on_content_and_occurrence_only():
    first = list(read_jsonl(io.BytesIO(b'{"model": "m", "provider": "p"}\n\n{"provider":"p","model":"m"}\n'), KeyMaker()))
    elsewhere = list(read_jsonl(io.BytesIO(b'{"x": 1}\n{"provider": "p", "model": "m"}\n'), KeyMaker()))
    keys = [line.events[0]["idempotency_key"] for line in first]
    assert keys[0].endswith("-1") and keys[1] == keys[0][:-1] + "2"
    assert elsewhere[1].events[0]["idempotency_key"] == keys[0]
    assert all(line.events[0]["source"] == "import" for line in first)
    assert len(keys[0]) <= 128 and keys[0].startswith("import-")


def test_a_lines_own_key_is_kept():
    line = next(read_jsonl(io.BytesIO(b'{"provider": "p", "model": "m", "idempotency_key": "mine", "source": "sdk"}\n'), KeyMaker()))
    assert (line.events[0]["idempotency_key"], line.events[0]["source"]) == ("mine", "sdk")


def test_split_shares_out_exactly():
    assert list(_split(10646, 10)) == [1065] * 6 + [1064] * 4
    assert sum(_split(7, 3)) == 7 and list(_split(0, 2)) == [0, 0]


def test_csv_mappings_are_told_by_the_header():
    assert detect_mapping(["usage_date_utc", "model_version", "usage_output_tokens"]) == "anthropic"
    assert detect_mapping(["start_time", "num_model_requests", "model", "input_tokens", "output_tokens"]) == "openai"
    assert detect_mapping(["provider", "model", "tag:feature"]) == "pulse"


def test_csv_records_spanning_lines_keep_their_first_line_number():
    text = 'provider,model,tags\np,m,"{""a"":\n""b""}"\np,m2,\n'
    lines = list(read_csv(io.BytesIO(text.encode()), KeyMaker()))
    assert [(line.number, line.events[0]["model"]) for line in lines] == [(2, "m"), (4, "m2")]
    assert lines[0].events[0]["tags"] == {"a": "b"}


def test_csv_not_utf8_is_reported_by_line():
    lines = list(read_csv(io.BytesIO(b"provider,model\np,m\np,\xff\xfe\n"), KeyMaker()))
    assert [(line.number, line.error) for line in lines] == [(2, None), (3, "not UTF-8 text")]


def test_csv_numbers_are_typed_and_bad_ones_left_to_the_server():
    line = next(read_csv(io.BytesIO(b"provider,model,input_tokens,latency_ms,cost_usd,streamed\np,m,12.0,3.5,0.10,yes\n"), KeyMaker()))
    event = line.events[0]
    assert (event["input_tokens"], event["latency_ms"], event["cost_usd"], event["streamed"]) == (12, 3.5, "0.10", True)
    assert Decimal(event["cost_usd"]) == Decimal("0.1")


def test_the_importers_progress_bar_is_on_stderr_when_it_is_a_terminal(tmp_path):
    path = tmp_path / "calls.jsonl"
    path.write_text('{"provider": "openai", "model": "m"}\n' * 2000)
    drawn = run_on_a_terminal("events", "import", str(path), "--dry-run", env={"TERM": "xterm"}, stream="stderr")
    assert drawn.startswith("\r\x1b[2KImporting ") and "% 1 lines · 0 new · 0 dup · 0 rejected" in drawn
    assert drawn.endswith("\r\x1b[2K")  # cleared before the summary
