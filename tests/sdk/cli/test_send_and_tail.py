"""`pulse events send` (one event: its id, cost, and whether it was a duplicate) and `pulse tail`
(new events as they arrive, backfilled ones included, until Ctrl-C, which exits 0 quietly)."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from pulse_sdk.api import PulseAPI
from pulse_sdk.cli.tail import LATE_COMMIT_WINDOW, Follower

from costs.ingestion import ingest
from costs.models import CostEvent

from .conftest import PULSE_BIN, one_line_error


def test_send_records_one_event(cli, pulse):
    result = cli(
        "events", "send", "--provider", "openai", "--model", "gpt-4o-mini", "--input-tokens", "1200", "--output-tokens",
        "300", "--cost-usd", "0.0042", "--latency-ms", "850", "--tag", "feature=search", "--tag", "team=core",
        "--idempotency-key", "deploy-42",
    )

    assert result.exit_code == 0, result.stderr
    event = pulse.events().get()
    assert result.stdout == f"Recorded {event.uuid}: $0.0042 (new).\n"
    assert (event.input_tokens, event.output_tokens, event.latency_ms, event.idempotency_key) == (1200, 300, 850.0, "deploy-42")
    assert event.tags == {"feature": "search", "team": "core"} and str(event.cost_usd) == "0.0042000000"

    again = cli("events", "send", "--provider", "openai", "--model", "gpt-4o-mini", "--idempotency-key", "deploy-42", "--json")
    assert json.loads(again.stdout) == {"id": str(event.uuid), "duplicate": True, "cost_usd": "0.0042000000"}
    assert pulse.events().count() == 1


def test_send_without_a_price_says_so(cli, pulse):
    result = cli("events", "send", "--provider", "acme", "--model", "homegrown-1", "--input-tokens", "5", "--failed")
    assert result.exit_code == 0
    assert result.stdout.endswith(": no price known for this model (new).\n")
    assert "Pulse has no price for acme/homegrown-1" in result.stderr
    assert pulse.events().get().success is False


def test_send_needs_the_ingest_scope(cli, pulse):
    _token, raw = pulse.issue_token(["read"])
    line = one_line_error(cli("events", "send", "--provider", "openai", "--model", "m", key=raw))
    assert line == "Error: Not allowed: This API token lacks the 'ingest' scope."


def test_send_refused_fields_are_named(cli):
    line = one_line_error(cli("events", "send", "--provider", "openai", "--model", "m", "--timestamp", "2001-01-01T00:00:00Z"))
    assert line == "Error: Refused: timestamp: Is more than 400 days old."


# ------------------------------------------------------------------ tail


def record(pulse, **fields) -> CostEvent:
    item = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1200, "output_tokens": 34, "latency_ms": 850.0} | fields
    result = ingest(pulse.project, [item], token=pulse.ingest_token)
    return CostEvent.objects.get(uuid=result.accepted[0].event_uuid)


def test_tail_prints_new_events_as_they_arrive_until_ctrl_c(pulse):
    earlier = record(pulse, model="before-tail")
    CostEvent.objects.filter(pk=earlier.pk).update(received_at=timezone.now() - timedelta(seconds=30))
    tail = subprocess.Popen(
        [str(PULSE_BIN), "--base-url", pulse.url, "--api-key", pulse.ingest_key, "tail", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    try:
        assert tail.stderr.readline() == "Following new events of Production (Ctrl-C to stop)…\n"
        record(pulse, cost_usd="0.0012")
        backfilled = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)
        record(pulse, model="gpt-4o", timestamp=backfilled.isoformat(), status_code=500, cost_usd="0.5")
        first, second = tail.stdout.readline(), tail.stdout.readline()
    finally:
        tail.send_signal(signal.SIGINT)
        out, err = tail.communicate(timeout=20)

    assert first.endswith("  openai/gpt-4o-mini                           1,200→34 tok       $0.0012      850 ms  ok\n")
    assert first.startswith(datetime.now(UTC).strftime("%Y-%m-%d "))
    assert second.startswith(backfilled.strftime("%Y-%m-%d %H:%M:%S"))  # its own time, months ago
    assert second.rstrip().endswith("$0.50      850 ms  500")
    assert "before-tail" not in first + second + out
    assert tail.returncode == 0 and err == "" and out == ""


def test_tail_json_lines(pulse):
    tail = subprocess.Popen(
        [str(PULSE_BIN), "--base-url", pulse.url, "--api-key", pulse.ingest_key, "tail", "--json", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    try:
        tail.stderr.readline()
        event = record(pulse, tags={"feature": "chat"})
        line = json.loads(tail.stdout.readline())
    finally:
        tail.send_signal(signal.SIGINT)
        tail.communicate(timeout=20)
    assert line["id"] == str(event.uuid) and line["tags"] == {"feature": "chat"}


def test_the_follower_sees_a_late_commit_once(pulse):
    """An event stamped before the newest one seen, but visible only after it (its transaction
    committed later), is still shown, once; re-reads of the window show nothing twice."""
    api = PulseAPI(pulse.ingest_key, pulse.url)
    follower = Follower(api, timezone.now() - timedelta(minutes=1))
    first = record(pulse)
    assert [e["id"] for e in follower.poll()] == [str(first.uuid)]

    late = record(pulse)
    CostEvent.objects.filter(pk=late.pk).update(received_at=first.received_at - LATE_COMMIT_WINDOW / 2)
    assert [e["id"] for e in follower.poll()] == [str(late.uuid)]
    assert follower.poll() == []

    batches = [ingest(pulse.project, [{"provider": "openai", "model": "m"}] * 600, token=pulse.ingest_token) for _ in range(2)]
    seen = follower.poll()  # three pages of 500, read by cursor through two batches of one received_at each
    assert sorted(e["id"] for e in seen) == sorted(str(a.event_uuid) for b in batches for a in b.accepted)
    assert follower.poll() == []


def test_tail_with_a_bad_token_fails_in_one_line(cli, pulse):
    line = one_line_error(cli("tail", key="pk_wrong"))
    assert line.startswith(f"Error: Token rejected by {pulse.url}: Invalid API token.")
