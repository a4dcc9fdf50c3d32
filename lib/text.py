"""Text that can be stored: PostgreSQL `text` refuses the NUL character, and a lone UTF-16
surrogate (JSON lets a client send `"\\ud800"`) cannot be encoded as UTF-8 at all, so either
fails the INSERT (or the JSON response) with a 500 if it gets that far. DRF's CharField already
refuses NUL; code that validates JSON by hand (costs ingestion) asks `unstorable()`."""

from __future__ import annotations

import re

# In a Python string every surrogate is a lone one (JSON's pairs are decoded to one character).
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return "Must not contain the NUL character (\\u0000)."
    if not text.isascii():  # the common case costs one C-level scan
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "Must be valid Unicode (a lone UTF-16 surrogate such as \\ud800 is not)."
    return None


def printable(text: str) -> str:
    """`text` safe to echo in an error message: unstorable characters escaped."""
    return text if unstorable(text) is None else ascii(text)[1:-1]


def storable(text: str) -> str:
    """`text` made storable rather than refused (for text that must not be lost over a detail,
    such as a gateway call's record): NUL characters removed, lone surrogates as U+FFFD."""
    if unstorable(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
