"""The promotion plan and the promotion's transitions, as pure data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stageflow.domain.errors import Conflict, Invalid
from stageflow.domain.feedback import (
    argocd_report,
    flux_report,
    parse_flux_revision,
    stage_of,
)
from stageflow.domain.flags import FlagDocument, new_flag, set_enabled
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import App, Gates, Pipeline, Stage, parse_pipeline
from stageflow.domain.promotions import (
    Promotion,
    PromotionStageSkipped,
    Selection,
    plan_promotion,
    source_stage,
)

PRODUCTION = Stage(
    name="production", namespace="production", allow=frozenset({"stable"}), gates=Gates()
)
SHA = "a" * 40


def flags(*items) -> FlagDocument:
    doc = FlagDocument(flags={})
    for key, lifecycle, on in items:
        doc = doc.put(set_enabled(new_flag(key, lifecycle=lifecycle), on))
    return doc


def test_images_that_differ_move_and_flags_respect_the_target_policy():
    plan = plan_promotion(
        source_images=[ImageRef("ghcr.io/acme/demo", tag="1.5.0"), ImageRef("redis", tag="7")],
        target_images=[ImageRef("ghcr.io/acme/demo", tag="1.4.0"), ImageRef("redis", tag="7")],
        source_flags=flags(("new_ui", "stable", True), ("beta_api", "beta", True)),
        target_flags=flags(("new_ui", "stable", False)),
        target=PRODUCTION,
        selection=Selection(),
    )

    assert [m.to_json() for m in plan.images] == [
        {"name": "ghcr.io/acme/demo", "from": "1.4.0", "to": "1.5.0"}
    ]
    moves = {m.key: m for m in plan.flags}
    assert moves["new_ui"].to_json() == {"key": "new_ui", "from": "off", "to": "on"}
    # beta is not allowed ON in production: it arrives defined but OFF
    assert moves["beta_api"].after.enabled is False and moves["beta_api"].held_off
    assert moves["beta_api"].before is None
    message = plan.commit_message("demo", "staging", "production")
    assert message.splitlines()[0] == "demo: staging -> production"
    assert "images: ghcr.io/acme/demo 1.4.0 -> 1.5.0" in message
    assert "flags: new_ui off -> on" in message


def test_selection_narrows_the_plan():
    common = dict(
        source_images=[ImageRef("a", tag="2"), ImageRef("b", tag="2")],
        target_images=[ImageRef("a", tag="1"), ImageRef("b", tag="1")],
        source_flags=flags(("x", "stable", True), ("y", "stable", True)),
        target_flags=flags(),
        target=PRODUCTION,
    )
    only_a = plan_promotion(**common, selection=Selection(images=("a",), flags="none"))
    assert [m.name for m in only_a.images] == ["a"] and not only_a.flags
    only_y = plan_promotion(**common, selection=Selection(images=False, flags=("y",)))
    assert not only_y.images and [m.key for m in only_y.flags] == ["y"]
    with pytest.raises(Invalid):
        plan_promotion(**common, selection=Selection(images=("nope",)))
    with pytest.raises(Invalid):
        plan_promotion(**common, selection=Selection(flags=("nope",)))
    same = plan_promotion(
        source_images=[ImageRef("a", tag="1")],
        target_images=[ImageRef("a", tag="1")],
        source_flags=flags(),
        target_flags=flags(),
        target=PRODUCTION,
        selection=Selection(),
    )
    assert same.empty


def test_source_stage_is_always_the_one_before():
    pipeline = parse_pipeline(
        {
            "apiVersion": "stageflow/v1",
            "apps": {"demo": {"path": "apps/demo"}},
            "stages": [{"name": "dev"}, {"name": "stg"}, {"name": "prod"}],
        }
    )
    assert source_stage(pipeline, "prod", None).name == "stg"
    assert source_stage(pipeline, "prod", "stg").name == "stg"
    with pytest.raises(PromotionStageSkipped):
        source_stage(pipeline, "prod", "dev")
    with pytest.raises(PromotionStageSkipped):
        source_stage(pipeline, "dev", None)


def test_promotion_refuses_illegal_transitions():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    promotion = Promotion(
        app="demo",
        source="stg",
        target="prod",
        status="applied",
        requested_by="alice",
        selection=Selection(),
        plan=None,
        plan_json={},
        gates=(),
        diff="",
        created_at=now,
        updated_at=now,
        id=1,
    )
    assert promotion.moved_to("rolled_back", now).status == "rolled_back"
    with pytest.raises(Conflict):
        promotion.moved_to("applying", now)
    with pytest.raises(Conflict):
        promotion.moved_to("rolled_back", now).moved_to("rolled_back", now)


@pytest.mark.parametrize(
    ("text", "sha"),
    [
        (f"main@sha1:{SHA}", SHA),
        (f"main/{SHA}", SHA),
        (SHA, SHA),
        (f"sha1:{SHA}", SHA),
        (f"v1.2.3@sha1:{SHA.upper()}", SHA),
        ("main@sha1:abc", None),
        ("latest", None),
    ],
)
def test_flux_revisions(text, sha):
    assert parse_flux_revision(text) == sha


def test_flux_and_argocd_reports():
    event = {
        "involvedObject": {"kind": "Kustomization", "name": "demo-staging"},
        "reason": "HealthCheckFailed",
        "metadata": {"revision": f"main@sha1:{SHA}"},
    }
    report = flux_report(event)
    assert report is not None and (report.object_name, report.health) == (
        "demo-staging",
        "degraded",
    )
    assert flux_report({**event, "reason": "ArtifactUpToDate"}) is None
    with pytest.raises(Invalid):
        flux_report({"hello": "world"})
    argo = argocd_report(
        {
            "app": "demo-prod",
            "revision": SHA,
            "sync_status": "Synced",
            "health_status": "Healthy",
            "operation_phase": "Failed",
        }
    )
    assert argo is not None and argo.health == "degraded"


def test_objects_map_to_app_and_stage():
    pipeline = Pipeline(
        apps={"demo": App(name="demo", path="apps/demo", flux={"staging": "apps-staging"})},
        stages=(
            Stage(name="staging", namespace="staging", allow=frozenset(), gates=Gates()),
            Stage(name="production", namespace="production", allow=frozenset(), gates=Gates()),
        ),
    )
    assert stage_of(pipeline, "flux", "apps-staging") == ("demo", "staging")
    assert stage_of(pipeline, "flux", "demo-production") == ("demo", "production")
    assert stage_of(pipeline, "argocd", "apps-staging") is None
