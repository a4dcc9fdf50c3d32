"""Reading events out of files for `pulse events import`: JSONL, CSV with Pulse's field names,
and two providers' usage exports, each line turned into events with idempotency keys.

Files are read as a stream, line by line, so their size does not matter. A line that cannot be
read (not JSON, not UTF-8, a CSV row of the wrong width) becomes a `Line` with an `error` and
is never sent; everything else is left for the server to judge, so its reasons are the ones
reported.

Idempotency keys are derived from what a line says, not from where it sits: `import-` + a
SHA-256 of the line's event (canonical JSON, so key order and spacing do not matter) + the
occurrence number of that same content in the file (two identical lines are two calls). The
same line in another file, or the same file imported again after a crash, gives the same keys,
so nothing is counted twice. A line's own `idempotency_key` is kept.

Provider exports (columns looked up from real exports; see the README):

- OpenAI, the usage dashboard's export (completions): `start_time, end_time, start_time_iso,
  end_time_iso, project_id, num_model_requests, user_id, api_key_id, model, batch,
  service_tier, input_tokens, output_tokens, input_cached_tokens, …`. A row is a time bucket of
  `num_model_requests` calls; it becomes that many events with the tokens shared out exactly,
  so Pulse's request counts and averages hold. `input_tokens` already includes cached ones, as
  in Pulse.
- Anthropic, the Console's usage export: `usage_date_utc, model_version, api_key, workspace,
  usage_type, context_window, usage_input_tokens_no_cache, usage_input_tokens_cache_write_5m,
  usage_input_tokens_cache_write_1h, usage_input_tokens_cache_read, usage_output_tokens,
  web_search_count, …`. It has no request count: a row becomes one event with its totals.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import IO, Any

SOURCE = "import"
FIELDS = (
    "provider", "model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd",
    "latency_ms", "status_code", "success", "timestamp", "tags", "idempotency_key", "source", "ttft_ms",
    "streamed", "endpoint", "end_user", "token_count_source",
)
INTEGER_FIELDS = {"input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "status_code"}
FLOAT_FIELDS = {"latency_ms", "ttft_ms"}
BOOLEAN_FIELDS = {"success", "streamed"}
TRUE, FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f"}
TAG_PREFIXES = ("tag:", "tags.")
MAPPINGS = ("auto", "pulse", "openai", "anthropic")
# No event nests deeper than an object of tags; a line nested far beyond that is refused here,
# before the server's JSON parser refuses the whole batch it is in (and the import stops).
MAX_DEPTH = 32


@dataclass
class Line:
    """What one line (a CSV record may span several) of the file gave."""

    number: int
    events: list[dict] = field(default_factory=list)
    error: str | None = None  # unreadable: reported, not sent
    skipped: str | None = None  # nothing to import (e.g. an empty usage bucket)


class FileFormatError(Exception):
    """The file as a whole cannot be imported (e.g. a CSV header nobody knows)."""


# ------------------------------------------------------------------ idempotency keys


class Occurrences:
    """How many times each content fingerprint was seen so far in this file, for the keys'
    occurrence numbers. A file of millions of lines must fit: 8-byte fingerprints and 4-byte
    counts in an open-addressing table (~24 bytes a distinct line), not a dict (~100)."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._keys = array("Q", bytes(8 * capacity))
        self._counts = array("I", bytes(array("I").itemsize * capacity))
        self._used = 0

    def add(self, fingerprint: bytes) -> int:
        """Counts one more of `fingerprint`; returns how many there are now (1 the first time)."""
        value = int.from_bytes(fingerprint[:8], "big") or 1  # 0 marks an empty slot
        keys, mask = self._keys, len(self._keys) - 1
        slot = value & mask
        while True:
            held = keys[slot]
            if held == value:
                self._counts[slot] += 1
                return self._counts[slot]
            if held == 0:
                keys[slot] = value
                self._counts[slot] = 1
                self._used += 1
                if self._used * 2 > len(keys):
                    self._grow()
                return 1
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old_keys, old_counts = self._keys, self._counts
        size = len(old_keys) * 2
        self._keys = array("Q", bytes(8 * size))
        self._counts = array("I", bytes(old_counts.itemsize * size))
        mask = size - 1
        for key, count in zip(old_keys, old_counts):  # lazily: no list of a million tuples
            if not key:
                continue
            slot = key & mask
            while self._keys[slot]:
                slot = (slot + 1) & mask
            self._keys[slot], self._counts[slot] = key, count


def canonical(event: dict) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


class KeyMaker:
    """Gives a line's events their idempotency keys and `source`, unless they have their own."""

    def __init__(self) -> None:
        self.occurrences = Occurrences()

    def stamp(self, content: dict, events: list[dict]) -> list[dict]:
        """`content`: what identifies the line (its event, or the provider row it came from);
        `events`: what it becomes (several for a split usage row)."""
        if len(events) == 1 and events[0].get("idempotency_key") is not None:
            events[0].setdefault("source", SOURCE)
            return events
        digest = hashlib.sha256(canonical(content)).digest()
        base = f"import-{digest[:16].hex()}-{self.occurrences.add(digest)}"
        for index, event in enumerate(events):
            event["idempotency_key"] = base if len(events) == 1 else f"{base}-{index + 1}"
            event.setdefault("source", SOURCE)
        return events


# ------------------------------------------------------------------ JSONL


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a number JSON allows")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _too_deep(value: Any) -> bool:
    """Whether `value` nests lists and objects deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            stack.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return False


def strict_json(text: str) -> Any:
    """`json.loads` without what Python accepts but JSON (and the request encoder) does not: NaN,
    Infinity, numbers too large for a float. ValueError says why; nesting beyond MAX_DEPTH
    too ("nested too deeply")."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _too_deep(value):
        raise ValueError("nested too deeply")
    return value


MAX_LINE_BYTES = 1024 * 1024  # far beyond any event (the server takes 1,000 in 24 MiB)


def _physical_lines(stream: IO[bytes], too_long: set[int]) -> Iterator[bytes]:
    """The file's lines, never holding more than MAX_LINE_BYTES of one in memory: a longer line
    (a file with no line breaks, say) is skipped to its end, noted in `too_long` and given as an
    empty line, so a multi-gigabyte line costs a rejection, not the machine's memory."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE_BYTES)
            too_long.add(number)
            yield b"\n"
            continue
        yield raw


TOO_LONG = f"longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"


def read_jsonl(stream: IO[bytes], keys: KeyMaker) -> Iterator[Line]:
    """One event per line, Pulse's field names; blank lines are skipped."""
    too_long: set[int] = set()
    for number, raw in enumerate(_physical_lines(stream, too_long), 1):
        if number in too_long:
            yield Line(number, error=TOO_LONG)
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            yield Line(number, error=f"not UTF-8 text (byte {error.start + 1})")
            continue
        try:
            item = strict_json(text)
        except json.JSONDecodeError as error:
            yield Line(number, error=f"not valid JSON ({error.msg} at column {error.colno})")
            continue
        except ValueError as error:
            yield Line(number, error=str(error) if str(error) == "nested too deeply" else f"not valid JSON ({error})")
            continue
        if not isinstance(item, dict):
            yield Line(number, error=f"not a JSON object (a {type(item).__name__})")
            continue
        event = dict(item)
        yield Line(number, events=keys.stamp(item, [event]))


# ------------------------------------------------------------------ CSV


def _decoded(stream: IO[bytes], bad: set[int], too_long: set[int]) -> Iterator[str]:
    """The file's lines as text for csv.reader; lines that are not UTF-8 are noted in `bad`."""
    for number, raw in enumerate(_physical_lines(stream, too_long), 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            yield raw.decode("utf-8", errors="replace")


def _number(text: str, name: str, *, integer: bool) -> Any:
    """"12" -> 12, "12.0" -> 12 (exports write counts as floats); else the text itself, for the
    server to refuse with its own message."""
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):  # "nan", "inf": no JSON number; the server refuses the text
        return text
    if integer:
        return int(value) if value.is_integer() else text
    return value


def _whole(row: dict, name: str) -> int:
    """A count in a provider export ("", "59200.0" …); raises ValueError naming the column."""
    text = (row.get(name) or "").strip()
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not value.is_integer() or value < 0:
        raise ValueError(f"{name}: {text!r} is not a whole number of at least 0")
    return int(value)


def pulse_event(row: dict[str, str]) -> dict:
    """A CSV row with Pulse's field names (and tag:KEY columns) as an event; empty cells are left out."""
    event: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    for name, value in row.items():
        text = (value or "").strip()
        if not text:
            continue
        if name.startswith(TAG_PREFIXES):
            tags[name.split(":", 1)[1] if name.startswith("tag:") else name.split(".", 1)[1]] = text
        elif name in INTEGER_FIELDS:
            event[name] = _number(text, name, integer=True)
        elif name in FLOAT_FIELDS:
            event[name] = _number(text, name, integer=False)
        elif name == "timestamp":
            stamp = _number(text, name, integer=False)
            event[name] = stamp if isinstance(stamp, float) else text
        elif name in BOOLEAN_FIELDS:
            event[name] = True if text.lower() in TRUE else False if text.lower() in FALSE else text
        elif name == "tags":
            try:
                event[name] = strict_json(text)
            except ValueError:
                event[name] = text  # refused by the server: "Must be an object …"
        else:
            event[name] = text
    if tags:
        event["tags"] = {**(event.get("tags") if isinstance(event.get("tags"), dict) else {}), **tags}
    return event


def _split(total: int, parts: int) -> Iterator[int]:
    """`total` shared out over `parts` as evenly as whole numbers allow (the first get the rest)."""
    base, rest = divmod(total, parts)
    for index in range(parts):
        yield base + (1 if index < rest else 0)


def _tags(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key: value.strip() for key, value in pairs if value and value.strip()}


def openai_events(row: dict[str, str]) -> tuple[list[dict], str | None]:
    """An OpenAI usage-export row as events (one per request), or why there are none."""
    requests = _whole(row, "num_model_requests")
    model = (row.get("model") or "").strip()
    if requests == 0:
        return [], "no requests in this bucket"
    if not model:
        raise ValueError("model: empty (export grouped by model, please)")
    start = (row.get("start_time") or "").strip()
    timestamp: Any = _number(start, "start_time", integer=True) if start else (row.get("start_time_iso") or "").strip()
    batch = (row.get("batch") or "").strip().lower()
    tags = _tags([
        ("openai_project", row.get("project_id", "")), ("openai_api_key", row.get("api_key_id", "")),
        ("openai_user", row.get("user_id", "")), ("service_tier", row.get("service_tier", "")),
        ("batch", "true" if batch in TRUE else "false" if batch in FALSE else ""),
    ])
    counts = {
        "input_tokens": _split(_whole(row, "input_tokens"), requests),
        "output_tokens": _split(_whole(row, "output_tokens"), requests),
        "cached_tokens": _split(_whole(row, "input_cached_tokens"), requests),
    }
    events = []
    for _ in range(requests):
        event: dict[str, Any] = {"provider": "openai", "model": model, "timestamp": timestamp, "token_count_source": "usage"}
        event.update({name: next(values) for name, values in counts.items()})
        if tags:
            event["tags"] = dict(tags)
        events.append(event)
    return events, None


def _day_or_moment(text: str) -> str:
    """"2025-06-12" or "2025-06-12 15:00" (UTC, as the Console writes it) as ISO 8601 UTC."""
    try:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).isoformat()
    except ValueError:
        pass
    try:
        # A trailing Z is UTC; fromisoformat reads it only from Python 3.11 on.
        moment = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", text.strip().replace(" ", "T")))
    except ValueError:
        raise ValueError(f"usage_date_utc: {text!r} is not a date") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def anthropic_events(row: dict[str, str]) -> tuple[list[dict], str | None]:
    """An Anthropic Console usage-export row as one event with its totals, or why none."""
    model = (row.get("model_version") or "").strip()
    uncached, read = _whole(row, "usage_input_tokens_no_cache"), _whole(row, "usage_input_tokens_cache_read")
    written = _whole(row, "usage_input_tokens_cache_write_5m") + _whole(row, "usage_input_tokens_cache_write_1h")
    output = _whole(row, "usage_output_tokens")
    if not model and not (uncached or read or written or output):
        return [], "no usage in this row"
    if not model:
        raise ValueError("model_version: empty")
    event: dict[str, Any] = {
        "provider": "anthropic", "model": model, "timestamp": _day_or_moment((row.get("usage_date_utc") or "").strip()),
        # Pulse's input counts every prompt token, cache reads and writes included.
        "input_tokens": uncached + written + read, "cached_tokens": read, "output_tokens": output,
        "token_count_source": "usage",
    }
    tags = _tags([
        ("anthropic_api_key", row.get("api_key", "")), ("anthropic_workspace", row.get("workspace", "")),
        ("usage_type", row.get("usage_type", "")),
    ])
    if tags:
        event["tags"] = tags
    return [event], None


def detect_mapping(header: list[str]) -> str:
    columns = set(header)
    if {"usage_date_utc", "model_version"} <= columns:
        return "anthropic"
    if {"start_time", "num_model_requests", "model", "input_tokens", "output_tokens"} <= columns:
        return "openai"
    unknown = [c for c in header if c not in FIELDS and not c.startswith(TAG_PREFIXES)]
    if unknown:
        raise FileFormatError(
            f"Unknown CSV columns {', '.join(map(repr, unknown[:5]))}: use Pulse's field names "
            f"({', '.join(FIELDS[:4])}, …, and tag:KEY), or an OpenAI or Anthropic usage export."
        )
    if "provider" not in columns or "model" not in columns:
        raise FileFormatError("The CSV header needs at least the columns provider and model.")
    return "pulse"


def read_csv(stream: IO[bytes], keys: KeyMaker, mapping: str = "auto") -> Iterator[Line]:
    """A header row, then one record per line (quoted fields may span lines)."""
    bad: set[int] = set()
    too_long: set[int] = set()
    reader = csv.reader(_decoded(stream, bad, too_long), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise FileFormatError("The CSV file is empty: it needs a header row.") from None
    except csv.Error as error:
        raise FileFormatError(f"The CSV header cannot be read: {error}.") from None
    if mapping == "auto":
        mapping = detect_mapping(header)
    elif mapping == "pulse":
        detect_mapping(header)  # the same checks of the columns
    convert = {"openai": openai_events, "anthropic": anthropic_events}.get(mapping)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            end = reader.line_num
            yield Line(start, error=f"not valid CSV ({error})")
            continue
        end = reader.line_num
        if any(number in too_long for number in range(start, end + 1)):
            yield Line(start, error=TOO_LONG)
            continue
        if any(number in bad for number in range(start, end + 1)):
            yield Line(start, error="not UTF-8 text")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield Line(start, error=f"{len(cells)} columns where the header has {len(header)}")
            continue
        row = dict(zip(header, cells))
        if convert is None:
            event = pulse_event(row)
            yield Line(start, events=keys.stamp(dict(event), [event]))
            continue
        try:
            events, skipped = convert(row)
        except ValueError as error:
            yield Line(start, error=str(error))
            continue
        if skipped:
            yield Line(start, skipped=skipped)
            continue
        content = {"mapping": mapping, **{name: value.strip() for name, value in row.items()}}
        yield Line(start, events=keys.stamp(content, events))


def guess_format(name: str, head: bytes) -> str:
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def open_lines(stream: IO[bytes], fmt: str, mapping: str) -> Iterator[Line]:
    keys = KeyMaker()
    if fmt == "jsonl":
        return read_jsonl(stream, keys)
    return read_csv(stream, keys, mapping)


