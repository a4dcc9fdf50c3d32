"""`pulse events import FILE` and `pulse events send`.

The importer streams the file (`importing.py` reads it), sends its events through
`POST /api/v1/events/batch` (up to 1,000 a request, retried on connection errors, 429 and 5xx:
every event carries an idempotency key, so a retry never counts twice), and reports accepted /
duplicate / rejected with the line number and reasons of each rejected line. Killed half-way,
the same command run again sends everything again and the server acknowledges what it already
has as duplicates: each line is counted exactly once.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import click

from ..api import ApiError, NotJSON, PulseAPI, bad_request
from .importing import MAPPINGS, FileFormatError, Line, guess_format, open_lines
from .output import Progress, money, note, number, out, paint, warn
from .session import CliError, Session

EXIT_REJECTED = 3  # the import finished, but some lines were rejected
BATCH_PATH = "/api/v1/events/batch"


@click.group()
def events() -> None:
    """Send events to Pulse: one (`send`) or a whole file (`import`)."""


# ------------------------------------------------------------------ import


@dataclass
class Tally:
    lines: int = 0  # lines with something on them (events, an error, or skipped)
    events: int = 0  # events read (sent unless --dry-run)
    accepted: int = 0
    duplicates: int = 0
    rejected_events: int = 0
    rejected_lines: int = 0
    skipped_lines: int = 0
    shown: list[tuple[int, list[str]]] = field(default_factory=list)  # the first rejected lines, for the summary
    last_line: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "events": self.events, "accepted": self.accepted, "duplicates": self.duplicates,
            "rejected_lines": self.rejected_lines, "rejected_events": self.rejected_events,
            "skipped_lines": self.skipped_lines,
            "errors": [{"line": line, "reasons": reasons} for line, reasons in sorted(self.shown)],
        }


class Importer:
    """Batches the lines' events, sends them, and keeps the tally."""

    def __init__(self, api: PulseAPI | None, batch_size: int, tally: Tally, errors_file: IO[str] | None, show: int) -> None:
        self.api = api
        self.batch_size = batch_size
        self.tally = tally
        self.errors_file = errors_file
        self.show = show
        self.batch: list[dict] = []
        self.owners: list[Line] = []  # the line each event of the batch came from

    def add(self, line: Line) -> None:
        tally = self.tally
        tally.lines += 1
        tally.last_line = line.number
        if line.error is not None:
            self.reject(line.number, [line.error])
            return
        if line.skipped is not None:
            tally.skipped_lines += 1
            return
        for event in line.events:
            tally.events += 1
            if self.api is None:
                continue
            self.batch.append(event)
            self.owners.append(line)
            if len(self.batch) >= self.batch_size:
                self.flush()

    def run(self, lines: Iterator[Line], progress: Progress, position: Callable[[], int] | None) -> BaseException | None:
        """Reads every line and sends its events; returns what stopped it early (Ctrl-C, or an
        error after some batches went through), if anything."""
        tally = self.tally
        try:
            for line in lines:
                self.add(line)
                if progress.enabled:
                    progress.update(position() if position else tally.lines, (
                        f"{number(tally.lines)} lines · {number(tally.accepted)} new · "
                        f"{number(tally.duplicates)} dup · {number(tally.rejected_lines)} rejected"))
            self.flush()
        except KeyboardInterrupt as interrupt:
            return interrupt
        except ApiError as error:
            if not (tally.accepted or tally.duplicates or tally.rejected_events):
                raise  # nothing went through: the error alone says it
            return error  # some batches did: the summary says what they did, then the error why it stopped
        finally:
            progress.close()
        return None

    def _batch_result(self, api: PulseAPI, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The answer's errors, once the answer is checked to be a batch result about this batch
        (else the counts and line numbers of the summary would be made up): NotJSON if not."""
        errors = data.get("errors")
        counts = [data.get("accepted"), data.get("duplicates") or 0]
        if (
            not isinstance(errors, list)
            or not all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in counts)
            or not all(
                isinstance(error, dict) and isinstance(error.get("index"), int) and 0 <= error["index"] < len(self.batch)
                for error in errors
            )
        ):
            raise NotJSON(f"{api.base_url} answered {BATCH_PATH} with something that is not a batch result: "
                          "is it the right server (--base-url, PULSE_BASE_URL)?")
        return errors

    def reject(self, line_number: int, reasons: list[str], events: int = 0) -> None:
        self.tally.rejected_lines += 1
        self.tally.rejected_events += events
        if len(self.tally.shown) < self.show:
            self.tally.shown.append((line_number, reasons))
        if self.errors_file is not None:
            self.errors_file.write(json.dumps({"line": line_number, "reasons": reasons}, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        if not self.batch or self.api is None:
            return
        api = self.api
        answer = api.request(
            "POST", BATCH_PATH, params=api.project_params(), json={"events": self.batch}, idempotent=True, accept=(400,),
        )
        data = answer.data if isinstance(answer.data, dict) else {}
        if answer.status == 400 and "errors" not in data:  # the request itself, not its events
            raise bad_request(data)
        errors = self._batch_result(api, data)
        self.tally.accepted += data["accepted"]
        self.tally.duplicates += data.get("duplicates") or 0
        by_line: dict[int, list[str]] = {}
        events_of: dict[int, int] = {}
        for error in errors:
            line = self.owners[error["index"]]
            message = str(error.get("message") or "")
            reason = f"{error['field']}: {message}" if error.get("field") else message
            reasons = by_line.setdefault(line.number, [])
            if reason not in reasons:
                reasons.append(reason)
            events_of[line.number] = events_of.get(line.number, 0) + 1
        for line_number, reasons in by_line.items():
            self.reject(line_number, reasons, events_of[line_number])
        self.batch, self.owners = [], []


def _open(path: str) -> tuple[IO[bytes], int | None, str]:
    """The file as bytes, its size when known (for the progress bar), and its first bytes."""
    if path == "-":
        stream = sys.stdin.buffer
        if not hasattr(stream, "peek"):  # e.g. a BytesIO standing in for stdin
            stream = io.BufferedReader(stream)
        return stream, None, stream.peek(64)[:64]
    try:
        stream = open(path, "rb")  # noqa: SIM115 (closed by the command)
        status = os.fstat(stream.fileno())
        # Peeked, not read and sought back: FILE may be a pipe (`<(zcat usage.jsonl.gz)`, a FIFO).
        head = stream.peek(64)[:64]
    except OSError as error:
        raise CliError(f"Cannot read {path}: {error.strerror or error}.") from None
    size = status.st_size if stat.S_ISREG(status.st_mode) else 0
    return stream, size or None, head


def _plural(count: int, word: str) -> str:
    return f"{number(count)} {word}{'' if count == 1 else 's'}"


def _summary(path: str, tally: Tally, *, dry_run: bool, interrupted: bool) -> None:
    name = "stdin" if path == "-" else path
    if dry_run:
        out(f"Dry run of {name}: {_plural(tally.lines, 'line')}, {_plural(tally.events, 'event')} to send (nothing sent).")
        rows = [("unreadable", _plural(tally.rejected_lines, "line"))]
    else:
        out(f"{'Interrupted' if interrupted else 'Imported'} {name}: {_plural(tally.lines, 'line')}, {_plural(tally.events, 'event')}.")
        rejected = _plural(tally.rejected_lines, "line")
        if tally.rejected_events:
            rejected += f" ({_plural(tally.rejected_events, 'event')})"
        rows = [("accepted", number(tally.accepted)), ("duplicate", number(tally.duplicates)), ("rejected", rejected)]
    if tally.skipped_lines:
        rows.append(("skipped", f"{_plural(tally.skipped_lines, 'line')} with nothing to import"))
    size = max(len(value.split(" ")[0]) for _, value in rows)
    for label, value in rows:
        count, _, rest = value.partition(" ")
        out(f"  {label:<10} {count.rjust(size)}{' ' + rest if rest else ''}")
    if tally.shown:
        out(paint("Unreadable lines:" if dry_run else "Rejected lines:", bold=True))
        for line, reasons in sorted(tally.shown):
            out(f"  line {line}: {'; '.join(reasons)}")
        hidden = tally.rejected_lines - len(tally.shown)
        if hidden > 0:
            out(f"  … and {number(hidden)} more (--errors FILE writes them all).")


@events.command("import")
@click.argument("file", metavar="FILE")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the name (.jsonl, .ndjson, .json, .csv), else the first byte.")
@click.option("--mapping", type=click.Choice(MAPPINGS), default="auto", show_default=True,
              help="CSV columns: Pulse's field names, or an OpenAI or Anthropic usage export (auto: told by the header).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True, help="Events per request.")
@click.option("--dry-run", is_flag=True, help="Read and check the file; send nothing (no token needed).")
@click.option("--errors", "errors_path", metavar="FILE", help="Write every rejected line to FILE (JSON lines: line, reasons).")
@click.option("--show-errors", type=click.IntRange(0), default=20, show_default=True, help="Rejected lines listed in the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def import_(
    session: Session, file: str, fmt: str | None, mapping: str, batch_size: int, dry_run: bool,
    errors_path: str | None, show_errors: int, as_json: bool,
) -> None:
    """Import events from FILE (`-` for stdin): JSONL (one event per line) or CSV with a header.

    \b
    Fields are Pulse's (provider, model, input_tokens, output_tokens, cached_tokens, cost_usd,
    timestamp, tags, …; in CSV also tag:KEY columns). CSV exports of OpenAI's usage dashboard
    and Anthropic's Console are recognised by their header. Each line gets an idempotency key
    derived from its content, so importing a file again (say, after a crash) counts nothing
    twice. `source` is "import".

    \b
    Exit codes: 0 every line imported (or a duplicate); 3 finished, but some lines were
    rejected (listed with their reasons); 1 the import failed (file, token, server).
    """
    stream, size, head = _open(file)
    with _closing(stream, file != "-"), _errors_file(errors_path) as errors_file:
        fmt = fmt or guess_format(file, head)
        if fmt == "jsonl" and mapping not in ("auto", "pulse"):
            raise click.UsageError(f"--mapping {mapping} is for CSV files.")
        tally = Tally()
        progress = Progress(size, label="Importing")
        api = None if dry_run else session.api(on_retry=lambda why, wait: progress.update(
            progress.done, f"retrying in {wait:.1f} s ({why})", force=True))
        importer = Importer(api, batch_size, tally, errors_file, show_errors)
        try:
            stopped_by = importer.run(open_lines(stream, fmt, mapping), progress, stream.tell if size else None)
        except FileFormatError as error:
            raise CliError(f"{file}: {error}") from None
    _report(file, tally, dry_run=dry_run, stopped_by=stopped_by, as_json=as_json)


@contextmanager
def _closing(stream: IO[bytes], close: bool) -> Iterator[None]:
    try:
        yield
    finally:
        if close:
            stream.close()


@contextmanager
def _errors_file(path: str | None) -> Iterator[IO[str] | None]:
    if not path:
        yield None
        return
    try:
        stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise CliError(f"Cannot write {path}: {error.strerror or error}.") from None
    with stream:
        yield stream


def _report(file: str, tally: Tally, *, dry_run: bool, stopped_by: BaseException | None, as_json: bool) -> None:
    """The summary, then the exit code: 1 an error stopped it, 130 Ctrl-C, 3 lines rejected."""
    if as_json:
        out(json.dumps({"file": file, "dry_run": dry_run, "interrupted": stopped_by is not None, **tally.as_dict()}, indent=2))
    else:
        _summary(file, tally, dry_run=dry_run, interrupted=stopped_by is not None)
    if isinstance(stopped_by, ApiError):
        raise CliError(f"{stopped_by.message} Stopped after line {tally.last_line}: run the same command again to "
                       "finish; what was already sent is not counted twice.")
    if stopped_by is not None:
        warn(f"Stopped after line {tally.last_line}. Run the same command again to finish: what was already "
             "sent is recognised and not counted twice.")
        sys.exit(130)
    if tally.rejected_lines:
        raise click.exceptions.Exit(EXIT_REJECTED)


# ------------------------------------------------------------------ send


def _tag(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r}: write a tag as key=value, e.g. feature=search.", param_hint="--tag")
        tags[key.strip()] = text.strip()
    return tags


def _timestamp(value: str | None) -> Any:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return value  # ISO 8601; the server says if it is not
    return seconds if math.isfinite(seconds) else value  # "nan" is no JSON number: the server refuses the text


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange lets NaN and infinity through (they compare false), and no JSON carries them."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.")
    return value


@events.command("send")
@click.option("--provider", required=True, help="e.g. openai, anthropic.")
@click.option("--model", required=True, help="The model name as sent to the provider.")
@click.option("--input-tokens", type=click.IntRange(0), help="Every prompt token, cached ones included.")
@click.option("--output-tokens", type=click.IntRange(0))
@click.option("--cached-tokens", type=click.IntRange(0), help="Part of the input read from the provider's cache.")
@click.option("--reasoning-tokens", type=click.IntRange(0), help="Part of the output.")
@click.option("--cost-usd", metavar="DECIMAL", help="The cost, if you know it; else Pulse prices it.")
@click.option("--latency-ms", type=click.FloatRange(0), callback=_finite)
@click.option("--ttft-ms", type=click.FloatRange(0), callback=_finite, help="Time to the first token.")
@click.option("--status-code", type=click.IntRange(100, 599))
@click.option("--failed", is_flag=True, help="The call failed (default: it succeeded unless --status-code ≥ 400).")
@click.option("--timestamp", metavar="ISO|UNIX", help="When the call happened (default: now).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag; repeat for more.")
@click.option("--end-user", help="Who the call was made for.")
@click.option("--endpoint", type=click.Choice(["chat", "embeddings", "messages", "other"]))
@click.option("--streamed", is_flag=True)
@click.option("--idempotency-key", metavar="KEY", help="Sending the same key again is acknowledged, never counted twice (default: a new one).")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.pass_obj
def send(session: Session, provider: str, model: str, cost_usd: str | None, failed: bool, timestamp: str | None,
         tags: tuple[str, ...], idempotency_key: str | None, streamed: bool, as_json: bool, **counts: Any) -> None:
    """Record one LLM call; prints its id, its cost and whether it was a duplicate."""
    event: dict[str, Any] = {"provider": provider, "model": model}
    event.update({name: value for name, value in counts.items() if value is not None})
    if cost_usd is not None:
        try:
            Decimal(cost_usd)
        except InvalidOperation:
            raise click.BadParameter(f"{cost_usd!r} is not a decimal number.", param_hint="--cost-usd") from None
        event["cost_usd"] = cost_usd
    if failed:
        event["success"] = False
    if streamed:
        event["streamed"] = True
    if timestamp is not None:
        event["timestamp"] = _timestamp(timestamp)
    if tags:
        event["tags"] = _tag(tags)
    # A key of our own makes the request safe to retry: a lost answer cannot record it twice.
    event["idempotency_key"] = idempotency_key or f"cli-{uuid.uuid4()}"
    api = session.api()
    answer = api.post("/api/v1/events", event, params=api.project_params(), idempotent=True)
    if as_json:
        out(json.dumps(answer, indent=2))
        return
    cost = money(answer["cost_usd"]) if answer.get("cost_usd") is not None else "no price known for this model"
    state = "a duplicate: already recorded, not counted again" if answer.get("duplicate") else "new"
    out(f"Recorded {answer['id']}: {cost} ({state}).")
    if answer.get("cost_usd") is None:
        note(f"Pulse has no price for {provider}/{model}; the event is kept unpriced and priced once one is known.")
