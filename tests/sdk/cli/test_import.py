"""`pulse events import`: JSONL and CSV files with bad lines give an exact summary (accepted /
duplicate / rejected, each rejected line with its number and the server's reasons); importing
again counts nothing twice; an importer killed half-way and run again leaves every line in the
database exactly once; the OpenAI and Anthropic usage exports are mapped as documented."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import ApiToken
from costs.models import CostEvent

from .conftest import PULSE_BIN, one_line_error

GOOD = '{"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 50, "cost_usd": "0.001"}'
JSONL = "\n".join([
    GOOD,
    '{"provider": "anthropic", "model": "claude-haiku", "input_tokens": 7, "tags": {"feature": "search"}}',
    '{"provider": "openai", "model": ',
    "",
    "[1, 2]",
    '{"provider": "openai", "model": "gpt-4o", "input_tokens": -5}',
    '{"provider": "openai", "model": "gpt-4o", "colour": "red"}',
    GOOD,  # the same call twice is two calls
    '{"provider": "openai", "model": "gpt-4o", "idempotency_key": "own-key-1"}',
]) + "\n"
JSONL_REJECTED = [
    "  line 3: not valid JSON (Expecting value at column 33)",
    "  line 5: not a JSON object (a list)",
    "  line 6: input_tokens: Must be between 0 and 1,000,000,000.",
    "  line 7: colour: Unknown field.",
]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "calls.jsonl"
    path.write_text(JSONL)
    return path


def test_a_jsonl_file_with_bad_lines(cli, pulse, jsonl):
    result = cli("events", "import", str(jsonl))

    assert result.exit_code == 3, result.stderr
    assert result.stdout.splitlines() == [
        f"Imported {jsonl}: 8 lines, 6 events.",
        "  accepted   4",
        "  duplicate  0",
        "  rejected   4 lines (2 events)",
        "Rejected lines:",
        *JSONL_REJECTED,
    ]
    events = pulse.events()
    assert events.count() == 4
    assert set(events.values_list("source", flat=True)) == {"import"}
    keys = sorted(events.values_list("idempotency_key", flat=True))
    assert keys[-1] == "own-key-1"
    assert [key.rsplit("-", 1)[1] for key in keys[:3] if key.startswith("import-")].count("2") == 1
    assert events.filter(model="gpt-4o-mini").count() == 2


def test_importing_again_counts_nothing_twice(cli, pulse, jsonl):
    cli("events", "import", str(jsonl))

    again = cli("events", "import", str(jsonl))

    assert again.exit_code == 3
    assert again.stdout.splitlines()[1:4] == ["  accepted   0", "  duplicate  4", "  rejected   4 lines (2 events)"]
    assert pulse.events().count() == 4


def test_keys_come_from_the_content_not_the_file(cli, pulse, jsonl, tmp_path):
    """The first line's event, written differently in another file, is the same event."""
    cli("events", "import", str(jsonl))
    other = tmp_path / "other.jsonl"
    other.write_text('{"cost_usd":"0.001","output_tokens":50,"input_tokens":100,"model":"gpt-4o-mini","provider":"openai"}\n')

    result = cli("events", "import", str(other))

    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:4] == ["  accepted   0", "  duplicate  1", "  rejected   0 lines"]
    assert pulse.events().count() == 4


CSV = (
    "provider,model,input_tokens,output_tokens,cost_usd,success,tag:feature\n"
    "openai,gpt-4o-mini,100,50,0.001,true,search\n"
    "anthropic,claude-haiku,200,,,,\n"
    "openai,gpt-4o-mini,1,2\n"
    "openai,gpt-4o-mini,abc,1,,,\n"
    '"openai","gpt-4o",3,4,0.5,false,"chat, with a comma"\n'
)


def test_a_csv_file_with_bad_lines(cli, pulse, tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text(CSV)

    result = cli("events", "import", str(path))

    assert result.exit_code == 3, result.stderr
    assert result.stdout.splitlines() == [
        f"Imported {path}: 5 lines, 4 events.",
        "  accepted   3",
        "  duplicate  0",
        "  rejected   2 lines (1 event)",
        "Rejected lines:",
        "  line 4: 4 columns where the header has 7",
        "  line 5: input_tokens: Must be a whole number.",
    ]
    rows = {(e.model, e.input_tokens, e.output_tokens, e.success, e.tags.get("feature")) for e in pulse.events()}
    assert rows == {
        ("gpt-4o-mini", 100, 50, True, "search"), ("claude-haiku", 200, 0, True, None),
        ("gpt-4o", 3, 4, False, "chat, with a comma"),
    }
    again = cli("events", "import", str(path))
    assert again.stdout.splitlines()[1:3] == ["  accepted   0", "  duplicate  3"]
    assert pulse.events().count() == 3


def test_errors_file_and_json_summary(cli, pulse, jsonl, tmp_path):
    errors = tmp_path / "rejected.jsonl"

    result = cli("events", "import", str(jsonl), "--errors", str(errors), "--show-errors", "1", "--json")

    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("lines", "events", "accepted", "duplicates", "rejected_lines", "rejected_events")} == {
        "lines": 8, "events": 6, "accepted": 4, "duplicates": 0, "rejected_lines": 4, "rejected_events": 2,
    }
    assert summary["errors"] == [{"line": 3, "reasons": ["not valid JSON (Expecting value at column 33)"]}]
    written = [json.loads(line) for line in errors.read_text().splitlines()]
    assert sorted(entry["line"] for entry in written) == [3, 5, 6, 7]
    assert {"line": 7, "reasons": ["colour: Unknown field."]} in written


def test_only_the_first_rejected_lines_are_listed(cli, jsonl):
    result = cli("events", "import", str(jsonl), "--show-errors", "2")
    assert result.stdout.splitlines()[-3:] == [*JSONL_REJECTED[:2], "  … and 2 more (--errors FILE writes them all)."]


def test_a_dry_run_sends_nothing_and_needs_no_token(cli, pulse, jsonl):
    result = cli("events", "import", str(jsonl), "--dry-run", key=None)

    assert result.exit_code == 3
    assert result.stdout.splitlines() == [
        f"Dry run of {jsonl}: 8 lines, 6 events to send (nothing sent).",
        "  unreadable 2 lines",
        "Unreadable lines:",
        *JSONL_REJECTED[:2],
    ]
    assert pulse.events().count() == 0


def test_stdin(cli, pulse):
    result = cli("events", "import", "-", input=GOOD + "\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Imported stdin: 1 line, 1 event."
    assert pulse.events().count() == 1


def test_an_organization_wide_token_needs_a_project(cli, pulse, jsonl):
    token, raw = pulse.issue_token(["ingest", "read"])
    ApiToken.objects.filter(pk=token.pk).update(project=None)

    line = one_line_error(cli("events", "import", str(jsonl), key=raw))
    assert line == ("Error: Refused: project: Name the project (?project=<uuid>) "
                    "(an organization-wide token: pass --project UUID or set PULSE_PROJECT).")

    ok = cli("--project", str(pulse.project.uuid), "events", "import", str(jsonl), key=raw)
    assert ok.exit_code == 3 and pulse.events().count() == 4


# ------------------------------------------------------------------ a crash half-way


def test_an_import_killed_half_way_and_run_again_stores_each_line_once(pulse, tmp_path):
    lines = 3000
    path = tmp_path / "big.jsonl"
    with path.open("w") as stream:
        for number in range(lines):
            stream.write(json.dumps({"provider": "openai", "model": "gpt-4o-mini", "input_tokens": number, "output_tokens": 1}) + "\n")
    command = [str(PULSE_BIN), "--base-url", pulse.url, "--api-key", pulse.ingest_key, "events", "import", str(path), "--batch-size", "50"]

    importer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while pulse.events().count() < 500:
        assert importer.poll() is None, importer.communicate()
        assert time.monotonic() < deadline, "the importer never got going"
        time.sleep(0.01)
    importer.send_signal(signal.SIGKILL)
    importer.wait(timeout=10)
    stored_before = pulse.events().count()
    assert 500 <= stored_before < lines, "killed mid-run, or the test means nothing"

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert again.returncode == 0, again.stderr
    summary = again.stdout.splitlines()
    assert summary[0] == f"Imported {path}: 3,000 lines, 3,000 events."
    accepted = int(summary[1].split()[-1].replace(",", ""))
    duplicates = int(summary[2].split()[-1].replace(",", ""))
    assert duplicates >= stored_before - 50 * 2  # what the killed run stored (give or take its batch in flight)
    assert accepted + duplicates == lines
    assert pulse.events().count() == lines
    assert sorted(pulse.events().values_list("input_tokens", flat=True)) == list(range(lines))


def test_an_interrupted_import_says_how_to_finish(pulse, tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"provider": "openai", "model": "m", "input_tokens": n}) + "\n" for n in range(4000)))
    importer = subprocess.Popen(
        [str(PULSE_BIN), "--base-url", pulse.url, "--api-key", pulse.ingest_key, "events", "import", str(path), "--batch-size", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while pulse.events().count() < 100:
        assert importer.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    importer.send_signal(signal.SIGINT)
    out, err = importer.communicate(timeout=30)

    assert importer.returncode == 130
    assert out.startswith(f"Interrupted {path}: ") and "Traceback" not in err
    assert "Run the same command again to finish" in err


# ------------------------------------------------------------------ provider exports


def bucket(days_ago: int) -> tuple[int, str]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    return int(start.timestamp()), start.isoformat()


def test_an_openai_usage_export(cli, pulse, tmp_path):
    """The usage dashboard's export (completions): a bucket of N requests is N events."""
    header = ("start_time,end_time,start_time_iso,end_time_iso,project_id,num_model_requests,user_id,api_key_id,model,"
              "batch,service_tier,input_tokens,output_tokens,input_cached_tokens,input_uncached_tokens,input_text_tokens,"
              "output_text_tokens,input_cached_text_tokens,input_audio_tokens,input_cached_audio_tokens,"
              "output_audio_tokens,input_image_tokens,input_cached_image_tokens,output_image_tokens")
    (s1, iso1), (s2, iso2), (s3, iso3) = bucket(3), bucket(2), bucket(1)
    rows = [
        f"{s1},{s1 + 86400},{iso1},,proj_abc,10.0,user-1,key_1,gpt-4o-2024-08-06,FALSE,default,59200.0,10646.0,5760.0,53440.0,53440.0,10646.0,5760.0,0.0,0.0,0.0,0.0,0.0,0.0",
        f"{s2},{s2 + 86400},{iso2},,proj_abc,1.0,user-1,key_1,gpt-4o-mini,TRUE,default,5783.0,16000.0,0.0,5783.0,5783.0,16000.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
        f"{s3},{s3 + 86400},{iso3},,,,,,,,,,,,,,,,,,,,,",  # a day without usage
    ]
    path = tmp_path / "openai-usage.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")

    result = cli("events", "import", str(path))

    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"Imported {path}: 3 lines, 11 events.",
        "  accepted   11",
        "  duplicate   0",
        "  rejected    0 lines",
        "  skipped     1 line with nothing to import",
    ]
    gpt4o = pulse.events().filter(provider="openai", model="gpt-4o-2024-08-06")
    assert gpt4o.count() == 10
    assert sum(gpt4o.values_list("input_tokens", flat=True)) == 59200
    assert sum(gpt4o.values_list("output_tokens", flat=True)) == 10646
    assert sum(gpt4o.values_list("cached_tokens", flat=True)) == 5760
    assert sorted(set(gpt4o.values_list("output_tokens", flat=True))) == [1064, 1065]
    event = gpt4o.first()
    assert event.occurred_at == datetime.fromtimestamp(s1, UTC)
    assert event.tags == {"openai_project": "proj_abc", "openai_api_key": "key_1", "openai_user": "user-1",
                          "service_tier": "default", "batch": "false"}
    assert (event.source, event.token_count_source) == ("import", "usage")
    assert cli("events", "import", str(path)).stdout.splitlines()[1:3] == ["  accepted    0", "  duplicate  11"]
    assert pulse.events().count() == 11


def test_an_anthropic_console_export(cli, pulse, tmp_path):
    header = ("usage_date_utc,model_version,api_key,workspace,usage_type,context_window,usage_input_tokens_no_cache,"
              "usage_input_tokens_cache_write_5m,usage_input_tokens_cache_write_1h,usage_input_tokens_cache_read,"
              "usage_output_tokens,web_search_count,inference_geo,speed")
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    path = tmp_path / "anthropic.csv"
    path.write_text(
        f"{header}\n"
        f"{day},claude-sonnet-4-20250514,ci-key,Default,standard,≤ 200k,100000,2000,0,50000,5000,10,not_available,\n"
        f"{day} 15:00,claude-haiku-4-5-20251001,ci-key,Default,standard,≤ 200k,50000,0,0,0,2000,0,not_available,\n"
        f"{day},claude-haiku-4-5-20251001,other,Default,standard,≤ 200k,lots,0,0,0,2000,0,not_available,\n"
    )

    result = cli("events", "import", str(path))

    assert result.exit_code == 3
    assert result.stdout.splitlines()[1:] == [
        "  accepted   2", "  duplicate  0", "  rejected   1 line", "Rejected lines:",
        "  line 4: usage_input_tokens_no_cache: 'lots' is not a number",
    ]
    sonnet = pulse.events().get(model="claude-sonnet-4-20250514")
    assert (sonnet.input_tokens, sonnet.cached_tokens, sonnet.output_tokens) == (152000, 50000, 5000)
    assert sonnet.occurred_at.isoformat() == f"{day}T00:00:00+00:00"
    assert sonnet.tags == {"anthropic_api_key": "ci-key", "anthropic_workspace": "Default", "usage_type": "standard"}
    haiku = pulse.events().get(model="claude-haiku-4-5-20251001")
    assert haiku.occurred_at.isoformat() == f"{day}T15:00:00+00:00"


def test_source_is_import_and_the_events_are_priced_by_pulse(cli, pulse, jsonl):
    cli("events", "import", str(jsonl))
    assert CostEvent.objects.filter(project=pulse.project, source="import").count() == 4


def test_an_import_cut_off_by_the_server_says_what_went_through_and_how_to_finish(cli, pulse, tmp_path):
    """The token is revoked part-way (any server-side refusal would do): the batches already
    accepted are summed up, the error follows in one line, and a re-run completes the file."""
    lines = 200
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps({"provider": "openai", "model": "m", "input_tokens": n}) + "\n" for n in range(lines)))
    token, raw = pulse.issue_token(["ingest"])

    def revoke_part_way() -> None:
        deadline = time.monotonic() + 30
        while pulse.events().count() < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        token.revoke(by=pulse.personas.owner)

    revoker = threading.Thread(target=revoke_part_way)
    revoker.start()
    cut = cli("events", "import", str(path), "--batch-size", "5", key=raw)
    revoker.join()

    stored = pulse.events().count()
    assert 20 <= stored < lines
    assert cut.exit_code == 1
    assert cut.stdout.startswith(f"Interrupted {path}: ")
    assert ["accepted", str(stored)] in [line.split() for line in cut.stdout.splitlines()]
    [error] = cut.stderr.splitlines()
    assert error.startswith(f"Error: Token rejected by {pulse.url}: This API token has been revoked.")
    assert error.endswith("run the same command again to finish; what was already sent is not counted twice.")

    again = cli("events", "import", str(path))
    assert again.exit_code == 0
    assert [line.split() for line in again.stdout.splitlines()[1:3]] == [["accepted", str(lines - stored)], ["duplicate", str(stored)]]
    assert pulse.events().count() == lines
