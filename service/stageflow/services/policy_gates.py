"""The promotion gates of manifest policies: ``policy`` and ``parity`` (issue #17).

Both judge the target as the promotion would leave it, so the promotion is played once, read-only,
as its dry run is (``promotion_plans.played``: the same ``PromotionWrite`` in a
``ScratchWorkspace``); its renders are held by content, and the apply that follows, writing the
same bytes on the same revision, finds them (and the verdicts) held. ``policy`` fails on enforce
violations the target does not have already (a promotion that does not make things worse passes
and says so); ``parity`` fails on the differences its rules count, when its action is
``enforce``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stageflow.domain.errors import StageflowError
from stageflow.domain.gates import FAILED, PASSED, GateResult
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.policies import ENFORCE
from stageflow.domain.policies.parity import Difference, Side, compare
from stageflow.domain.promotions import Selection
from stageflow.services.context import Stageflow
from stageflow.services.policies import Judgement, judge, tools
from stageflow.services.policy_renders import Recording, committed, rendered
from stageflow.services.promotion_plans import Planned, PromotionWrite, played
from stageflow.services.state import Snapshot, pipeline_in

_SHOWN = 5  # differences and violations named in a gate's message; evidence has them all


@dataclass(frozen=True)
class _Played:
    """What the played promotion found: the policy judgement and the parity differences."""

    judgement: Judgement | None
    differences: tuple[Difference, ...] | None


def policy_gates(
    sf: Stageflow,
    snap: Snapshot,
    app: App,
    source: Stage,
    target: Stage,
    selection: Selection | None,
) -> list[GateResult]:
    """The ``policy`` and ``parity`` gates of promoting ``app`` into ``target`` (may be none).

    Without a selection (the overview, which renders nothing) there are none.
    """
    specs = snap.pipeline.policies.for_stage(target.name)
    parity = snap.pipeline.policies.parity.get(target.name)
    if selection is None or (not specs and parity is None):
        return []
    try:
        found = _play(sf, snap, app, target, selection)
    except StageflowError as exc:
        kinds = (["policy"] if specs else []) + (["parity"] if parity else [])
        return [
            GateResult(
                kind, kind, FAILED, f"the promotion's result could not be checked: {exc.message}"
            )
            for kind in kinds
        ]
    gates = []
    if found.judgement is not None:
        gates.append(_policy_gate(target, found.judgement))
    if found.differences is not None and parity is not None:
        gates.append(_parity_gate(target, parity.with_stage, parity.action, found.differences))
    return gates


def _play(sf: Stageflow, snap: Snapshot, app: App, target: Stage, selection: Selection) -> _Played:
    """Play the promotion as its dry run does (``promotion_plans.played``) and judge the result.

    Rejected images are the apply's to refuse (and the promotion's, before its gates); the
    play only renders and judges.
    """
    write = PromotionWrite(sf, app.name, target.name, selection)
    return played(sf, snap.revision, write, lambda ws, done: _findings(sf, ws, done))


def _findings(sf: Stageflow, ws: Recording, done: Planned) -> _Played:
    """Judge the target as the played promotion left it, and compare it with its mirror."""
    pipeline = pipeline_in(sf, ws)
    app, target = done.app, done.target
    judgement = None
    if pipeline.policies.for_stage(target.name):
        judgement = judge(sf, ws, pipeline, app, target)
    spec = pipeline.policies.parity.get(target.name)
    if spec is None:
        return _Played(judgement, None)
    other = pipeline.stage(spec.with_stage)
    # the mirror as committed (the promotion writes only the target), the target as played:
    # its render is the one the write just made and holds
    mirror = Side(other.name, other.namespace, committed(sf, ws, app, other.name, tools(sf)))
    reference = Side(target.name, target.namespace, rendered(sf, ws, app, target.name, tools(sf)))
    moved = [move.after.name for move in done.plan.images]
    return _Played(judgement, tuple(compare(spec, mirror, reference, moved)))


def _listed(items: Sequence[str]) -> str:
    more = f"; and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return "; ".join(items[:_SHOWN]) + more


def _policy_gate(target: Stage, judgement: Judgement) -> GateResult:
    evidence: dict[str, Any] = {
        "violations": [v.to_json() for v in judgement.new],
        "warnings": judgement.warnings(),
        "skipped": list(judgement.verdict.skipped),
    }
    if judgement.new:
        shown = _listed([f"{v.object}: {v.message} ({v.policy})" for v in judgement.new])
        return GateResult(
            "policy", "policy", FAILED, f"{target.name} would break: {shown}", evidence
        )
    message = f"{target.name}'s result breaks no enforced policy"
    if judgement.kept:
        message = (
            f"{target.name} keeps {len(judgement.kept)} violation(s) it has already and adds none "
            "(not worse)"
        )
    if evidence["warnings"]:
        warned = _listed([f"{w['object']}: {w['message']}" for w in evidence["warnings"]])
        message += f"; warnings: {warned}"
    return GateResult("policy", "policy", PASSED, message, evidence)


def _parity_gate(
    target: Stage, with_stage: str, action: str, differences: Sequence[Difference]
) -> GateResult:
    failing = [d for d in differences if d.fails]
    evidence = {
        "with": with_stage,
        "action": action,
        "differences": [d.to_json() for d in differences],
    }
    if not differences:
        return GateResult(
            "parity", "parity", PASSED, f"{with_stage} mirrors {target.name}", evidence
        )
    listed = _listed([d.describe() for d in (failing or differences)])
    if failing and action == ENFORCE:
        message = f"{with_stage} differs from {target.name} beyond its parity rules: {listed}"
        return GateResult("parity", "parity", FAILED, message, evidence)
    what = "beyond its parity rules (warn)" if failing else "within its parity rules"
    message = f"{with_stage} differs from {target.name} {what}: {listed}"
    return GateResult("parity", "parity", PASSED, message, evidence)
