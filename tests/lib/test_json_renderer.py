"""The API's JSON renderer cannot fail on a lone surrogate (lib/json_renderer.py)."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import renderers

from lib.json_renderer import JSONRenderer


def test_drfs_own_renderer_fails_on_a_lone_surrogate_which_is_why_this_one_exists():
    try:
        renderers.JSONRenderer().render({"kind": ['"\ud800" is not a valid choice.']})
    except UnicodeEncodeError:
        return
    raise AssertionError("DRF renders lone surrogates now; lib/json_renderer.py may be unneeded")


def test_a_lone_surrogate_is_rendered_as_its_json_escape():
    data = {"kind": ['"\ud800" is not a valid choice.'], "k\udfff": "ok"}
    content = JSONRenderer().render(data)
    content.decode("ascii")  # escaped, so pure ASCII
    assert b"\\ud800" in content
    assert json.loads(content) == data  # the same JSON value


def test_other_text_stays_unescaped_utf8():
    content = JSONRenderer().render({"name": "caf\u00e9 \U0001f600", "line": "a\u2028b"})
    assert content.decode("utf-8") == '{"name":"caf\u00e9 \U0001f600","line":"a\\u2028b"}'


def test_indent_and_nothing_behave_like_drfs():
    assert JSONRenderer().render(None) == b""
    assert JSONRenderer().render({"a": "\ud800"}, "application/json; indent=2") == b'{\n  "a": "\\ud800"\n}'


def test_it_is_the_apis_renderer():
    assert settings.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"][0] == "lib.json_renderer.JSONRenderer"
