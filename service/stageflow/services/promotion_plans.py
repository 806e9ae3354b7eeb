"""Planning a promotion: the plan and the rendered diff, as a commit or as a read-only preview.

One set of steps (``PromotionWrite``) reads both overlays, plans, writes the target overlay and
renders it before and after; only the workspace differs. A commit runs it in the clone under the
write locks (``GitRepo.change``); a dry run and the policy and parity gates (``played``) run it
against a ``ScratchWorkspace`` of the revision their snapshot read, which takes no lock and
leaves the clone alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from stageflow.domain.errors import Conflict, Invalid
from stageflow.domain.flags import FlagDocument
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import (
    NothingToPromote,
    PromotionPlan,
    Rejection,
    Selection,
    carry_evaluators,
    plan_promotion,
    source_stage,
    unified_diff,
)
from stageflow.services.changes import Outcome
from stageflow.services.context import Stageflow
from stageflow.services.flags import write_flags
from stageflow.services.policy_memos import memo
from stageflow.services.policy_renders import Recording, render_text
from stageflow.services.ports import Change, KustomizationDoc, Workspace
from stageflow.services.scratch import ScratchWorkspace
from stageflow.services.scratch_folders import shelf_of
from stageflow.services.state import (
    content_at,
    flags_in,
    kustomization_path,
    parsed,
    pipeline_in,
)

T = TypeVar("T")


class SourceChanged(Conflict):
    code = "source_changed"


@dataclass(frozen=True)
class Planned:
    """What a promotion wrote into the target overlay, and its render before and after."""

    app: App
    source: Stage
    target: Stage
    plan: PromotionPlan
    before: str
    after: str

    @cached_property
    def diff(self) -> str:
        """The diff of the target's render (made when asked: the gates' play needs none)."""
        folder = self.app.overlay_path(self.target.name)
        return unified_diff(self.before, self.after, f"kustomize build {folder}")


@dataclass(frozen=True)
class Overlays:
    """The source's and the target's overlay of one app, as a workspace has them."""

    source_images: list[ImageRef]
    target_images: list[ImageRef]
    source_flags: FlagDocument
    target_flags: FlagDocument

    @classmethod
    def read(cls, sf: Stageflow, ws: Workspace, app: App, source: str, target: str) -> Overlays:
        source_images = images_in(sf, ws, app, source)
        target_images = images_in(sf, ws, app, target)
        target_flags = flags_in(sf, ws, app, target)
        return cls(source_images, target_images, flags_in(sf, ws, app, source), target_flags)

    def plan(self, target: Stage, selection: Selection) -> PromotionPlan:
        return plan_promotion(
            source_images=self.source_images,
            target_images=self.target_images,
            source_flags=self.source_flags,
            target_flags=self.target_flags,
            target=target,
            selection=selection,
        )


@dataclass(frozen=True)
class PromotionWrite:
    """The promotion of ``app`` into ``to`` as a Git operation: plan, write, render both ways."""

    sf: Stageflow
    app: str
    to: str
    selection: Selection
    # active rejections of the app: a plan that moves a rejected image is refused
    rejected: Sequence[Rejection] = ()
    # the source state the gates were evaluated for; the write refuses another (None: any)
    expected_source: str | None = None
    promotion_id: int | None = None

    def __call__(self, ws: Workspace) -> Change[Outcome]:
        done = self.write(ws)
        app, source, target = done.app.name, done.source.name, done.target.name
        return Change(
            done.plan.commit_message(app, source, target),
            Outcome(
                "promotion.apply",
                app,
                target,
                str(self.promotion_id),
                None,
                done.plan.to_json(),
                done,
            ),
        )

    def write(self, ws: Workspace) -> Planned:
        """Plan from ``ws``, write the target overlay there, and diff its render."""
        pipeline = pipeline_in(self.sf, ws)
        app = pipeline.app(self.app)
        target = pipeline.stage(self.to)
        source = source_stage(pipeline, self.to, None)
        self._check_source(ws, app, source)
        overlays = Overlays.read(self.sf, ws, app, source.name, target.name)
        plan = overlays.plan(target, self.selection)
        refuse_rejected(plan, self.rejected, app.name)
        if plan.empty:
            raise nothing_to_promote(app.name, source.name, target.name)
        before = render_text(self.sf, ws, app, target.name)  # cached by content (policies)
        self._write_images(ws, app, target, plan)
        self._write_flags(ws, app, target, plan, overlays)
        after = render_text(self.sf, ws, app, target.name)
        return Planned(app, source, target, plan, before, after)

    def _check_source(self, ws: Workspace, app: App, source: Stage) -> None:
        if self.expected_source is None:
            return
        now_source = content_at(self.sf, ws.revision, app, source.name)
        if now_source != self.expected_source:
            raise SourceChanged(
                f"{source.name} changed since its gates were evaluated; the promotion would "
                "move a state nobody vetted. Open a new promotion.",
                details={"expected": self.expected_source, "found": now_source},
            )

    def _write_images(self, ws: Workspace, app: App, target: Stage, plan: PromotionPlan) -> None:
        """Set the moved images in the target's kustomization.yaml.

        The edit is held by the committed file's blob and the images it sets: the apply that
        follows its gates' play writes what the play wrote, without a round-trip parse and dump
        (~10-20 ms).
        """
        if not plan.images:
            return
        path = kustomization_path(app, target.name)
        images = tuple(move.after for move in plan.images)
        blob = ws.unwritten_blob(path)
        if blob is None:  # written by this operation already, or not in Git: nothing to key by
            text = _with_images(self.sf, ws, app, target.name, images)
        else:
            text = memo(self.sf).get(
                ("promoted-kustomization", blob, images),
                lambda: _with_images(self.sf, ws, app, target.name, images),
                len,
            )
        ws.write(path, text)

    def _write_flags(
        self, ws: Workspace, app: App, target: Stage, plan: PromotionPlan, overlays: Overlays
    ) -> None:
        if not plan.flags:
            return
        keys = [move.key for move in plan.flags]
        doc = carry_evaluators(plan.apply_flags(overlays.target_flags), overlays.source_flags, keys)
        write_flags(self.sf, ws, app, target.name, doc, keys)
        trial_evaluate = self.sf.codecs.trial_evaluate
        for move in plan.flags:
            # the target's $evaluators may differ from the source's: evaluate as flagd would
            if move.after.targeting and trial_evaluate is not None:
                trial_evaluate(doc, move.key)


def played(
    sf: Stageflow,
    revision: str,
    write: PromotionWrite,
    inspect: Callable[[Recording, Planned], T],
) -> T:
    """Play ``write`` on ``revision`` in a ``ScratchWorkspace``; answer what ``inspect`` finds.

    The one read-only run of a promotion, shared by the dry run and the policy and parity
    gates: no write lock, no reset of the clone. ``inspect`` sees the workspace as the write
    left it (before the scratch folder goes), recorded so that its renders are keyed by
    content: the apply of the same promotion on the same revision renders the same inputs, and
    finds them held (``policy_renders.render_text``). Its scratch folder is kept between plays
    (``scratch_folders``): the next one copies only the files that changed since.
    """
    with ScratchWorkspace(
        sf.repo, revision, shelf_of(sf.repo, sf.closers, sf.scratch_dir)
    ) as scratch:
        ws = Recording(scratch)
        return inspect(ws, write.write(ws))


def _with_images(
    sf: Stageflow, ws: Workspace, app: App, stage: str, images: Sequence[ImageRef]
) -> str:
    """The stage's kustomization.yaml with ``images`` set (round-trip: comments are kept)."""
    doc = kustomization_in(sf, ws, app, stage)
    for image in images:
        doc.set_image(image, clear_other=True)
    return doc.render()


def preview(
    sf: Stageflow, revision: str, app: str, to: str, selection: Selection
) -> tuple[PromotionPlan, str]:
    """Plan and render a promotion from ``revision`` without writing anything (a dry run).

    After the gates played the same promotion, its before and after renders are held already.
    """
    write = PromotionWrite(sf, app, to, selection, rejected=active_rejections(sf, app))
    planned = played(sf, revision, write, lambda _ws, done: done)
    return planned.plan, planned.diff


def nothing_to_promote(app: str, source: str, target: str) -> NothingToPromote:
    return NothingToPromote(
        f"{target} already has what {source} would promote for {app}; nothing to promote"
    )


def refuse_rejected(plan: PromotionPlan, rejected: Sequence[Rejection], app: str) -> None:
    """Refuse a plan that moves an image version a rollback rejected (409 naming the release)."""
    for move in plan.images:
        for rejection in rejected:
            if rejection.matches(move.after):
                raise Conflict(
                    f"{move.after.describe()} was rolled back ({rejection.reason}) and is "
                    "rejected; promote another version, or release it with DELETE "
                    f"/api/v1/apps/{app}/rejections/{rejection.id}",
                    code="image_rejected",
                    details={"rejection": rejection.to_json()},
                )


def kustomization_in(sf: Stageflow, ws: Workspace, app: App, stage: str) -> KustomizationDoc:
    """The stage's kustomization.yaml as ``ws`` has it (422 when the overlay has none)."""
    path = kustomization_path(app, stage)
    text = ws.read(path)
    if text is None:
        raise Invalid(f"{path} is missing in the GitOps repo", code="overlay_missing")
    return sf.codecs.parse_kustomization(text, path)


def images_in(sf: Stageflow, ws: Workspace, app: App, stage: str) -> list[ImageRef]:
    """The stage's images as ``ws`` has them (422 when the overlay has no kustomization).

    Only read, never written: a committed file is parsed once per blob and shared with the
    reads (a round-trip parse costs a few milliseconds, and a promotion is played by its gates
    before its apply plays it again).
    """
    path = kustomization_path(app, stage)
    blob = ws.unwritten_blob(path)
    if blob is None:
        return kustomization_in(sf, ws, app, stage).images()
    return parsed(
        sf.cache.images,
        blob,
        lambda: (ws.read(path) or "").encode("utf-8"),
        lambda data: sf.codecs.parse_kustomization(data.decode("utf-8"), path).images(),
    )


def active_rejections(sf: Stageflow, app: str) -> Sequence[Rejection]:
    with sf.uow() as uow:
        return uow.rejections.active(app)
