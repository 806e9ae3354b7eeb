"""The promotion gates of manifest policies: ``policy`` and ``parity`` (issue #17).

Both judge the target as the promotion would leave it, so the promotion is played once in a
throwaway working tree (as a preview is) and rendered there; the render is cached by content,
and the apply that follows finds it. ``policy`` fails on enforce violations the target does not
have already (a promotion that does not make things worse passes and says so); ``parity`` fails
on the differences its rules count, when its action is ``enforce``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stageflow.domain import actors
from stageflow.domain.errors import StageflowError
from stageflow.domain.flags import render_flag_document
from stageflow.domain.gates import FAILED, PASSED, GateResult
from stageflow.domain.pipeline import App, Pipeline, Stage
from stageflow.domain.policies import ENFORCE
from stageflow.domain.policies.parity import Difference, Side, compare
from stageflow.domain.promotions import PromotionPlan, Selection, carry_evaluators, plan_promotion
from stageflow.services.context import Stageflow
from stageflow.services.policies import Judgement, judge, tools
from stageflow.services.policy_renders import Recording, committed, rendered
from stageflow.services.ports import Change, Workspace
from stageflow.services.state import (
    Snapshot,
    flags_in,
    flags_path,
    kustomization_path,
    pipeline_in,
)

_SHOWN = 5  # differences and violations named in a gate's message; evidence has them all


@dataclass(frozen=True)
class _Played:
    """What the throwaway promotion found: the policy judgement and the parity differences."""

    judgement: Judgement | None
    differences: tuple[Difference, ...] | None


class _Done(Exception):
    """Raised inside the throwaway write to carry its findings out and drop the tree."""

    def __init__(self, played: _Played) -> None:
        super().__init__("played")
        self.played = played


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
        played = _play(sf, snap, app, source, target, selection)
    except StageflowError as exc:
        kinds = (["policy"] if specs else []) + (["parity"] if parity else [])
        return [
            GateResult(
                kind, kind, FAILED, f"the promotion's result could not be checked: {exc.message}"
            )
            for kind in kinds
        ]
    gates = []
    if played.judgement is not None:
        gates.append(_policy_gate(target, played.judgement))
    if played.differences is not None and parity is not None:
        gates.append(_parity_gate(target, parity.with_stage, parity.action, played.differences))
    return gates


def _plan(
    snap: Snapshot, app: App, source: Stage, target: Stage, selection: Selection
) -> PromotionPlan:
    return plan_promotion(
        source_images=snap.images(app, source.name),
        target_images=snap.images(app, target.name),
        source_flags=snap.flags(app, source.name),
        target_flags=snap.flags(app, target.name),
        target=target,
        selection=selection,
    )


def _play(
    sf: Stageflow, snap: Snapshot, app: App, source: Stage, target: Stage, selection: Selection
) -> _Played:
    plan = _plan(snap, app, source, target, selection)

    def operation(ws: Workspace) -> Change[Any]:
        recording = Recording(ws)
        pipeline = pipeline_in(sf, ws)
        mirror = _mirror(sf, recording, pipeline, app, target)
        apply_plan(sf, recording, app, source, target, plan)
        judgement = None
        if pipeline.policies.for_stage(target.name):
            judgement = judge(sf, recording, pipeline, app, target)
        differences = None
        if mirror is not None:
            spec = pipeline.policies.parity[target.name]
            reference = Side(
                target.name, target.namespace, rendered(sf, recording, app, target.name, tools(sf))
            )
            moved = [move.after.name for move in plan.images]
            differences = tuple(compare(spec, mirror, reference, moved))
        raise _Done(_Played(judgement, differences))

    try:
        sf.repo.change(operation, actor=actors.PREVIEW, trailers={})
    except _Done as done:
        return done.played
    raise AssertionError("the throwaway promotion always raises _Done")  # pragma: no cover


def _mirror(
    sf: Stageflow, ws: Recording, pipeline: Pipeline, app: App, target: Stage
) -> Side | None:
    spec = pipeline.policies.parity.get(target.name)
    if spec is None:
        return None
    other = pipeline.stage(spec.with_stage)
    return Side(other.name, other.namespace, committed(sf, ws, app, other.name, tools(sf)))


def apply_plan(
    sf: Stageflow, ws: Workspace, app: App, source: Stage, target: Stage, plan: PromotionPlan
) -> None:
    """Write what ``plan`` moves into the target's overlay, byte for byte as the apply does."""
    path = kustomization_path(app, target.name)
    text = ws.read(path)
    if plan.images and text is not None:
        doc = sf.codecs.parse_kustomization(text, path)
        for move in plan.images:
            doc.set_image(move.after, clear_other=True)
        ws.write(path, doc.render())
    if plan.flags:
        keys = [move.key for move in plan.flags]
        source_flags = flags_in(sf, ws, app, source.name)
        moved = carry_evaluators(
            plan.apply_flags(flags_in(sf, ws, app, target.name)), source_flags, keys
        )
        moved = moved.with_metadata(flagSetId=app.name, version=ws.revision)
        ws.write(flags_path(app, target.name), render_flag_document(moved))


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
