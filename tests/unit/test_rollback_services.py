"""The rollback use cases' decisions, over in-memory fakes (milliseconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.domain import actors
from stageflow.domain.errors import Conflict, NotFound, Unavailable
from stageflow.domain.images import ImageRef
from stageflow.domain.promotions import PromotionStatus
from stageflow.services import promotions, reports, rollbacks
from stageflow.services.changes import Actor
from tests.fakes import FakeWorld, fake_stageflow

ALICE, BOB = Actor("alice"), Actor("bob")
STAGING_KUSTOMIZATION = "apps/demo/overlays/staging/kustomization.yaml"
PRODUCTION_KUSTOMIZATION = "apps/demo/overlays/production/kustomization.yaml"


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return fake_stageflow(tmp_path)


def report(world: FakeWorld, stage: str, *kinds: str, health: str = "healthy") -> str:
    head = world.repo.head()
    reports.record_deployment(world.sf, "demo", stage, revision=head, health=health, actor="ci")
    for kind in kinds:
        reports.record_check(
            world.sf, "demo", stage, kind=kind, revision=head, status="passed", actor="ci"
        )
    return head


def smoke_failed(world: FakeWorld, stage: str, revision: str | None = None):
    """Record a failed smoke check of ``stage`` (at the head); return the rollback it made."""
    _, _, rolled = reports.record_check(
        world.sf,
        "demo",
        stage,
        kind="smoke",
        revision=revision or world.repo.head(),
        status="failed",
        actor="ci",
    )
    return rolled


def in_staging(world: FakeWorld) -> int:
    report(world, "development", "smoke")
    promotion = promotions.promote(world.sf, "demo", to="staging", actor=ALICE)
    assert promotion.status == PromotionStatus.APPLIED and promotion.id is not None
    return promotion.id


def in_production(world: FakeWorld) -> int:
    in_staging(world)
    report(world, "staging", "smoke", "load")
    world.clock.advance(minutes=2)
    waiting = promotions.promote(world.sf, "demo", to="production", actor=ALICE)
    assert waiting.id is not None
    applied = promotions.approve(world.sf, waiting.id, actor=BOB)
    assert applied.status == PromotionStatus.APPLIED
    return waiting.id


def test_a_rollback_restores_the_overlay_as_a_new_commit(world: FakeWorld):
    promotion_id = in_staging(world)
    applied = promotions.get_promotion(world.sf, promotion_id)
    before = world.repo.read(
        world.repo.parent_of(applied.revision or "") or "", STAGING_KUSTOMIZATION
    )

    rolled = rollbacks.rollback(world.sf, promotion_id, actor=BOB, reason="slow")

    assert rolled.status == PromotionStatus.ROLLED_BACK
    assert rolled.rolled_back_revision == world.repo.head()
    assert world.repo.read(world.repo.head(), STAGING_KUSTOMIZATION) == before
    commit = world.repo.commits[world.repo.head()]
    assert commit.trailers["Stageflow-Rollback"] == str(promotion_id)
    assert "Stageflow-Rollback-Automatic" not in commit.trailers
    assert commit.message.endswith("\n\nslow")


def test_only_an_applied_promotion_rolls_back_and_only_once(world: FakeWorld):
    promotion_id = in_staging(world)
    rollbacks.rollback(world.sf, promotion_id, actor=BOB)

    with pytest.raises(Conflict) as twice:
        rollbacks.rollback(world.sf, promotion_id, actor=BOB)
    assert twice.value.code == "already_rolled_back"

    report(world, "development", "smoke")
    waiting = promotions.promote(
        world.sf, "demo", to="production", actor=ALICE
    )  # staging never reported: blocked
    with pytest.raises(Conflict) as blocked:
        rollbacks.rollback(world.sf, waiting.id or 0, actor=BOB)
    assert blocked.value.code == "promotion_not_applied"


def test_a_rollback_refuses_to_undo_a_later_change(world: FakeWorld):
    promotion_id = in_staging(world)
    text = world.repo.read(world.repo.head(), STAGING_KUSTOMIZATION) or ""
    later = world.repo.commit({STAGING_KUSTOMIZATION: text + "# a later hand edit\n"})

    with pytest.raises(Conflict) as refused:
        rollbacks.rollback(world.sf, promotion_id, actor=BOB)

    assert refused.value.code == "rollback_conflict"
    assert refused.value.details == {"path": STAGING_KUSTOMIZATION, "commit": later}


def test_a_rollback_whose_ledger_write_fails_is_done_all_the_same(world: FakeWorld):
    promotion_id = in_staging(world)

    def fail_on_rolled_back(ledger) -> None:
        if ledger.audit and ledger.audit[-1].action == "promotion.rolled_back":
            raise Unavailable("database gone", code="database_unavailable")

    world.ledger.on_commit = fail_on_rolled_back

    with pytest.raises(Unavailable) as later:
        rollbacks.rollback(world.sf, promotion_id, actor=BOB)

    assert later.value.details == {"committed": True, "revision": world.repo.head()}
    world.ledger.on_commit = None
    # the settler finds the commit and records it, once
    settled = rollbacks.settle_rollback(
        world.sf, promotion_id, world.repo.head(), actor=actors.AUTOMATION, automatic=False
    )
    assert settled is not None and settled.status == PromotionStatus.ROLLED_BACK
    assert "settled from the remote's history" in (settled.message or "")
    again = rollbacks.settle_rollback(
        world.sf, promotion_id, world.repo.head(), actor=actors.AUTOMATION, automatic=False
    )
    assert again is None


def test_a_failed_smoke_check_in_production_rolls_back_holds_and_rejects(world: FakeWorld):
    promotion_id = in_production(world)
    head = world.repo.head()

    rolled = smoke_failed(world, "production", head)

    assert rolled is not None and rolled.id == promotion_id
    assert rolled.status == PromotionStatus.ROLLED_BACK
    assert world.repo.commits[world.repo.head()].trailers["Stageflow-Rollback-Automatic"] == "true"
    hold = world.ledger.holds[-1]
    assert (hold.app, hold.stage, hold.by) == ("demo", "production", actors.AUTOMATION)
    rejected = rollbacks.rejections(world.sf, "demo")
    assert [(r.image, r.tag) for r in rejected] == [("ghcr.io/acme/demo", "1.4.1")]
    assert rollbacks.rejected([ImageRef("ghcr.io/acme/demo", tag="1.4.1")], rejected) == [
        (ImageRef("ghcr.io/acme/demo", tag="1.4.1"), rejected[0])
    ]


def test_a_failure_of_an_older_state_or_a_stage_without_auto_rollback_is_left_alone(
    world: FakeWorld,
):
    in_production(world)
    promoted = world.repo.head()
    head = world.repo.commit({"apps/demo/overlays/production/README": "notes"})

    # staging has no auto_rollback
    rolled = smoke_failed(world, "staging", head)
    assert rolled is None
    # production now runs a state the promotion did not write (a hand edit came after it)
    rolled = smoke_failed(world, "production", head)
    assert rolled is None
    # and a report about the promoted state, which production no longer has, is old news
    rolled = smoke_failed(world, "production", promoted)
    assert rolled is None
    assert world.repo.head() == head and world.ledger.rejections == []


def test_an_automatic_rollback_that_cannot_be_made_is_logged_and_skipped(
    world: FakeWorld, caplog: pytest.LogCaptureFixture
):
    promotion_id = in_production(world)
    world.repo.fail_before_push = Unavailable("the remote went away", code="git_unavailable")

    assert smoke_failed(world, "production") is None
    assert promotions.get_promotion(world.sf, promotion_id).status == PromotionStatus.APPLIED
    assert f"automatic rollback of promotion {promotion_id} skipped" in caplog.text


def test_a_rejection_is_released_once(world: FakeWorld):
    in_production(world)
    smoke_failed(world, "production")
    rejection = rollbacks.rejections(world.sf, "demo")[0]

    rollbacks.release_rejection(world.sf, "demo", rejection.id or 0, actor="bob")

    assert rollbacks.rejections(world.sf, "demo") == []
    assert world.ledger.audit[-1].action == "rejection.release"
    with pytest.raises(NotFound):
        rollbacks.release_rejection(world.sf, "demo", rejection.id or 0, actor="bob")


def test_a_rollback_deletes_a_file_the_promotion_created(world: FakeWorld):
    flags = "apps/demo/overlays/staging/flags.json"
    world.repo.commit({flags: None}, "staging starts without flags")
    promotion_id = in_staging(world)
    assert world.repo.read(world.repo.head(), flags) is not None

    rollbacks.rollback(world.sf, promotion_id, actor=BOB)

    assert world.repo.read(world.repo.head(), flags) is None
