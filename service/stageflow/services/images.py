"""Use case: the build pipeline sets an image tag in the first stage."""

from __future__ import annotations

from stageflow.domain.errors import Invalid, StageSkipped
from stageflow.domain.images import ImageRef, image_ref
from stageflow.services.changes import Actor, Outcome, commit_change
from stageflow.services.context import Stageflow
from stageflow.services.policy_renders import remember
from stageflow.services.ports import Change, Committed, Workspace
from stageflow.services.state import image_view, kustomization_path, pipeline_in


def _version(ref: ImageRef) -> str:
    parts = [ref.tag or ""]
    if ref.digest:
        parts.append(f"@{ref.digest[:19]}")
    return "".join(parts) or "(none)"


def set_image(
    sf: Stageflow, app_name: str, stage_name: str, wanted: ImageRef, *, actor: Actor
) -> Committed[Outcome]:
    """Point an image of the first stage at a new tag or digest, as one commit.

    ``wanted`` names the image and gives the tag, the digest or both; it is validated here,
    whoever built it.
    """
    ref = image_ref(wanted.name, tag=wanted.tag, digest=wanted.digest, new_name=wanted.new_name)

    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(app_name)
        stage = pipeline.stage(stage_name)
        first = pipeline.first_stage
        if stage.name != first.name:
            raise StageSkipped(
                f"images go directly only into {first.name}, the first stage; {stage.name} gets "
                f"them by promotion (POST /api/v1/apps/{app.name}/promotions)",
                details={"first_stage": first.name},
            )
        path = kustomization_path(app, stage.name)
        text = ws.read(path)
        if text is None:
            raise Invalid(f"{path} is missing in the GitOps repo", code="overlay_missing")
        doc = sf.codecs.parse_kustomization(text, path)
        current = {image.name: image for image in doc.images()}
        if ref.name not in current:
            raise Invalid(
                f"image {ref.name} is not in {path}; the overlay lists "
                f"{', '.join(current) or 'no images'}",
                code="unknown_image",
                details={"images": list(current)},
            )
        before = current[ref.name]
        if doc.set_image(ref, clear_other=True):
            ws.write(path, doc.render())
            text = sf.renderer.render(ws.directory(app.overlay_path(stage.name)))
            remember(sf, ws, app, stage.name, text)  # the policy step's render (#17)
        # Whatever was sent replaces the pin: a digest alone drops a stale tag, and vice versa.
        after = ImageRef(name=before.name, tag=ref.tag, digest=ref.digest, new_name=before.new_name)
        return Change(
            f"{app.name}/{stage.name}: image {ref.name} {_version(before)} -> {_version(after)}",
            Outcome(
                "image.set",
                app.name,
                stage.name,
                ref.name,
                image_view(before),
                image_view(after),
                after,
            ),
        )

    return commit_change(sf, actor, operation)
