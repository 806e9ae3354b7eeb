"""The API's typed answers are dumped by its schemas into the shapes API.md documents."""

from __future__ import annotations

from datetime import UTC, datetime

from stageflow.api.answers import DryRun, Page, ReportedCheck, StageDeployment
from stageflow.api.promotion_schemas import (
    CheckSchema,
    DeploymentSchema,
    PromotionPageSchema,
    PromotionSchema,
)
from stageflow.domain.gates import FAILED, CheckResult, Deployment, GateResult
from stageflow.domain.promotions import Approval, Promotion, Selection

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _promotion(**changes: object) -> Promotion:
    fields: dict[str, object] = {
        "app": "demo",
        "source": "development",
        "target": "staging",
        "status": "pending_approval",
        "requested_by": "alice",
        "selection": Selection(images=True, flags="eligible"),
        "plan": None,
        "plan_json": {"images": [{"name": "web"}], "flags": []},
        "gates": (GateResult("smoke", "check", FAILED, "no smoke check", {"kind": "smoke"}),),
        "diff": "",
        "created_at": AT,
        "updated_at": AT,
        "id": 7,
        "approvals": (Approval("bob", AT, "ok"),),
    }
    fields.update(changes)
    return Promotion(**fields)  # type: ignore[arg-type]  # a test's table of fields


def test_a_promotion_is_dumped_from_the_domain_object_under_the_api_names():
    dumped = PromotionSchema().dump(_promotion())

    assert {"id", "app", "from", "to", "status", "plan", "gates", "approvals"} <= set(dumped)
    assert not {"source", "target", "plan_json", "dry_run", "verdict"} & set(dumped)
    assert (dumped["from"], dumped["to"]) == ("development", "staging")
    assert dumped["plan"] == {"images": [{"name": "web"}], "flags": []}
    assert dumped["gates"][0]["evidence"] == {"kind": "smoke"}
    assert dumped["approvals"] == [
        {"approver": "bob", "at": "2026-12-01T10:00:00+00:00", "comment": "ok"}
    ]


def test_a_dry_run_has_its_own_status_and_the_verdict_of_its_gates():
    dumped = PromotionSchema().dump(DryRun(_promotion(id=None)))

    assert (dumped["status"], dumped["dry_run"], dumped["verdict"]) == ("dry_run", True, "blocked")
    assert dumped["id"] is None and dumped["from"] == "development"
    assert list(dumped)[4:7] == ["status", "verdict", "dry_run"]


def test_a_full_page_points_at_the_next_one_and_a_short_page_is_the_last():
    promotions = [_promotion(id=9), _promotion(id=8)]

    assert PromotionPageSchema().dump(Page.of(promotions, 2))["next"] == 8
    assert PromotionPageSchema().dump(Page.of(promotions, 3))["next"] is None
    assert Page.of([], 5).next is None


def test_reports_carry_the_app_and_stage_they_are_about():
    deployment = Deployment(revision="abc123", content="c", health="healthy", at=AT, source="flux")
    assert DeploymentSchema().dump(StageDeployment("demo", "staging", deployment)) == {
        "app": "demo",
        "stage": "staging",
        "revision": "abc123",
        "health": "healthy",
        "source": "flux",
        "at": "2026-12-01T10:00:00+00:00",
    }
    check = CheckResult(kind="smoke", revision="abc123", content="c", status="passed", at=AT, id=3)
    dumped = CheckSchema().dump(ReportedCheck("demo", "staging", check, {"n": 1}, "ci"))
    assert dumped["id"] == 3 and dumped["reported_by"] == "ci" and dumped["rollback"] is None
    assert dumped["details"] == {"n": 1} and dumped["summary"] is None
