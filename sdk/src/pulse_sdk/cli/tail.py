"""`pulse tail`: new events as they arrive, until Ctrl-C.

"New" means newly stored, whatever the event's own timestamp (an import of last month's usage
shows up too): the events API's cursor, `?received_after=` (indexed by project and receipt
time), lists what was stored since a moment, oldest first; this follows it from the server's
clock at start. Ingestion stamps an event when its request arrives and it becomes visible when
its transaction commits, a moment later, so a batch stamped earlier can appear after one stamped
later: each look re-reads the last `LATE_COMMIT_WINDOW` and skips the ids already shown.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from ..api import PulseAPI
from .output import money, note, number, out, paint
from .session import Session

LATE_COMMIT_WINDOW = timedelta(seconds=5)
PAGE_SIZE = 500


def parse_moment(text: str) -> datetime:
    """The API's ISO 8601 (with "Z"), on Python 3.9 too."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Follower:
    """Reads the events stored since `start`, each once, look after look."""

    def __init__(self, api: PulseAPI, start: datetime, filters: Mapping[str, Any] | None = None) -> None:
        self.api = api
        self.start = start
        self.filters = dict(filters or {})
        self.newest: datetime | None = None
        self.seen: dict[str, datetime] = {}  # id -> received_at, for the window re-read

    def poll(self) -> list[dict]:
        since = self.start if self.newest is None else max(self.start, self.newest - LATE_COMMIT_WINDOW)
        params: dict[str, Any] = {**self.filters, "received_after": since.isoformat(), "page_size": PAGE_SIZE}
        fresh = []
        while True:
            page = self.api.get("/api/v1/events", self.api.project_params(params))["results"]
            for event in page:
                received = parse_moment(event["received_at"])
                if event["id"] not in self.seen:
                    self.seen[event["id"]] = received
                    fresh.append(event)
                if self.newest is None or received > self.newest:
                    self.newest = received
            if len(page) < PAGE_SIZE:
                break
            last = page[-1]  # the next page by cursor, not by number: rows may land in between
            params = {**params, "received_after": last["received_at"], "after_id": last["id"]}
        if self.newest is not None:
            horizon = self.newest - LATE_COMMIT_WINDOW
            self.seen = {key: moment for key, moment in self.seen.items() if moment >= horizon}
        return fresh


def event_line(event: dict) -> str:
    when = event["timestamp"].replace("T", " ")[:19]
    model = f"{event['provider']}/{event['model']}"
    tokens = f"{number(event.get('input_tokens'))}→{number(event.get('output_tokens'))} tok"
    cost = money(event["cost_usd"]) if event.get("cost_usd") is not None else "unpriced"
    latency = f"{event['latency_ms']:,.0f} ms" if event.get("latency_ms") is not None else "– ms"
    if event.get("success", True):
        status = paint(str(event.get("status_code") or "ok"), fg="green")
    else:
        status = paint(str(event.get("status_code") or "failed"), fg="red")
    return f"{when}  {model:<36} {tokens:>20}  {cost:>12}  {latency:>10}  {status}"


@click.command()
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=1.0, show_default=True, help="Seconds between looks.")
@click.option("--provider", help="Only this provider's events.")
@click.option("--model", help="Only this model's events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
@click.pass_obj
def tail(session: Session, interval: float, provider: str | None, model: str | None, as_json: bool) -> None:
    """Print new events as they arrive (time, model, tokens, cost, latency, status) until Ctrl-C."""
    api = session.api()
    try:
        me = api.request("GET", "/api/v1/me")
        start = me.server_time or datetime.now(timezone.utc)
        project = (me.data.get("project") or {}).get("name") or api.project or "every project of the organization"
        filters = {name: value for name, value in (("provider", provider), ("model", model)) if value}
        follower = Follower(api, start, filters)
        note(f"Following new events of {project} (Ctrl-C to stop)…")
        while True:
            for event in follower.poll():
                out(json.dumps(event) if as_json else event_line(event))
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return  # the way to stop: not an error
