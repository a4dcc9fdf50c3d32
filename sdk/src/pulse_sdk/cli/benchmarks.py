"""`pulse benchmarks` (the leaderboard) and `pulse benchmarks run TARGET` (benchmark a private
target now and watch each model's result land).

A run is queued by the server (`POST /benchmarks/runs`) and executed by a worker; this command
follows `GET /benchmarks/runs/{uuid}` until the run ends. When a run of the target is already
going the server says which one (409), and the command follows that one instead of starting a
second.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import click

from ..api import PulseAPI
from .output import (
    Progress,
    can_draw,
    decimal,
    milliseconds,
    money,
    note,
    number,
    out,
    paint,
    table,
)
from .session import CliError, Session

STAT_RANGES = ("24h", "7d", "30d")
ENDED = ("finished", "failed")


@click.group(invoke_without_command=True)
@click.option("--range", "range_", type=click.Choice(STAT_RANGES), default="24h", show_default=True, help="The time window.")
@click.option("--public", is_flag=True, help="The public benchmarks instead of your organization's targets.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's statistics as JSON.")
@click.pass_context
def benchmarks(ctx: click.Context, range_: str, public: bool, as_json: bool) -> None:
    """The benchmark leaderboard (fastest time to first token first).

    `pulse benchmarks run TARGET` benchmarks one of your targets now.
    """
    if ctx.invoked_subcommand is not None:
        return
    api = ctx.find_object(Session).api()
    data = api.get("/api/v1/benchmarks/stats", {"range": range_, "public": "true" if public else "false"})
    if as_json:
        out(json.dumps(data, indent=2))
        return
    models = data.get("models") or []
    which = "Public benchmarks" if public else "Your targets' benchmarks"
    out(paint(f"{which}, last {range_}", bold=True))
    if not models:
        out("No results in this window." + ("" if public else " Try --public, or `pulse benchmarks run TARGET`."))
        return
    rows = []
    for rank, model in enumerate(models, 1):
        tps = decimal(model.get("tps_p50"))
        rows.append([
            str(rank), model["provider_name"], model["model_name"], number(model["samples"]),
            milliseconds(model.get("ttft_p50_ms")), f"{tps:,.1f}" if tps is not None else "–",
            milliseconds(model.get("latency_p50_ms")), f"{model.get('error_rate', 0) * 100:.1f}%",
            money(model.get("blended_mtok_usd")) if model.get("blended_mtok_usd") is not None else "–",
        ])
    headers = ["#", "Provider", "Model", "Samples", "TTFT p50", "tok/s p50", "Latency p50", "Errors", "$/Mtok"]
    for line in table(headers, rows, right=[True, False, False, True, True, True, True, True, True]):
        out(line)


def find_target(api: PulseAPI, wanted: str) -> dict:
    """A target by UUID, or by its name among those the token can see."""
    try:
        return api.get(f"/api/v1/benchmarks/targets/{uuid.UUID(wanted)}")
    except ValueError:
        pass
    targets = list(api.pages("/api/v1/benchmarks/targets"))
    matches = [t for t in targets if t["name"] == wanted] or [t for t in targets if t["name"].lower() == wanted.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        choices = ", ".join(t["uuid"] for t in matches)
        raise CliError(f"{len(matches)} targets are named {wanted!r}; name one by its UUID: {choices}.")
    known = ", ".join(sorted(t["name"] for t in targets)) or "none yet"
    raise CliError(f"No benchmark target named {wanted!r}. Your targets: {known}.")


def result_line(result: dict) -> str:
    ok_mark, fail_mark = ("✓", "✗") if can_draw(sys.stdout) else ("OK", "FAIL")
    name = f"{result['provider_name']} / {result['model_name']}"
    if not result.get("success"):
        status = result.get("status_code")
        reason = " ".join(str(part) for part in (result.get("error_kind"), status) if part)
        return f"{paint(fail_mark, fg='red')} {name}  {reason}: {result.get('error_message', '')}".rstrip(": ")
    tps = decimal(result.get("tps"))
    cost = money(result["cost_usd"]) if result.get("is_priced") and result.get("cost_usd") is not None else "unpriced"
    parts = [
        f"TTFT {milliseconds(result.get('ttft_ms'))}", f"{tps:,.1f} tok/s" if tps is not None else "– tok/s",
        f"latency {milliseconds(result.get('total_latency_ms'))}",
        f"{number(result.get('input_tokens'))}→{number(result.get('output_tokens'))} tokens"
        if result.get("output_tokens") is not None else "",
        cost, str(result.get("status_code") or ""),
    ]
    return f"{paint(ok_mark, fg='green')} {name}  " + "  ".join(part for part in parts if part)


def start_or_join(api: PulseAPI, target: dict) -> str:
    """The run to follow: a new one, or (409) the one already going, if the user wants it."""
    answer = api.request("POST", "/api/v1/benchmarks/runs", json={"target": target["uuid"]}, accept=(409,))
    if answer.status != 409:
        return answer.data["uuid"]
    running = answer.data.get("run") if isinstance(answer.data, dict) else None
    if not running:
        raise CliError(f"A run of {target['name']} was already going and has just ended; run the command again.")
    note(f"A run of {target['name']} is already pending or running ({running}).")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive and not click.confirm("Follow it?", default=True, err=True):
        raise CliError("Not started: a run of this target is already going.")
    if not interactive:
        note("Following that run instead.")
    return running


def follow(api: PulseAPI, run_uuid: str, total: int, *, interval: float, timeout: float, quiet: bool) -> dict:
    """Prints each result as it lands, with a progress bar on stderr; returns the ended run."""
    progress = Progress(total, label="Benchmarking")
    shown: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while True:
            run = api.get(f"/api/v1/benchmarks/runs/{run_uuid}")
            for result in run.get("results") or []:
                if result["uuid"] in shown:
                    continue
                shown.add(result["uuid"])
                if not quiet:
                    progress.clear()
                    out(result_line(result))
            progress.update(len(shown), f"{len(shown)}/{total} {run['status']}", force=True)
            if run["status"] in ENDED:
                return run
            if time.monotonic() >= deadline:
                raise CliError(
                    f"The run is still {run['status']} after {timeout:g} s; it goes on without us: "
                    f"GET /api/v1/benchmarks/runs/{run_uuid}."
                )
            time.sleep(interval)
    finally:
        progress.close()


@benchmarks.command("run")
@click.argument("target")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=0.5, show_default=True, help="Seconds between looks at the run.")
@click.option("--timeout", type=click.FloatRange(1), default=900, show_default=True, help="Give up following after this many seconds.")
@click.option("--no-wait", is_flag=True, help="Start it, print its UUID and return.")
@click.option("--json", "as_json", is_flag=True, help="Print the ended run (with its results) as JSON, nothing live.")
@click.pass_obj
def run(session: Session, target: str, interval: float, timeout: float, no_wait: bool, as_json: bool) -> None:
    """Benchmark TARGET (a target's UUID or name) now, showing each model's result as it lands.

    Exits 1 if the run failed. If a run of the target is already going, follows that one
    (asking first on a terminal).
    """
    api = session.api()
    found = find_target(api, target)
    run_uuid = start_or_join(api, found)
    if no_wait:
        out(run_uuid)
        return
    if not as_json:
        note(f"Run {run_uuid}: {found['name']}, {len(found.get('model_names') or [])} models.")
    ended = follow(api, run_uuid, len(found.get("model_names") or []) or 1, interval=interval, timeout=timeout, quiet=as_json)
    results = ended.get("results") or []
    if as_json:
        out(json.dumps(ended, indent=2))
    else:
        succeeded = sum(1 for r in results if r.get("success"))
        out(f"Run {ended['status']}: {succeeded}/{len(results)} succeeded.")
    if ended["status"] == "failed":
        raise CliError(f"The run failed on the server ({run_uuid}).")
