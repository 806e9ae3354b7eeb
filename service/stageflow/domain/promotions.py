"""Promotions: what moves from a stage to the next (the plan), and the promotion's life."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from stageflow.domain import actors
from stageflow.domain.errors import Conflict, Invalid
from stageflow.domain.flags import Flag, FlagDocument, set_enabled, state_word
from stageflow.domain.gates import GateResult
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import Pipeline, Stage


class PromotionStatus(StrEnum):
    """Where a promotion is in its life (see ``TRANSITIONS``)."""

    BLOCKED = "blocked"
    PENDING_APPROVAL = "pending_approval"
    APPLYING = "applying"
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


# The statuses as plain strings, for the API schema, the CLI's choices and the pages.
STATUSES: tuple[str, ...] = tuple(status.value for status in PromotionStatus)
# A waiting promotion is re-evaluated (checks, approvals, a timer) until its gates hold.
WAITING: tuple[str, ...] = (PromotionStatus.BLOCKED.value, PromotionStatus.PENDING_APPROVAL.value)

_OPEN = frozenset(
    {
        PromotionStatus.BLOCKED,
        PromotionStatus.PENDING_APPROVAL,
        PromotionStatus.APPLYING,
        PromotionStatus.FAILED,
        PromotionStatus.CANCELLED,
        PromotionStatus.SUPERSEDED,
    }
)
# The transitions a promotion may take; anything else is refused by ``Promotion.moved_to``.
TRANSITIONS: Mapping[PromotionStatus, frozenset[PromotionStatus]] = {
    PromotionStatus.BLOCKED: _OPEN,
    PromotionStatus.PENDING_APPROVAL: _OPEN,
    PromotionStatus.APPLYING: frozenset({PromotionStatus.APPLIED, PromotionStatus.FAILED}),
    PromotionStatus.APPLIED: frozenset({PromotionStatus.ROLLED_BACK}),
    PromotionStatus.ROLLED_BACK: frozenset(),
    PromotionStatus.FAILED: frozenset(),
    PromotionStatus.CANCELLED: frozenset(),
    PromotionStatus.SUPERSEDED: frozenset(),
}


class PromotionStageSkipped(Invalid):
    """A promotion whose ``from`` is not the stage right before ``to`` (API: 422)."""

    code = "stage_skipped"


class NothingToPromote(Conflict):
    code = "nothing_to_promote"


@dataclass(frozen=True)
class Selection:
    """Which state a promotion moves: images (all, none, or names) and flags."""

    images: bool | tuple[str, ...] = True
    flags: str | tuple[str, ...] = "eligible"  # "eligible" | "none" | keys

    def wants_image(self, name: str) -> bool:
        return self.images if isinstance(self.images, bool) else name in self.images

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images if isinstance(self.images, bool) else list(self.images),
            "flags": self.flags if isinstance(self.flags, str) else list(self.flags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Selection:
        images = data.get("images", True)
        flags = data.get("flags", "eligible")
        return cls(
            images=images if isinstance(images, bool) else tuple(images),
            flags=flags if isinstance(flags, str) else tuple(flags),
        )


@dataclass(frozen=True)
class ImageMove:
    name: str
    before: ImageRef | None
    after: ImageRef

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "from": _version(self.before), "to": _version(self.after)}


@dataclass(frozen=True)
class FlagMove:
    key: str
    before: Flag | None
    after: Flag
    held_off: bool = False  # the target stage does not allow its lifecycle ON: it arrives OFF

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "from": state_word(self.before),
            "to": state_word(self.after),
        }
        if self.held_off:
            data["note"] = "arrives OFF: the target stage does not allow its lifecycle ON"
        return data


@dataclass(frozen=True)
class PromotionPlan:
    images: tuple[ImageMove, ...] = ()
    flags: tuple[FlagMove, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.images and not self.flags

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [move.to_json() for move in self.images],
            "flags": [move.to_json() for move in self.flags],
        }

    def apply_flags(self, target: FlagDocument) -> FlagDocument:
        doc = target
        for move in self.flags:
            doc = doc.put(move.after)
        return doc

    def commit_message(self, app: str, source: str, target: str) -> str:
        lines = [f"{app}: {source} -> {target}", ""]
        for image in self.images:
            lines.append(
                f"images: {image.name} {_version(image.before)} -> {_version(image.after)}"
            )
        for flag in self.flags:
            lines.append(f"flags: {flag.key} {state_word(flag.before)} -> {state_word(flag.after)}")
        return "\n".join(lines)


def _version(ref: ImageRef | None) -> str:
    if ref is None:
        return "(none)"
    text = ref.tag or ""
    if ref.digest:
        text += f"@{ref.digest[:19]}"
    return text or "(none)"


def plan_promotion(
    *,
    source_images: Sequence[ImageRef],
    target_images: Sequence[ImageRef],
    source_flags: FlagDocument,
    target_flags: FlagDocument,
    target: Stage,
    selection: Selection,
) -> PromotionPlan:
    """Compute what moves from the source stage into ``target``."""
    return PromotionPlan(
        image_moves(source_images, target_images, selection),
        flag_moves(source_flags, target_flags, target, selection),
    )


def image_moves(
    source: Sequence[ImageRef], target: Sequence[ImageRef], selection: Selection
) -> tuple[ImageMove, ...]:
    """The selected images of the source whose version differs in the target."""
    _refuse_unknown_images(source, selection)
    current = {ref.name: ref for ref in target}
    moves = (
        _image_move(ref, current.get(ref.name)) for ref in source if selection.wants_image(ref.name)
    )
    return tuple(move for move in moves if move is not None)


def _refuse_unknown_images(source: Sequence[ImageRef], selection: Selection) -> None:
    if not isinstance(selection.images, tuple):
        return
    known = {ref.name for ref in source}
    unknown = [name for name in selection.images if name not in known]
    if unknown:
        raise Invalid(
            f"image(s) {', '.join(unknown)} are not in the source stage; it has "
            f"{', '.join(sorted(known)) or 'no images'}",
            code="unknown_image",
        )


def _image_move(ref: ImageRef, before: ImageRef | None) -> ImageMove | None:
    """The move of ``ref`` into a target that has ``before`` (None when they are the same)."""
    if before is not None and (before.tag, before.digest) == (ref.tag, ref.digest):
        return None
    # the target keeps its own newName: only the version moves
    after = ImageRef(
        name=ref.name,
        tag=ref.tag,
        digest=ref.digest,
        new_name=before.new_name if before else ref.new_name,
    )
    return ImageMove(ref.name, before, after)


def flag_moves(
    source: FlagDocument, target_flags: FlagDocument, target: Stage, selection: Selection
) -> tuple[FlagMove, ...]:
    """The selected flags of the source that differ in the target, as the target allows them."""
    moves = (
        _flag_move(key, source.flags[key], target_flags.flags.get(key), target)
        for key in _selected_flags(source, selection)
    )
    return tuple(move for move in moves if move is not None)


def _selected_flags(source: FlagDocument, selection: Selection) -> Sequence[str]:
    if selection.flags == "none":
        return ()
    if not isinstance(selection.flags, tuple):
        return list(source.flags)
    unknown = [key for key in selection.flags if key not in source.flags]
    if unknown:
        raise Invalid(
            f"flag(s) {', '.join(unknown)} are not defined in the source stage",
            code="unknown_flag",
        )
    return selection.flags


def _flag_move(key: str, wanted: Flag, present: Flag | None, target: Stage) -> FlagMove | None:
    """The move of ``wanted`` into a target that has ``present`` (None when they are equal).

    A flag whose lifecycle the target does not allow ON arrives defined but OFF.
    """
    held_off = False
    if wanted.enabled and not target.allows(wanted.policy_lifecycle):
        wanted = set_enabled(wanted, False)
        held_off = True
    if present == wanted:
        return None
    return FlagMove(key, present, wanted, held_off)


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


def carry_evaluators(
    target: FlagDocument, source: FlagDocument, keys: Sequence[str]
) -> FlagDocument:
    """Bring along the shared ``$evaluators`` the moved flags' targeting refers to.

    An evaluator the target lacks is copied; one the target defines differently is a 409, since
    changing it would change every other flag of the target that uses it.
    """
    needed: set[str] = set()
    pending: list[Any] = [source.flags[key].targeting for key in keys if key in source.flags]
    while pending:
        found: set[str] = set()
        _refs(pending.pop(), found)
        for name in found - needed:
            needed.add(name)
            if name in source.evaluators:
                pending.append(source.evaluators[name])
    missing: dict[str, Any] = {}
    for name in sorted(needed):
        if name not in source.evaluators:
            continue  # reported by the document checks, naming the flag
        if name not in target.evaluators:
            missing[name] = source.evaluators[name]
        elif target.evaluators[name] != source.evaluators[name]:
            raise Conflict(
                f"the shared evaluator $evaluators.{name} differs between the stages; a "
                "promotion would change every flag of the target that uses it. Make them equal "
                "in the target first (or rename one).",
                code="evaluator_conflict",
                details={"evaluator": name},
            )
    if not missing:
        return target
    return replace(target, evaluators={**target.evaluators, **missing})


def source_stage(pipeline: Pipeline, to: str, from_: str | None) -> Stage:
    """The stage a promotion into ``to`` leaves: always the one right before it."""
    target = pipeline.stage(to)
    previous = pipeline.previous_stage(target.name)
    if previous is None:
        raise PromotionStageSkipped(
            f"{target.name} is the first stage: nothing is promoted into it; set images and "
            "flags there directly",
            details={"to": target.name},
        )
    if from_ is not None and from_ != previous.name:
        pipeline.stage(from_)
        raise PromotionStageSkipped(
            f"promotions into {target.name} come from {previous.name}, the stage before it; "
            f"{from_} -> {target.name} would skip a stage. Promote one stage at a time.",
            details={"from": from_, "to": target.name, "expected_from": previous.name},
        )
    return previous


def unified_diff(before: str, after: str, label: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{label} (before)",
            tofile=f"{label} (after)",
        )
    )


@dataclass(frozen=True)
class Approval:
    approver: str
    at: datetime
    comment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"approver": self.approver, "at": self.at.isoformat(), "comment": self.comment}


@dataclass(frozen=True)
class Promotion:
    """A request to move one app's state from ``source`` to ``target``; owns its transitions."""

    app: str
    source: str
    target: str
    status: PromotionStatus
    requested_by: str
    selection: Selection
    plan: PromotionPlan | None
    plan_json: Mapping[str, Any]
    gates: tuple[GateResult, ...]
    diff: str
    created_at: datetime
    updated_at: datetime
    id: int | None = None
    reason: str | None = None
    message: str | None = None
    source_revision: str | None = None
    source_content: str | None = None
    base_revision: str | None = None
    revision: str | None = None
    approvals: tuple[Approval, ...] = field(default=())
    applier: str | None = None
    rolled_back_revision: str | None = None

    def moved_to(self, status: PromotionStatus, now: datetime, **changes: Any) -> Promotion:
        """Return this promotion in ``status``; an illegal transition is a 409."""
        if status not in TRANSITIONS[self.status]:
            raise Conflict(
                f"promotion {self.id} is {self.status}; it cannot become {status}",
                code="invalid_transition",
                details={"status": self.status, "wanted": status},
            )
        return replace(self, status=PromotionStatus(status), updated_at=now, **changes)

    @property
    def waiting(self) -> bool:
        return self.status in WAITING

    def audit_after(self) -> dict[str, Any]:
        """What its audit entry records: the status, and the gates that failed (not merely
        pending) while it waits, which become ``gate_failed`` events (domain.events)."""
        after: dict[str, Any] = {"status": str(self.status)}
        failed = [gate.name for gate in self.gates if gate.status == "failed"]
        if failed and self.waiting:
            after["failed_gates"] = failed
        return after

    @property
    def automatic(self) -> bool:
        """True for a promotion Stageflow opened by itself (``auto_promote``), not a person."""
        return self.requested_by == actors.AUTOMATION

    def approvers(self) -> set[str]:
        return {approval.approver for approval in self.approvals}


@dataclass(frozen=True)
class Rejection:
    """An image version that was rolled back; promotions refuse it until it is released."""

    app: str
    image: str
    tag: str | None
    digest: str | None
    reason: str
    by: str
    at: datetime
    promotion_id: int | None = None
    id: int | None = None

    def matches(self, ref: ImageRef) -> bool:
        if ref.name != self.image:
            return False
        if self.digest and ref.digest:
            return self.digest == ref.digest
        return self.tag is not None and self.tag == ref.tag

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": self.app,
            "image": self.image,
            "tag": self.tag,
            "digest": self.digest,
            "reason": self.reason,
            "by": self.by,
            "at": self.at.isoformat(),
            "promotion": self.promotion_id,
        }
