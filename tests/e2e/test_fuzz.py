"""Whatever a client sends, the answer is never a 500, and every error has the error body.

The endpoints come from the app itself (its URL map and its OpenAPI document), so endpoints
added later are covered without touching this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

# plausible values for path parameters, by name
GOOD_ARGUMENTS = {"app": "demo", "stage": "development", "key": "new_ui"}
ODD_SEGMENTS = [
    "..%2F..%2Fstageflow.yaml",
    "%2e%2e",
    "a%2Fb",
    quote("ключ-🔑-ü"),
    "k" * 129,
    "k" * 3000,
    "%00",
    "new_ui%0AStageflow-Actor:%20x",
    "%20",
    "-",
    "%ff%fe",
    "%ED%A0%80",  # a UTF-16 surrogate, UTF-8 encoded (not UTF-8)
    "CON",
]
ODD_INTEGERS = ["0", "99999999999999999999999", "2147483648"]
WRONG_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    10**30,
    True,
    "",
    "x" * 20000,
    "ü🔑\u0000\u202e",
    "\ud800",  # a lone surrogate: json.dumps sends it as the escape "\ud800"
    {"\udc00": 1},
    [],
    [1, "a", None],
    {},
    {"a": {"b": {"c": [1]}}},
]
RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("null", b"null", "application/json"),
    ("number", b"42", "application/json"),
    ("float", b"-1e999", "application/json"),
    ("string", b'"enabled"', "application/json"),
    ("array", b'[{"enabled": true}]', "application/json"),
    ("true", b"true", "application/json"),
    ("empty", b"", "application/json"),
    ("truncated", b'{"key": "x"', "application/json"),
    ("not utf-8", b'{"key": "\xff\xfe"}', "application/json"),
    ("nan", b'{"key": NaN, "enabled": Infinity}', "application/json"),
    ("duplicate keys", b'{"enabled": true, "enabled": "no"}', "application/json"),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, "application/json"),
    ("deep object", b'{"a":' * 50000 + b"1" + b"}" * 50000, "application/json"),
    ("huge string", json.dumps({"key": "x" * 500000}).encode(), "application/json"),
    ("too large", b'{"key": "' + b"x" * (2 << 20) + b'"}', "application/json"),
    ("form", b"key=x&enabled=true", "application/x-www-form-urlencoded"),
    ("text", b'{"enabled": true}', "text/plain"),
    ("no type", b'{"enabled": true}', ""),
    ("bad charset", b'{"enabled": true}', "application/json; charset=klingon"),
    ("lone surrogate", b'{"key": "\\ud800", "enabled": "\\udfff"}', "application/json"),
    ("deep but parseable", b'{"a":' * 200 + b"1" + b"}" * 200, "application/json"),
    ("json as xml", b'{"enabled": true}', "application/xml"),
]
ODD_QUERIES = [
    "limit=abc",
    "limit=99999999999999999999",
    "limit=-1",
    "before=-5",
    "before=1e3",
    "before=99999999999999999999",
    "before=2147483648",
    "limit=2147483648&before=0",
    "actor=%ED%A0%80&kind=%ED%B0%80&app=%F0%9F",
    "app=%C3%BC&stage=%00",
    "revision=" + "f" * 41,
    "revision=zz&kind=%ff",
    "status=bogus",
    "to=" + "x" * 5000,
    "unknown=1",
]
ODD_HEADERS: list[dict[str, str]] = [
    {"Idempotency-Key": ""},
    {"Idempotency-Key": "k" * 300},
    {"Idempotency-Key": "ключ"},
    {"Idempotency-Key": "a\tb"},
    {"If-None-Match": '"' + "x" * 5000 + '"'},
    {"Authorization": "Bearer " + "x" * 10000},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer"},
    {"Authorization": "bearer  "},
    {"Authorization": "Bearer ü"},
    {"X-Request-Id": "r" * 5000},
    {"X-Request-Id": "ü-🔑"},
    {"Content-Length": "5"},
]


def write_rules(app: Flask) -> list[tuple[str, str, dict[str, str]]]:
    """(method, rule, {argument: converter}) for every write endpoint of the API."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/", "/ofrep/")):
            continue
        converters = {name: (conv or "string") for conv, name in ARGUMENT.findall(rule.rule)}
        found.extend(
            (method, rule.rule, converters) for method in sorted(rule.methods & WRITE_METHODS)
        )
    return found


def read_rules(app: Flask) -> list[str]:
    return [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and "GET" in rule.methods
    ]


def build(rule: str, values: dict[str, str]) -> str:
    return ARGUMENT.sub(lambda m: values[m.group(2)], rule)


def good_values(converters: dict[str, str]) -> dict[str, str]:
    return {
        name: "1" if conv == "int" else GOOD_ARGUMENTS.get(name, "nope")
        for name, conv in converters.items()
    }


def odd_paths(rule: str, converters: dict[str, str]) -> Iterator[str]:
    good = good_values(converters)
    for name, conv in converters.items():
        for odd in ODD_INTEGERS if conv == "int" else ODD_SEGMENTS:
            yield build(rule, {**good, name: odd})


def placeholder(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A value of the schema's type: enough to get past 'required' to the other checks."""
    if "$ref" in schema:
        return example_body(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {
        "string": "fuzz",
        "integer": 1,
        "number": 1,
        "boolean": True,
        "array": [],
        "object": {},
    }.get(kind, "fuzz")


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def example_body(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    schema = resolve(spec, schema)
    return {
        name: placeholder(prop, spec)
        for name, prop in schema.get("properties", {}).items()
        if name in schema.get("required", [])
    }


def body_schema(spec: dict[str, Any], method: str, rule: str) -> dict[str, Any] | None:
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return None if schema is None else resolve(spec, schema)


class Findings:
    """Every bad answer, collected so that one run shows them all."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.count = 0

    def check(self, response: Any, what: str) -> None:
        self.count += 1
        status = response.status_code
        if status >= 500:
            self.items.append(f"{status} for {what[:200]}: {response.get_data(as_text=True)[:300]}")
            return
        if status < 400 or status == 304:
            return
        try:
            body = json.loads(response.get_data())
            if what.split(" ", 2)[1].startswith("/ofrep/") and "errorCode" in body:
                # OFREP's own endpoints answer in that protocol's error shape
                assert isinstance(body["errorCode"], str) and body["errorCode"]
                return
            error = body["error"]
            assert isinstance(error["code"], str) and error["code"]
            assert isinstance(error["message"], str) and error["message"]
            assert isinstance(error["details"], dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            self.items.append(
                f"{status} without the error body for {what[:200]}: "
                f"{response.get_data(as_text=True)[:300]}"
            )

    def assert_none(self) -> None:
        assert not self.items, f"{len(self.items)} bad answers:\n" + "\n".join(self.items[:40])


@pytest.fixture
def findings() -> Findings:
    return Findings()


def send(client: FlaskClient, method: str, url: str, **kwargs: Any) -> Any:
    return client.open(url, method=method, **kwargs)


def test_odd_paths_on_every_write_endpoint(app: Flask, client: FlaskClient, findings: Findings):
    for method, rule, converters in write_rules(app):
        for url in odd_paths(rule, converters):
            response = send(client, method, url, json={})
            findings.check(response, f"{method} {url}")
    findings.assert_none()
    assert findings.count > 50


def test_odd_bodies_on_every_write_endpoint(app: Flask, client: FlaskClient, findings: Findings):
    for method, rule, converters in write_rules(app):
        url = build(rule, good_values(converters))
        for name, raw, content_type in RAW_BODIES:
            response = send(client, method, url, data=raw, content_type=content_type or None)
            findings.check(response, f"{method} {url} with a {name} body")
        for value in WRONG_VALUES:
            findings.check(send(client, method, url, json=value), f"{method} {url} json={value!r}")
    findings.assert_none()


def test_wrong_types_for_every_field(app: Flask, client: FlaskClient, findings: Findings):
    spec = client.get("/openapi.json").get_json()
    covered = 0
    for method, rule, converters in write_rules(app):
        schema = body_schema(spec, method, rule)
        if schema is None:
            continue
        url = build(rule, good_values(converters))
        base = example_body(spec, schema)
        for field in schema.get("properties", {}):
            covered += 1
            for value in WRONG_VALUES:
                body = {**base, field: value}
                response = send(client, method, url, json=body)
                findings.check(response, f"{method} {url} {field}={value!r:.60}")
        # and fields nobody declared
        findings.check(send(client, method, url, json={**base, "zz": 1}), f"{method} {url} +zz")
    findings.assert_none()
    assert covered >= 10


def test_odd_headers_on_writes(app: Flask, client: FlaskClient, findings: Findings):
    for method, rule, converters in write_rules(app):
        url = build(rule, good_values(converters))
        for headers in ODD_HEADERS:
            findings.check(
                send(client, method, url, json={"zz": 1}, headers=headers),
                f"{method} {url} with {list(headers)} {next(iter(headers.values()))[:20]!r}",
            )
    findings.assert_none()


def test_odd_queries_on_every_read_endpoint(app: Flask, client: FlaskClient, findings: Findings):
    for rule in read_rules(app):
        converters = {name: (conv or "string") for conv, name in ARGUMENT.findall(rule)}
        url = build(rule, good_values(converters))
        for query in ODD_QUERIES:
            findings.check(client.get(f"{url}?{query}"), f"GET {url}?{query}")
        for odd in odd_paths(rule, converters):
            findings.check(client.get(odd), f"GET {odd}")
    findings.assert_none()
