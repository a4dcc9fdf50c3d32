"""How the CLI writes: aligned tables, numbers and money people can read, bars, and colour only
where it helps (a terminal, and not when NO_COLOR is set). Data goes to stdout; progress,
notes and errors to stderr, so `pulse costs --csv > costs.csv` holds only the CSV."""

from __future__ import annotations

import os
import re
import sys
import time
import unicodedata
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import IO, Any, Optional

import click

Cell = Optional[str]


def wants_color(stream: IO[str]) -> bool:
    """A terminal that is not dumb, and no NO_COLOR (https://no-color.org: set and non-empty)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def can_draw(stream: IO[str]) -> bool:
    """Whether the stream's encoding has the block and rule characters (█░─); else ASCII."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "█░─✓✗…".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def paint(text: str, stream: IO[str] | None = None, **style: Any) -> str:
    """`text` in colour when `stream` (stdout by default) is a colour terminal, else as is."""
    return click.style(text, **style) if wants_color(stream or sys.stdout) else text


def out(text: str = "") -> None:
    click.echo(text, color=wants_color(sys.stdout))


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr): never mixed into the data."""
    click.echo(text, err=True, color=wants_color(sys.stderr))


def warn(text: str) -> None:
    note(paint(text, sys.stderr, fg="yellow"))


# ------------------------------------------------------------------ numbers


def number(value: Any) -> str:
    """1234567 -> "1,234,567"; None -> "–"."""
    if value is None or value == "":
        return "–"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(value: Any, symbol: str = "$") -> str:
    """At least cents, and two significant digits below a cent: "$1,234.56",
    "$0.50", "$0.0012" (at most 10 places). A cost of a fraction of a cent is common per call; "$0.00" would hide it."""
    amount = decimal(value)
    if amount is None:
        return "–"
    magnitude = abs(amount)
    places = 2
    if 0 < magnitude < Decimal("0.01"):
        places = min(10, 1 - magnitude.adjusted())  # two significant digits
    rounded = magnitude.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if places > 2 and rounded >= Decimal("0.01"):  # 0.009999 is a cent
        places, rounded = 2, magnitude.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 and rounded != 0 else ""
    return f"{sign}{symbol}{rounded:,.{places}f}"


def percent(value: Any, places: int = 1) -> str:
    amount = decimal(value)
    if amount is None:
        return "–"
    return f"{amount:.{places}f}%"


def milliseconds(value: Any) -> str:
    amount = decimal(value)
    if amount is None:
        return "–"
    return f"{amount:,.0f} ms"


def bar(fraction: float, width: int = 20, stream: IO[str] | None = None) -> str:
    """A filled bar: ████████░░░░ for 0..1 (more than 1 is a full bar)."""
    full, empty = ("█", "░") if can_draw(stream or sys.stdout) else ("#", ".")
    fraction = max(0.0, min(1.0, fraction))
    filled = int(round(fraction * width))
    return full * filled + empty * (width - filled)


# ------------------------------------------------------------------ tables


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def width(text: str) -> int:
    """Columns `text` takes in a terminal: wide (CJK) characters count two, combining ones and
    colour codes none."""
    total = 0
    for char in ANSI.sub("", text):
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def _pad(text: str, size: int, right: bool) -> str:
    gap = " " * max(0, size - width(text))
    return gap + text if right else text + gap


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    right: Sequence[bool] | None = None,
    total: Sequence[Cell] | None = None,
    stream: IO[str] | None = None,
) -> list[str]:
    """Lines of an aligned table: a header, a rule, the rows, and (ruled off) a totals row.
    `right[i]`: column i is right-aligned (numbers)."""
    stream = stream or sys.stdout
    right = list(right or [False] * len(headers))
    cells = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    totals = [("" if cell is None else str(cell)) for cell in total] if total is not None else None
    sizes = [width(h) for h in headers]
    for row in cells + ([totals] if totals else []):
        for index, cell in enumerate(row):
            sizes[index] = max(sizes[index], width(cell))
    rule_char = "─" if can_draw(stream) else "-"
    gap = "  "

    def line(row: Sequence[str]) -> str:
        return gap.join(_pad(cell, sizes[i], right[i]) for i, cell in enumerate(row)).rstrip()

    rule = gap.join(rule_char * size for size in sizes)
    lines = [paint(line(list(headers)), stream, bold=True), rule]
    lines += [line(row) for row in cells]
    if totals is not None:
        lines += [rule, paint(line(totals), stream, bold=True)]
    return lines


# ------------------------------------------------------------------ progress


class Progress:
    """A one-line progress bar on stderr, redrawn in place, only on a terminal (a log file or a
    pipe gets none). `clear()` before printing a line of data, so the two never mix."""

    def __init__(self, total: int | None, *, label: str = "", stream: IO[str] | None = None, min_interval: float = 0.1) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = is_tty(self.stream)
        self.min_interval = min_interval
        self._last_draw = 0.0
        self._shown = False
        self.done = 0
        self.extra = ""

    def update(self, done: int, extra: str = "", *, force: bool = False) -> None:
        self.done, self.extra = done, extra
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        if self.total:
            fraction = min(1.0, done / self.total)
            text = f"{bar(fraction, 24, self.stream)} {fraction * 100:5.1f}%"
        else:
            text = f"{number(done)}"
        line = " ".join(part for part in (self.label, text, extra) if part)
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False
            self._last_draw = 0.0

    def close(self) -> None:
        self.clear()
