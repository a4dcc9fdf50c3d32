"""`pulse events import` and `pulse events send` on input that is valid enough to read but not to
send: a line with NaN or Infinity, a line nested deeper than any event, a file that is a pipe, a
server whose 2xx answer is not a batch result. A bad line is a rejected line (the rest of the
file is imported); a bad answer is a one-line error after the summary, never "Unexpected …"."""

from __future__ import annotations

import json
import os
import threading

import pytest

from .conftest import one_line_error, run_pulse

GOOD = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10}


def jsonl(*items: str) -> str:
    return "".join(item + "\n" for item in items)


@pytest.mark.parametrize("bad", [
    '{"provider": "openai", "model": "m", "latency_ms": NaN}',
    '{"provider": "openai", "model": "m", "latency_ms": -Infinity}',
    '{"provider": "openai", "model": "m", "ttft_ms": 1e400}',
    '{"provider": "openai", "model": "m", "tags": {"a": NaN}}',
])
def test_a_jsonl_line_with_a_number_json_does_not_allow_is_rejected_alone(cli, pulse, tmp_path, bad):
    path = tmp_path / "calls.jsonl"
    path.write_text(jsonl(json.dumps(GOOD), bad, json.dumps({**GOOD, "input_tokens": 11})))

    result = cli("events", "import", str(path))

    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "  line 2: not valid JSON (" in result.stdout
    assert "is not a number JSON allows" in result.stdout
    assert pulse.events().count() == 2


def test_a_csv_cell_that_is_not_a_finite_number_is_refused_by_the_server_for_its_line(cli, pulse, tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text(
        "provider,model,latency_ms,ttft_ms,timestamp,tags\n"
        "openai,gpt-4o-mini,12,,,\n"
        "openai,gpt-4o-mini,nan,,,\n"
        "openai,gpt-4o-mini,,inf,,\n"
        "openai,gpt-4o-mini,,,-Infinity,\n"
        'openai,gpt-4o-mini,,,,"{""a"": NaN}"\n'
        "openai,gpt-4o-mini,13,,,\n"
    )

    result = cli("events", "import", str(path))

    assert result.exit_code == 3, (result.stdout, result.stderr)
    rejected = [line.split(":")[0].strip() for line in result.stdout.splitlines() if line.startswith("  line ")]
    assert rejected == ["line 3", "line 4", "line 5", "line 6"]
    assert pulse.events().count() == 2


@pytest.mark.parametrize("depth", [200, 100_000])
def test_a_line_nested_deeper_than_any_event_is_rejected_alone(cli, pulse, tmp_path, depth):
    path = tmp_path / "calls.jsonl"
    nested = '{"provider": "openai", "model": "m", "tags": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    path.write_text(jsonl(json.dumps(GOOD), nested, "[" * depth + "]" * depth, json.dumps({**GOOD, "input_tokens": 11})))

    result = cli("events", "import", str(path))

    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "  line 2: nested too deeply" in result.stdout
    assert "  line 3: " in result.stdout
    assert pulse.events().count() == 2


@pytest.mark.parametrize("args, message", [
    (["--latency-ms", "nan"], "--latency-ms"),
    (["--ttft-ms", "inf"], "--ttft-ms"),
])
def test_send_refuses_a_number_json_cannot_carry(cli, args, message):
    line = one_line_error(cli("events", "send", "--provider", "openai", "--model", "m", *args), code=2)
    assert message in line and "finite" in line


def test_send_passes_a_timestamp_that_is_not_a_finite_number_to_the_server_to_judge(cli, pulse):
    line = one_line_error(cli("events", "send", "--provider", "openai", "--model", "m", "--timestamp", "nan"))
    assert line.startswith("Error: Refused: timestamp: ")
    assert pulse.events().count() == 0


def test_a_file_that_is_a_pipe(pulse, tmp_path):
    """`pulse events import <(zcat usage.jsonl.gz)`: a FIFO cannot seek back after its first bytes."""
    fifo = tmp_path / "calls.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as stream:
            stream.write(jsonl(json.dumps(GOOD), json.dumps({**GOOD, "input_tokens": 11})))

    writer = threading.Thread(target=write)
    writer.start()
    result = run_pulse("--base-url", pulse.url, "--api-key", pulse.ingest_key, "events", "import", str(fifo), timeout=60)
    writer.join(10)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"Imported {fifo}: 2 lines, 2 events."
    assert pulse.events().count() == 2


@pytest.mark.parametrize("status, body", [
    (202, b'{"accepted": 1, "duplicates": 0, "rejected": 1, "errors": [{"index": 999, "field": "x", "message": "y"}]}'),
    (202, b'{"accepted": "many", "duplicates": 0, "rejected": 0, "errors": []}'),
    (202, b'{"accepted": 1, "errors": ["bad"]}'),
    (202, b'{"accepted": 1, "errors": [{"field": "x"}]}'),
    (202, b"[]"),
    (200, b'{"ok": true}'),
    (400, b'{"accepted": 0, "errors": "all of them"}'),
])
def test_an_answer_that_is_not_a_batch_result_is_a_one_line_error(cli, tmp_path, fake_server, status, body):
    url = fake_server(status, body)
    path = tmp_path / "calls.jsonl"
    path.write_text(jsonl(json.dumps(GOOD), json.dumps({**GOOD, "input_tokens": 11})))

    result = cli("events", "import", str(path), base_url=url)

    assert result.exit_code == 1, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and "Unexpected" not in line, line
    assert "not a batch result" in line or "Refused" in line, line


def test_a_line_longer_than_a_mebibyte_is_rejected_without_reading_it_whole(cli, pulse, tmp_path):
    huge = '{"provider": "openai", "model": "' + "m" * (3 * 1024 * 1024) + '"}'
    path = tmp_path / "calls.jsonl"
    path.write_text(jsonl(json.dumps(GOOD), huge, json.dumps({**GOOD, "input_tokens": 11})))

    result = cli("events", "import", str(path))

    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "  line 2: longer than 1 MiB" in result.stdout
    assert pulse.events().count() == 2


def test_a_csv_row_longer_than_a_mebibyte_is_rejected_alone(cli, pulse, tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text(
        "provider,model,input_tokens\n"
        "openai,gpt-4o-mini,1\n"
        f"openai,{'m' * (2 * 1024 * 1024)},2\n"
        "openai,gpt-4o-mini,3\n"
    )

    result = cli("events", "import", str(path))

    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "  line 3: longer than 1 MiB" in result.stdout
    assert sorted(pulse.events().values_list("input_tokens", flat=True)) == [1, 3]
