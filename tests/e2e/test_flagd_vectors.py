"""flagd's own ``fractional`` test vectors, through Stageflow's OFREP.

``tests/data/flagd_fractional_vectors.json`` holds the cases of ``fractional_test.go`` of flagd
v0.16.1 (the release the starter deploys): each document is committed as the development
``flags.json`` (as someone with the git CLI would) and every case is asked over
``POST /ofrep/v1/evaluate/flags/{key}``; the answer is flagd's expected variant, value and reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests.builders import third_party_commit

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data" / "flagd_fractional_vectors.json").read_text()
)
FLAGS_JSON = "apps/demo/overlays/development/flags.json"


def _document(flags: dict[str, Any]) -> str:
    return json.dumps(
        {
            "$schema": "https://flagd.dev/schema/v0/flags.json",
            "metadata": {"flagSetId": "demo", "version": "vectors"},
            "flags": flags,
        },
        indent=2,
    )


def _answers(client: FlaskClient, anonymous: FlaskClient, gitops_remote: Path) -> list[Any]:
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": "vectors",
            "owner": "t",
            "roles": ["client"],
            "scope": {"apps": ["demo"], "stages": ["development"]},
        },
    )
    headers = {"Authorization": f"Bearer {created.get_json()['token']}"}
    rows = []
    for document in VECTORS["documents"]:
        third_party_commit(gitops_remote, FLAGS_JSON, _document(document["flags"]))
        for case in document["cases"]:
            answer = anonymous.post(
                f"/ofrep/v1/evaluate/flags/{case['flag']}",
                json={"context": case["context"]},
                headers=headers,
            )
            body = answer.get_json()
            rows.append(
                (
                    case["test"],
                    case["name"],
                    (
                        answer.status_code,
                        body.get("variant"),
                        body.get("value"),
                        body.get("reason"),
                    ),
                    (200, case["variant"], case["value"], case["reason"]),
                )
            )
    return rows


def test_ofrep_answers_flagds_own_fractional_test_vectors(
    client: FlaskClient, anonymous: FlaskClient, gitops_remote: Path
):
    rows = _answers(client, anonymous, gitops_remote)

    # Stageflow's one deliberate difference (README, "Reading flags from your app"): a rollout
    # by targetingKey asked without one is TARGETING_KEY_MISSING, where flagd quietly serves
    # the default variant; the client then uses its code default and is told why.
    no_key = {
        "missing targetingKey returns default variant",
        "empty targetingKey returns default variant",
        "null targetingKey returns default variant",
    }
    assert [got for _, name, got, _ in rows if name in no_key] == [(400, None, None, None)] * 3
    wrong = [
        (test, name, got, want)
        for test, name, got, want in rows
        if got != want and name not in no_key
    ]
    assert not wrong, wrong
    assert len(rows) == 30
    names = {name for _, name, _, _ in rows}
    assert {"rachel@faas.com", "ross@faas.com with custom seed"} <= names  # headerColor, seeded
