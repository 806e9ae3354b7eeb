"""Stageflow's OFREP against ``@openfeature/flagd-core`` 4 (Node) evaluating the committed file.

flagd-core is the evaluator of flagd's JavaScript in-process providers and buckets
``fractional`` as the flagd daemon v0.16 does. A hand-written flags file with every flag type and
every flagd operator (``fractional`` with and without a seed, ``sem_ver``, ``starts_with``,
``ends_with``, ``in``, shared ``$evaluators``, a disabled flag, a null ``defaultVariant``) is
committed to the development stage; ``tests/interop/parity.mjs`` then asks Stageflow's bulk and
single endpoints for 1,200 contexts and compares each answer with flagd-core's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.builders import read_remote, remote_head, third_party_commit
from tests.e2e.interop import run_script, serving

FLAGS_JSON = "apps/demo/overlays/development/flags.json"
BOOL = {"on": True, "off": False}

DOCUMENT: dict[str, Any] = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "metadata": {"flagSetId": "demo", "version": "parity"},
    "$evaluators": {
        "staff": {"ends_with": [{"var": "email"}, "@acme.com"]},
        "paying": {"in": [{"var": "plan"}, ["pro", "team"]]},
    },
    "flags": {
        "static_on": {"state": "ENABLED", "variants": BOOL, "defaultVariant": "on"},
        "killed": {
            "state": "DISABLED",
            "variants": BOOL,
            "defaultVariant": "on",
            "targeting": {"fractional": [["on", 50], ["off", 50]]},
        },
        "checkout_v2": {
            "state": "ENABLED",
            "variants": BOOL,
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", 20], ["off", 80]]},
        },
        "theme": {
            "state": "ENABLED",
            "variants": {"blue": "#0000ff", "red": "#ff0000", "yellow": "#ffff00", "green": "#0f0"},
            "defaultVariant": "blue",
            "targeting": {
                "if": [
                    {"$ref": "staff"},
                    "green",
                    {
                        "fractional": [
                            {"cat": ["theme-2026/", {"var": "targetingKey"}]},
                            ["blue", 50],
                            ["red", 30],
                            ["yellow", 20],
                        ]
                    },
                ]
            },
        },
        "max_items": {
            "state": "ENABLED",
            "variants": {"small": 10, "medium": 50, "large": 100},
            "defaultVariant": "small",
            "targeting": {
                "if": [
                    {"sem_ver": [{"var": "app_version"}, ">=", "2.1.0"]},
                    "large",
                    {"sem_ver": [{"var": "app_version"}, "~", "1.4.0"]},
                    "medium",
                    None,
                ]
            },
        },
        "discount": {
            "state": "ENABLED",
            "variants": {"none": 0.0, "some": 0.15, "lots": 0.3},
            "defaultVariant": "none",
            "targeting": {
                "if": [
                    {"$ref": "paying"},
                    {"fractional": [["none", 1], ["some", 2], ["lots", 7]]},
                    None,
                ]
            },
        },
        "layout": {
            "state": "ENABLED",
            "variants": {
                "classic": {"columns": 1, "sidebar": False},
                "grid": {"columns": 3, "sidebar": True},
            },
            "defaultVariant": "classic",
            "targeting": {
                "if": [
                    {
                        "or": [
                            {"starts_with": [{"var": "email"}, "beta."]},
                            {"sem_ver": [{"var": "app_version"}, "^", "3.0.0"]},
                        ]
                    },
                    "grid",
                    "classic",
                ]
            },
        },
        "region_banner": {
            "state": "ENABLED",
            "variants": {"eu": "EU banner", "us": "US banner", "none": ""},
            "defaultVariant": "none",
            "targeting": {
                "if": [
                    {"in": [{"var": "country"}, ["DE", "FR", "NL", "IE"]]},
                    "eu",
                    {"in": ["US", {"var": "country"}]},
                    "us",
                    None,
                ]
            },
        },
        "new_search": {
            "state": "ENABLED",
            "variants": {"v1": "v1", "v2": "v2"},
            "defaultVariant": None,
            "targeting": {"if": [{"==": [{"var": "plan"}, "team"]}, "v2", None]},
        },
        "ramp": {
            "state": "ENABLED",
            "variants": {"0": 0, "1": 1, "2": 2, "3": 3},
            "defaultVariant": "0",
            "targeting": {"fractional": [["0", 25], ["1", 25], ["2", 25], ["3", 25]]},
        },
    },
}

EMAILS = ("{i}@acme.com", "beta.{i}@example.com", "user{i}@example.com", None)
PLANS = ("free", "pro", "team", None)
VERSIONS = ("1.4.2", "1.5.0", "2.0.9", "2.1.0", "v2.3.1", "3.0.0-rc.1", "3.2.0", "0.9.0", None)
COUNTRIES = ("DE", "US", "FR", "JP", "IE", "BR", None)


def _context(i: int) -> dict[str, Any]:
    context: dict[str, Any] = {"targetingKey": f"user-{i:05d}"}
    for name, choices, step in (
        ("email", EMAILS, 1),
        ("plan", PLANS, 3),
        ("app_version", VERSIONS, 5),
        ("country", COUNTRIES, 7),
    ):
        choice = choices[(i // step) % len(choices)]
        if choice is not None:
            context[name] = choice.format(i=i) if name == "email" else choice
    return context


def _token(client: FlaskClient) -> str:
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": "parity",
            "owner": "parity",
            "roles": ["client"],
            "scope": {"apps": ["demo"], "stages": ["development"]},
        },
    )
    assert created.status_code == 201, created.get_json()
    return str(created.get_json()["token"])


def test_ofrep_answers_equal_flagd_core_4_for_every_flag_type_and_operator(
    app: Flask, client: FlaskClient, gitops_remote: Path
):
    third_party_commit(gitops_remote, FLAGS_JSON, json.dumps(DOCUMENT, indent=2))
    committed = read_remote(gitops_remote, remote_head(gitops_remote), FLAGS_JSON)
    token = _token(client)

    with serving(app) as url:
        result = run_script(
            "parity.mjs",
            {
                "url": url,
                "token": token,
                "document": committed,
                "contexts": [_context(i) for i in range(1200)],
                "singleEvery": 10,
            },
            timeout=240,
        )

    assert result["contexts"] == 1200
    # every flag in bulk for each context, and one by one for every 10th context
    assert result["evaluations"] == (1200 + 120) * len(DOCUMENT["flags"])
    # value and variant (and reason) of every answer are flagd-core's; with the CBOR bucketing
    # of openfeature-flagd-core 2 (STAGEFLOW_FLAGD_FRACTIONAL=cbor) 2,138 of 12,000 bulk
    # answers differed here
    assert (result["mismatches"], result["reasonMismatches"]) == (0, 0), result["samples"]
    seen = result["seen"]
    # every branch of every rule was reached, so the comparison covered them all
    assert set(seen["checkout_v2"]) == {"on", "off"}
    assert set(seen["theme"]) == {"blue", "red", "yellow", "green"}
    assert set(seen["max_items"]) == {"small", "medium", "large"}
    assert set(seen["discount"]) == {"none", "some", "lots"}
    assert set(seen["layout"]) == {"classic", "grid"}
    assert set(seen["region_banner"]) == {"eu", "us", "none"}
    assert set(seen["new_search"]) == {"v2", "(code default)"}
    assert set(seen["ramp"]) == {"0", "1", "2", "3"}
    assert set(seen["killed"]) == {"(code default)"}
