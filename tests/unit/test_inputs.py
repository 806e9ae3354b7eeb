"""The request-wide input rules (domain/inputs.py) on their own."""

from __future__ import annotations

import json

import pytest

from stageflow.domain.errors import Malformed
from stageflow.domain.inputs import MAX_DEPTH, check_json, check_url


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[]" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "x"}',
        nested(MAX_DEPTH),
        b'{"rocket": "\\ud83d\\ude80", "escaped backslash": "\\\\ud800"}',
        b'{"many": ' + json.dumps([[1]] * 500).encode() + b"}",
        b"not json at all {[{[",  # the parser that reads it says what is wrong
        b'{"a": "\\ud800',  # likewise
    ],
)
def test_clean_or_unparseable_bodies_pass(raw: bytes):
    check_json(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (nested(MAX_DEPTH + 1), "too_deep"),
        (b"[" * 100000 + b"]" * 100000, "too_deep"),
        (b'{"a": "\\ud800"}', "invalid_unicode"),
        (b'{"a": "\\uDFFF"}', "invalid_unicode"),
        (b'{"a": ["x", {"\\udc00": 1}]}', "invalid_unicode"),
        (b'{"a": "\\ude80\\ud83d"}', "invalid_unicode"),  # a pair in the wrong order
    ],
)
def test_deep_or_surrogate_bodies_are_malformed(raw: bytes, code: str):
    with pytest.raises(Malformed) as refused:
        check_json(raw)
    assert refused.value.code == code


def test_urls_must_be_utf8():
    check_url("/api/v1/apps/ü".encode(), "actor=%C3%BC&x=a+b")
    with pytest.raises(Malformed, match="path is not UTF-8"):
        check_url(b"/api/v1/apps/\xed\xa0\x80", "")
    with pytest.raises(Malformed, match="query string is not UTF-8"):
        check_url(b"/api/v1/audit", "actor=%ED%A0%80")
