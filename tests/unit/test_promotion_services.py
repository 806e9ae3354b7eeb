"""The promotion use cases' decisions, over in-memory fakes (milliseconds each).

The real Git, kustomize and database run in tests/integration and tests/e2e; here each test
arranges a ledger and a repo in memory and asserts on what the use case decided.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stageflow.domain import actors
from stageflow.domain.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RenderFailed,
    Unavailable,
)
from stageflow.domain.gates import Freeze, Hold, MetricReading
from stageflow.domain.promotions import NothingToPromote, PromotionStatus, Rejection, Selection
from stageflow.services import promotions, reports
from stageflow.services.changes import Actor
from stageflow.services.ports import Outage
from stageflow.services.promotion_plans import PromotionWrite, SourceChanged
from tests.fakes import FakeMetrics, FakeWorkspace, FakeWorld, fake_stageflow

ALICE, BOB = Actor("alice"), Actor("bob")
DEV_FLAGS = "apps/demo/overlays/development/flags.json"
STAGING_KUSTOMIZATION = "apps/demo/overlays/staging/kustomization.yaml"
STAGING_FLAGS = "apps/demo/overlays/staging/flags.json"


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return fake_stageflow(tmp_path)


def vetted(world: FakeWorld, stage: str = "development", *kinds: str) -> str:
    """Report ``stage`` healthy at the head, with passed checks of ``kinds`` (default: smoke)."""
    head = world.repo.head()
    reports.record_deployment(
        world.sf, "demo", stage, revision=head, health="healthy", actor="argocd"
    )
    for kind in kinds or ("smoke",):
        reports.record_check(
            world.sf, "demo", stage, kind=kind, revision=head, status="passed", actor="ci"
        )
    return head


def blocked(world: FakeWorld, to: str = "staging") -> int:
    promotion = promotions.promote(world.sf, "demo", to=to, actor=ALICE)
    assert promotion.status == "blocked" and promotion.id is not None
    return promotion.id


def applied_to_production(world: FakeWorld) -> int:
    """Promote into staging, soak it, and open a production promotion waiting for approval."""
    vetted(world)
    promotions.promote(world.sf, "demo", to="staging", actor=ALICE)
    vetted(world, "staging", "smoke", "load")
    world.clock.advance(minutes=2)
    waiting = promotions.promote(world.sf, "demo", to="production", actor=ALICE)
    assert waiting.status == "pending_approval" and waiting.id is not None
    return waiting.id


# -- opening ------------------------------------------------------------------------------------


def test_a_promotion_whose_gates_hold_is_applied_as_one_commit(world: FakeWorld):
    vetted(world)
    before = world.repo.head()

    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE, reason="release")

    assert promotion.status == PromotionStatus.APPLIED
    assert promotion.revision == world.repo.head() != before
    commit = world.repo.commits[promotion.revision]
    assert commit.trailers["Stageflow-Promotion"] == str(promotion.id)
    assert commit.message.startswith("demo: development -> staging")
    assert "1.4.1" in (world.repo.read(promotion.revision, STAGING_KUSTOMIZATION) or "")
    assert promotion.diff.startswith("--- kustomize build apps/demo/overlays/staging (before)")
    actions = [entry.action for entry in world.ledger.audit]
    assert actions[-3:] == ["promotion.create", "promotion.apply", "promotion.applied"]
    assert world.renderer.renders == 2  # once before and once after the write, no preview


def test_a_dry_run_stores_nothing_and_never_takes_the_write_path(world: FakeWorld):
    vetted(world)
    head = world.repo.head()

    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE, dry_run=True)

    assert promotion.id is None and promotion.status == PromotionStatus.APPLYING
    assert world.repo.changes == 0 and world.repo.head() == head
    assert world.ledger.promotions == {}
    assert "+images:" not in promotion.diff and "1.4.1" in promotion.diff
    assert promotion.message == "every gate holds"


def test_a_blocked_promotion_is_stored_with_its_preview_and_every_reason(world: FakeWorld):
    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    assert promotion.status == PromotionStatus.BLOCKED and promotion.id == 1
    assert world.repo.changes == 0
    assert promotion.diff and promotion.plan_json["images"]
    assert promotion.message is not None and promotion.message.startswith("deployment:")
    assert "check:smoke" in promotion.message


def test_a_newer_promotion_supersedes_the_waiting_one(world: FakeWorld):
    first = blocked(world)
    second = blocked(world)

    assert world.ledger.promotions[first].status == PromotionStatus.SUPERSEDED
    assert world.ledger.promotions[first].message == f"superseded by promotion {second}"


def test_nothing_to_promote_answers_at_once(world: FakeWorld):
    with pytest.raises(NothingToPromote):
        promotions.promote(
            world.sf,
            "demo",
            to="staging",
            actor=ALICE,
            selection=Selection(images=False, flags="none"),
        )
    assert world.repo.changes == 0 and world.renderer.renders == 0


def test_a_rejected_image_version_is_refused(world: FakeWorld):
    with world.sf.uow() as uow:
        uow.rejections.add(
            Rejection("demo", "ghcr.io/acme/demo", "1.4.1", None, "bad", "bob", world.clock())
        )
        uow.commit()

    with pytest.raises(Conflict) as refused:
        promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    assert refused.value.code == "image_rejected"


def test_a_target_overlay_gone_missing_is_named(world: FakeWorld):
    world.repo.commit({STAGING_KUSTOMIZATION: None})

    with pytest.raises(Invalid) as missing:
        promotions.promote(world.sf, "demo", to="staging", actor=ALICE, dry_run=True)

    assert missing.value.code == "overlay_missing"


def test_frozen_and_held_targets_block(world: FakeWorld):
    vetted(world)
    with world.sf.uow() as uow:
        uow.freezes.add(Freeze("staging", "release week", "carol", at=world.clock()))
        uow.holds.add(Hold("demo", "staging", "incident", "dave", world.clock()))
        uow.commit()

    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    failed = {gate.name for gate in promotion.gates if gate.status == "failed"}
    assert failed == {"freeze", "hold"} and promotion.status == "blocked"


def test_metric_gates_read_the_metrics_source(tmp_path: Path):
    pipeline = (Path(__file__).parents[2] / "overlays" / "stageflow.yaml").read_text()
    files = {"stageflow.yaml": pipeline.replace("enabled: false", "enabled: true")}
    world = fake_stageflow(tmp_path, files=None)
    world.repo.commit(files)
    error_rate = (
        'sum(rate(http_requests_total{namespace="development",status=~"5.."}[5m])) / '
        'sum(rate(http_requests_total{namespace="development"}[5m]))'
    )
    world.sf.metrics = FakeMetrics({error_rate: MetricReading(value=0.001, series=1)})

    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE, dry_run=True)

    gates = {gate.name: gate for gate in promotion.gates}
    assert gates["metric:error-rate"].status == "passed"
    assert gates["metric:p95-latency-ms"].status == "inconclusive"  # no data: fails closed

    world.sf.metrics = None
    unconfigured = promotions.promote(world.sf, "demo", to="staging", actor=ALICE, dry_run=True)
    assert all(g.status == "inconclusive" for g in unconfigured.gates if g.kind == "metric")


# -- applying ------------------------------------------------------------------------------------


def test_a_write_that_fails_fails_the_promotion(world: FakeWorld):
    vetted(world)
    world.repo.fail_before_push = RenderFailed("kustomize build failed for staging: boom")

    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    assert promotion.status == PromotionStatus.FAILED
    assert promotion.message == "kustomize build failed for staging: boom"


def test_an_unreachable_remote_is_settled_from_its_history(world: FakeWorld):
    vetted(world)
    world.repo.fail_before_push = Unavailable("the remote went away", code="git_unavailable")

    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    # no commit with its trailer reached the remote: nothing changed, it failed
    assert promotion.status == PromotionStatus.FAILED
    assert "interrupted before its commit reached the remote" in (promotion.message or "")


def test_a_push_that_landed_while_the_ledger_is_down_is_recorded_later(world: FakeWorld):
    vetted(world)
    world.repo.fail_before_push = Unavailable(
        "recorded later", code="database_unavailable", details={"committed": True}
    )

    with pytest.raises(Unavailable) as later:
        promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    assert later.value.details["committed"] is True
    assert world.ledger.promotions[1].status == PromotionStatus.APPLYING  # the settler decides


def test_a_ledger_that_fails_after_the_push_says_it_is_done(world: FakeWorld):
    vetted(world)

    def fail_on_applied(ledger) -> None:
        if ledger.audit and ledger.audit[-1].action == "promotion.applied":
            raise Unavailable("database gone", code="database_unavailable")

    world.ledger.on_commit = fail_on_applied

    with pytest.raises(Unavailable) as done:
        promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    assert done.value.details == {"committed": True, "revision": world.repo.head()}
    assert world.sf.ledger_outage.known


def test_the_write_refuses_a_source_that_changed_since_its_gates(world: FakeWorld):
    head = world.repo.head()
    write = PromotionWrite(world.sf, "demo", "staging", Selection(), expected_source="old")
    workspace = FakeWorkspace(head, world.repo.commits[head].files, world.repo.scratch)

    with pytest.raises(SourceChanged) as changed:
        write.write(workspace)

    assert changed.value.details["expected"] == "old"


# -- settling ------------------------------------------------------------------------------------


def applying(world: FakeWorld) -> int:
    """A promotion left `applying` by a process that is gone (no applier, long ago)."""
    vetted(world)
    world.repo.fail_before_push = Unavailable(
        "ledger down", code="database_unavailable", details={"committed": True}
    )
    with pytest.raises(Unavailable):
        promotions.promote(world.sf, "demo", to="staging", actor=ALICE)
    with world.sf.uow() as uow:
        stored = uow.promotions.get(1)
        assert stored is not None
        uow.promotions.save(replace(stored, applier=None))
        uow.commit()
    world.clock.advance(minutes=10)
    return 1


def test_an_abandoned_apply_whose_commit_landed_settles_applied(world: FakeWorld):
    promotion_id = applying(world)
    # the dead process's push had landed after all
    landed = world.repo.commit(
        {"README.md": "x"}, trailers={"Stageflow-Promotion": str(promotion_id)}
    )

    settled = promotions.settle_all(world.sf)

    assert [p.status for p in settled] == [PromotionStatus.APPLIED]
    assert settled[0].revision == landed and "settled from the remote" in (settled[0].message or "")


def test_an_abandoned_apply_settles_failed_and_waits_while_the_remote_is_down(world: FakeWorld):
    promotion_id = applying(world)
    world.repo.down = Outage(0.0, "unreachable")

    assert promotions.get_promotion(world.sf, promotion_id).status == PromotionStatus.APPLYING

    world.repo.down = None
    assert promotions.get_promotion(world.sf, promotion_id).status == PromotionStatus.FAILED


def test_an_apply_still_in_progress_is_left_alone(world: FakeWorld):
    vetted(world)
    world.repo.fail_before_push = Unavailable(
        "ledger down", code="database_unavailable", details={"committed": True}
    )
    with pytest.raises(Unavailable):
        promotions.promote(world.sf, "demo", to="staging", actor=ALICE)

    # its applier is this process, which no longer works on it: abandoned, so it settles
    assert promotions.settle(world.sf, 1).status == PromotionStatus.FAILED
    # a settled promotion is not settled again
    assert promotions.settle(world.sf, 1, force=True).status == PromotionStatus.FAILED


def test_a_finish_someone_else_made_first_stands(world: FakeWorld):
    promotion_id = blocked(world)
    stale = promotions.find_promotion(world.sf, promotion_id)
    assert stale is not None
    promotions.cancel(world.sf, promotion_id, actor=BOB)

    answer, moved = promotions.finish_once(
        world.sf, stale, PromotionStatus.FAILED, actors.AUTOMATION, message="late"
    )

    assert not moved and answer.status == PromotionStatus.CANCELLED


def test_an_unknown_promotion_is_404(world: FakeWorld):
    with pytest.raises(NotFound):
        promotions.get_promotion(world.sf, 42)
    with pytest.raises(NotFound):
        promotions.approve(world.sf, 42, actor=BOB)
    assert promotions.find_promotion(world.sf, 42) is None


# -- re-evaluating, approving, cancelling ---------------------------------------------------------


def test_a_blocked_promotion_applies_once_its_gates_hold(world: FakeWorld):
    promotion_id = blocked(world)

    vetted(world)  # the reports re-evaluate the waiting promotions of development

    promotion = promotions.get_promotion(world.sf, promotion_id)
    assert promotion.status == PromotionStatus.APPLIED
    assert world.repo.commits[promotion.revision or ""].trailers["Stageflow-Promotion"] == "1"


def test_a_source_that_moved_on_fails_the_waiting_promotion(world: FakeWorld):
    promotion_id = blocked(world)
    text = world.repo.read(world.repo.head(), DEV_FLAGS) or ""
    world.repo.commit({DEV_FLAGS: text.replace('"on"', '"off"', 1)})

    promotion = promotions.evaluate(world.sf, promotion_id, actor=BOB)

    assert promotion.status == PromotionStatus.FAILED
    assert "development changed since this promotion was opened" in (promotion.message or "")


def test_only_waiting_promotions_are_evaluated_approved_or_cancelled(world: FakeWorld):
    promotion_id = blocked(world)
    promotions.cancel(world.sf, promotion_id, actor=BOB)

    for use_case in (promotions.evaluate, promotions.approve, promotions.cancel):
        with pytest.raises(Conflict) as refused:
            use_case(world.sf, promotion_id, actor=BOB)
        assert refused.value.code == "promotion_not_waiting"


def test_approvals_are_four_eyes_and_counted_once(world: FakeWorld):
    promotion_id = applied_to_production(world)

    with pytest.raises(Forbidden) as own:
        promotions.approve(world.sf, promotion_id, actor=ALICE)
    assert own.value.code == "self_approval"

    with world.sf.uow() as uow:  # a first approval by bob that did not apply (frozen)
        uow.freezes.add(Freeze("production", "change freeze", "carol", at=world.clock()))
        uow.commit()
    still = promotions.approve(world.sf, promotion_id, actor=BOB, comment="lgtm")
    assert still.status == PromotionStatus.BLOCKED and still.approvers() == {"bob"}

    with pytest.raises(Conflict) as twice:
        promotions.approve(world.sf, promotion_id, actor=BOB)
    assert twice.value.code == "already_approved"


def test_an_approved_promotion_applies(world: FakeWorld):
    promotion_id = applied_to_production(world)

    promotion = promotions.approve(world.sf, promotion_id, actor=BOB, comment="lgtm")

    assert promotion.status == PromotionStatus.APPLIED
    approve = [e for e in world.ledger.audit if e.action == "promotion.approve"]
    assert approve[0].after == {"comment": "lgtm"} and approve[0].actor == "bob"


def test_a_concurrent_move_wins_over_a_re_evaluation(world: FakeWorld):
    promotion_id = blocked(world)
    stale = promotions.find_promotion(world.sf, promotion_id)
    assert stale is not None
    promotions.cancel(world.sf, promotion_id, actor=BOB)

    # the re-evaluation read it waiting; the cancel landed first: the cancel stands
    answer = promotions._save_or_reload(
        world.sf, stale, stale.moved_to(PromotionStatus.BLOCKED, world.clock()), "carol"
    )

    assert answer.status == PromotionStatus.CANCELLED


def test_re_evaluating_skips_a_promotion_it_cannot_evaluate(world: FakeWorld):
    blocked(world)
    pipeline = world.repo.read(world.repo.head(), "stageflow.yaml") or ""
    world.repo.commit({"stageflow.yaml": pipeline.replace("  demo:\n", "  other:\n")})

    assert promotions.reevaluate_waiting(world.sf) == []  # its app is gone: logged, skipped


def test_list_promotions_newest_first_and_filtered(world: FakeWorld):
    blocked(world)
    blocked(world)
    vetted(world)  # applies the waiting one

    everything = promotions.list_promotions(world.sf)
    applied = promotions.list_promotions(world.sf, status="applied", app="demo", target="staging")

    assert [(p.id, p.status) for p in everything] == [(2, "applied"), (1, "superseded")]
    assert [p.id for p in applied] == [2]
    assert promotions.list_promotions(world.sf, before_id=2) == [everything[1]]


def test_soak_counts_from_the_first_healthy_report(world: FakeWorld):
    vetted(world)
    promotions.promote(world.sf, "demo", to="staging", actor=ALICE)
    vetted(world, "staging", "smoke", "load")
    world.clock.advance(seconds=30)

    waiting = promotions.promote(world.sf, "demo", to="production", actor=ALICE, dry_run=True)

    soak = next(gate for gate in waiting.gates if gate.name == "soak")
    assert soak.status == "pending" and waiting.status == "blocked"
    world.clock.advance(seconds=31)
    again = promotions.promote(world.sf, "demo", to="production", actor=ALICE, dry_run=True)
    assert again.status == "pending_approval"


def test_a_flag_moves_with_the_shared_evaluators_its_targeting_uses(world: FakeWorld):
    doc = json.loads(world.repo.read(world.repo.head(), DEV_FLAGS) or "")
    doc["$evaluators"] = {"acme": {"ends_with": [{"var": "email"}, "@acme.org"]}}
    doc["flags"]["acme_only"] = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"$ref": "acme"}, "on", "off"]},
        "metadata": {"lifecycle": "beta"},
    }
    world.repo.commit({DEV_FLAGS: json.dumps(doc, indent=2)})
    vetted(world)

    promotion = promotions.promote(
        world.sf, "demo", to="staging", actor=ALICE, selection=Selection(images=False)
    )

    assert promotion.status == PromotionStatus.APPLIED
    assert promotion.plan_json == {
        "images": [],
        "flags": [{"key": "acme_only", "from": "absent", "to": "on"}],
    }
    staging = json.loads(world.repo.read(world.repo.head(), STAGING_FLAGS) or "")
    assert staging["$evaluators"]["acme"] == doc["$evaluators"]["acme"]
    assert staging["flags"]["acme_only"]["targeting"] == {"if": [{"$ref": "acme"}, "on", "off"]}
    assert '"acme_only"' in promotion.diff


def test_an_apply_this_process_is_still_making_is_not_settled(world: FakeWorld):
    vetted(world)
    world.repo.fail_before_push = Unavailable(
        "ledger down", code="database_unavailable", details={"committed": True}
    )
    with world.sf.in_flight("promotion:demo:staging"):
        with pytest.raises(Unavailable):
            promotions.promote(world.sf, "demo", to="staging", actor=ALICE)
        # its applier is this process, which still works on it: it is left to finish
        assert promotions.settle(world.sf, 1).status == PromotionStatus.APPLYING
    assert promotions.settle(world.sf, 1).status == PromotionStatus.FAILED
