"""Reading Flux events and argocd-notifications bodies into cluster reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stageflow.domain.errors import Invalid
from stageflow.domain.feedback import argocd_report, parse_timestamp

SHA = "3f2a9c1d0b8e7f6a5c4d3e2f1a0b9c8d7e6f5a4b"
OTHER = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-08-16T10:26:43Z", datetime(2023, 8, 16, 10, 26, 43, tzinfo=UTC)),
        ("2023-08-16T12:26:43+02:00", datetime(2023, 8, 16, 10, 26, 43, tzinfo=UTC)),
        ("2023-08-16T10:26:43.250Z", datetime(2023, 8, 16, 10, 26, 43, 250000, tzinfo=UTC)),
        ("2023-08-16T10:26:43", None),  # no zone: it cannot be placed
        ("yesterday", None),
        ("", None),
        (None, None),
        (1692181603, None),
    ],
)
def test_flux_timestamps_are_rfc3339_in_utc(text: Any, expected: datetime | None):
    assert parse_timestamp(text) == expected


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "app": "demo-staging",
        "revision": SHA,
        "revisions": None,
        "sync_status": "Synced",
        "sync_revision": SHA,
        "sync_revisions": None,
        "health_status": "Healthy",
        "operation_phase": "Succeeded",
        **fields,
    }


def test_a_multi_source_body_offers_every_commit_in_order():
    report = argocd_report(_body(revision="", revisions=["25.3.1", OTHER, SHA]))

    assert report is not None
    assert report.revisions == (OTHER, SHA)  # a chart version is no commit


def test_without_an_operation_the_sync_revision_counts_only_while_synced():
    bare = {"revision": None, "operation_phase": None, "health_status": "Degraded"}

    synced = argocd_report(_body(**bare))
    drifted = argocd_report(_body(**bare, sync_status="OutOfSync"))

    assert synced is not None and (synced.revision, synced.health) == (SHA, "degraded")
    assert drifted is None


@pytest.mark.parametrize("missing", [None, "<no value>", ""])
def test_a_missing_field_is_never_a_value(missing: Any):
    assert argocd_report(_body(revision=missing, sync_revision=missing)) is None
    assert argocd_report(_body(health_status=missing)) is None
    report = argocd_report(_body(operation_phase=missing))
    assert report is not None and report.health == "healthy"


def test_a_body_without_an_app_is_refused():
    with pytest.raises(Invalid):
        argocd_report(_body(app="<no value>"))
