"""lib.text: what PostgreSQL and UTF-8 can store."""

from __future__ import annotations

import pytest

from lib.text import printable, unstorable


@pytest.mark.parametrize("text", ["", "plain", "héllo", "日本", "\U0001f600", "tab\tnewline\n"])
def test_ordinary_text_is_storable(text):
    assert unstorable(text) is None
    assert printable(text) == text


@pytest.mark.parametrize("text,reason", [("a\x00b", "NUL"), ("\ud800", "surrogate"), ("ok\udfffok", "surrogate")])
def test_nul_and_lone_surrogates_are_not(text, reason):
    assert reason in unstorable(text)
    printable(text).encode("utf-8")  # an error message can quote it
    assert "\\x00" in printable(text) or "\\ud" in printable(text)
