"""What the cluster's reports decide (deployments, checks), over in-memory fakes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stageflow.domain.errors import Invalid, NotFound
from stageflow.domain.feedback import ClusterReport
from stageflow.domain.gates import CheckStatus
from stageflow.domain.promotions import PromotionStatus
from stageflow.services import feedback, promotions, reports
from stageflow.services.changes import Actor
from tests.fakes import FakeWorld, fake_stageflow


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return fake_stageflow(tmp_path)


def flux(name: str, revision: str, health: str = "healthy", **more) -> ClusterReport:
    return ClusterReport("flux", name, revision, health, "ReconciliationSucceeded", **more)


def test_a_report_on_a_mapped_object_becomes_a_deployment(world: FakeWorld):
    head = world.repo.head()

    answer = feedback.record_cluster_report(world.sf, flux("demo-development", head), actor="flux")

    assert answer == {
        "recorded": True,
        "app": "demo",
        "stage": "development",
        "revision": head,
        "health": "healthy",
        "reason": "ReconciliationSucceeded",
    }
    recent = reports.recent_deployments(world.sf, "demo", "development")
    assert [(d.revision, d.source) for d in recent] == [(head, "flux")]


def test_an_object_that_names_no_app_and_stage_says_how_to_map_it(world: FakeWorld):
    answer = feedback.record_cluster_report(
        world.sf, flux("payments", world.repo.head()), actor="flux"
    )

    assert answer["recorded"] is False
    assert "Kustomization 'payments' names no app and stage" in answer["reason"]
    argo = ClusterReport("argocd", "payments", world.repo.head(), "healthy", "Synced")
    assert (
        "Application 'payments'"
        in feedback.record_cluster_report(world.sf, argo, actor="argocd")["reason"]
    )


def test_the_first_revision_that_is_a_commit_of_the_repo_counts(world: FakeWorld):
    head = world.repo.head()
    report = ClusterReport(
        "argocd", "demo-staging", "v1.2.3", "healthy", "Synced", alternatives=("nope", head)
    )

    answer = feedback.record_cluster_report(world.sf, report, actor="argocd")

    assert answer["recorded"] is True and answer["revision"] == head


def test_a_report_of_an_unknown_revision_is_not_recorded_and_says_why(world: FakeWorld):
    answer = feedback.record_cluster_report(world.sf, flux("demo-staging", "f" * 40), actor="flux")

    assert answer["recorded"] is False and answer["stage"] == "staging"
    assert "f" * 40 in answer["reason"]
    assert reports.recent_deployments(world.sf, "demo", "staging") == []


def test_a_report_from_the_future_counts_from_now(world: FakeWorld):
    head = world.repo.head()
    ahead = flux("demo-development", head, at=world.clock() + timedelta(hours=1))

    feedback.record_cluster_report(world.sf, ahead, actor="flux")

    assert reports.recent_deployments(world.sf, "demo", "development")[0].at == world.clock()


def test_bad_reports_are_refused_with_what_is_allowed(world: FakeWorld):
    head = world.repo.head()
    with pytest.raises(Invalid) as kind:
        reports.record_check(
            world.sf, "demo", "staging", kind="Smoke!", revision=head, status="passed", actor="ci"
        )
    assert kind.value.code == "invalid_check_kind"
    with pytest.raises(Invalid, match="status must be passed or failed"):
        reports.record_check(
            world.sf, "demo", "staging", kind="smoke", revision=head, status="ok", actor="ci"
        )
    with pytest.raises(Invalid, match="health must be one of healthy, progressing, degraded"):
        reports.record_deployment(
            world.sf, "demo", "staging", revision=head, health="fine", actor="ci"
        )
    with pytest.raises(Invalid) as unknown:
        reports.record_deployment(
            world.sf, "demo", "staging", revision="0" * 40, health="healthy", actor="ci"
        )
    assert unknown.value.code == "unknown_revision"
    with pytest.raises(NotFound):
        reports.record_deployment(
            world.sf, "demo", "qa", revision=head, health="healthy", actor="ci"
        )


def test_checks_are_listed_newest_first_and_filtered(world: FakeWorld):
    first = world.repo.head()
    reports.record_check(
        world.sf, "demo", "staging", kind="smoke", revision=first, status="failed", actor="ci"
    )
    second = world.repo.commit({"README.md": "later"})
    reports.record_check(
        world.sf, "demo", "staging", kind="load", revision=second, status="passed", actor="ci"
    )

    listed = reports.list_checks(world.sf, "demo", "staging")
    only_first = reports.list_checks(world.sf, "demo", "staging", revision=first[:12])

    assert [(c.kind, c.status) for c, _, _ in listed] == [
        ("load", CheckStatus.PASSED),
        ("smoke", CheckStatus.FAILED),
    ]
    assert [c.kind for c, _, _ in only_first] == ["smoke"]
    assert [
        c.kind for c, _, _ in reports.list_checks(world.sf, "demo", "staging", kind="load")
    ] == ["load"]


def test_a_report_re_evaluates_the_promotions_waiting_on_its_stage(world: FakeWorld):
    waiting = promotions.promote(world.sf, "demo", to="staging", actor=Actor("alice"))
    head = world.repo.head()
    feedback.record_cluster_report(world.sf, flux("demo-development", head), actor="flux")
    assert promotions.get_promotion(world.sf, waiting.id or 0).status == PromotionStatus.BLOCKED

    reports.record_check(
        world.sf, "demo", "development", kind="smoke", revision=head, status="passed", actor="ci"
    )

    assert promotions.get_promotion(world.sf, waiting.id or 0).status == PromotionStatus.APPLIED


def test_a_degraded_report_of_a_promoted_state_rolls_it_back(world: FakeWorld):
    head = world.repo.head()
    reports.record_deployment(
        world.sf, "demo", "development", revision=head, health="healthy", actor="ci"
    )
    reports.record_check(
        world.sf, "demo", "development", kind="smoke", revision=head, status="passed", actor="ci"
    )
    promotions.promote(world.sf, "demo", to="staging", actor=Actor("alice"))
    staging = world.repo.head()
    reports.record_deployment(
        world.sf, "demo", "staging", revision=staging, health="healthy", actor="ci"
    )
    for kind in ("smoke", "load"):
        reports.record_check(
            world.sf, "demo", "staging", kind=kind, revision=staging, status="passed", actor="ci"
        )
    world.clock.advance(minutes=2)
    waiting = promotions.promote(world.sf, "demo", to="production", actor=Actor("alice"))
    applied = promotions.approve(world.sf, waiting.id or 0, actor=Actor("bob"))

    answer = feedback.record_cluster_report(
        world.sf, flux("demo-production", applied.revision or "", "degraded"), actor="flux"
    )

    assert answer["recorded"] is True and answer["health"] == "degraded"
    rolled = promotions.get_promotion(world.sf, applied.id or 0)
    assert rolled.status == PromotionStatus.ROLLED_BACK
    assert "production reported degraded" in (rolled.message or "")
