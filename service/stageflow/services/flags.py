"""Use cases on feature flags: create, toggle, edit, delete — each one commit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stageflow.domain.errors import AlreadyExists, FlagNotAllowed, Invalid, NotFound
from stageflow.domain.flags import (
    DEFAULT_LIFECYCLE,
    LIFECYCLES,
    Flag,
    FlagDocument,
    RenderedDocument,
    new_flag,
    set_enabled,
    state_word,
    with_changes,
)
from stageflow.domain.pipeline import App, Pipeline, Stage
from stageflow.services.changes import Actor, Outcome, commit_change
from stageflow.services.context import RenderInputs, Stageflow
from stageflow.services.policy_renders import remember
from stageflow.services.ports import Change, Committed, Workspace
from stageflow.services.state import (
    FLAGS_FILE,
    flags_in,
    flags_path,
    git_blob_id,
    kustomization_path,
    pipeline_in,
    remember_flags,
)

UNSET: Any = object()


def flag_json(flag: Flag) -> dict[str, Any]:
    return {"key": flag.key, **flag.to_json()}


def _check_allowed(stage: Stage, flag: Flag) -> None:
    lifecycle = flag.policy_lifecycle
    if flag.enabled and not stage.allows(lifecycle):
        allowed = [lc for lc in LIFECYCLES if stage.allows(lc)]
        raise FlagNotAllowed(
            f"flag {flag.key} is {lifecycle} and stage {stage.name} allows only "
            f"{', '.join(allowed) or 'no'} flags to be ON; turning it OFF is always allowed — "
            f'raise its lifecycle (PATCH .../flags/{flag.key} {{"lifecycle": ...}}) once it is '
            "ready",
            details={
                "flag": flag.key,
                "stage": stage.name,
                "lifecycle": lifecycle,
                "allowed": allowed,
            },
        )


def write_flags(
    sf: Stageflow,
    ws: Workspace,
    app: App,
    stage: str,
    doc: FlagDocument,
    changed: list[str],
) -> None:
    """Write ``doc`` as the stage's flags.json."""
    doc = doc.with_metadata(flagSetId=app.name, version=ws.revision)
    # Only the changed flags (and the document-level parts) are schema-checked: the rest are
    # already committed, and a whole 5,000-flag document takes the schema half a second.
    sf.codecs.validate_flags(doc, changed)
    path = flags_path(app, stage)
    rendered = _rendered(sf, path, doc)
    ws.write(path, rendered.text)
    remember_flags(sf, rendered.text, doc)
    sf.cache.flags_texts.put(path, rendered, len(rendered.text))


def _rendered(sf: Stageflow, path: str, doc: FlagDocument) -> RenderedDocument:
    """Render ``doc``; by editing the last text this process wrote to ``path`` when it can.

    The last document written to ``path`` is held with the text rendered from it. An operation
    that read that document (``flags_in`` answers with the one ``remember_flags`` held for the
    text's blob id) changes a few of its flags, and only those are rendered (a toggle in a
    5,000-flag stage: one flag, not 5,000). A document parsed from a text another process wrote
    shares no flag object with it: all count as changed, and past a few dozen ``rewrite``
    renders the document whole. Either way the text is what a full render writes.
    """
    last = sf.cache.flags_texts.peek(path)
    return RenderedDocument.render(doc) if last is None else last.rewrite(doc)


def _render(sf: Stageflow, ws: Workspace, app: App, stages: list[str]) -> None:
    """Render each overlay a flags change touched, unless it provably cannot fail.

    A change to ``flags.json`` alone, in an overlay that reads it only through a
    configMapGenerator, changes nothing but the generated ConfigMap's data (and its name hash):
    the file is opaque data to the generator. Once this process has rendered the overlay with the
    same other inputs (every other file of the overlay, and the base), the render cannot fail, so
    it is skipped — the toggle then costs less than a bare ``kustomize build``.
    """
    for stage in stages:
        proof = _flags_only_inputs(sf, ws, app, stage)
        if proof is not None and sf.cache.render_proofs.peek(proof):
            # Held again as just used: large flag documents pass through the cache on every
            # write and would otherwise push the proof out, and with it the render back in.
            sf.cache.render_proofs.put(proof, True)
            continue
        text = sf.renderer.render(ws.directory(app.overlay_path(stage)))
        remember(sf, ws, app, stage, text)  # the policy step's render (services.policies)
        if proof is not None:
            sf.cache.render_proofs.put(proof, True)


def _flags_only_inputs(sf: Stageflow, ws: Workspace, app: App, stage: str) -> RenderInputs | None:
    overlay = app.overlay_path(stage)
    text = ws.read(kustomization_path(app, stage))
    if text is None:
        return None
    local = sf.cache.generated_only.get(
        (git_blob_id(text.encode("utf-8")), overlay),
        lambda: sf.codecs.parse_kustomization(text, kustomization_path(app, stage)).generated_only(
            FLAGS_FILE, overlay, app.base_path
        ),
    )
    if local is None:
        return None
    entries = sf.repo.tree_entries(ws.revision, overlay)
    inputs = {name: sha for name, sha in entries.items() if name != FLAGS_FILE}
    if not set(local) <= set(inputs):
        return None
    # the overlay's files other than flags.json (as committed at the base), and the base's tree
    return (overlay, tuple(sorted(inputs.items())), sf.repo.tree_id(ws.revision, app.base_path))


@dataclass(frozen=True)
class NewFlag:
    """What a new flag is made of; ``new_flag`` fills in what is not given."""

    key: str
    description: str | None = None
    lifecycle: str | None = None
    variants: Mapping[str, Any] | None = None
    default_variant: str | None = None

    def build(self) -> Flag:
        return new_flag(
            self.key,
            description=self.description,
            lifecycle=self.lifecycle or DEFAULT_LIFECYCLE,
            variants=self.variants,
            default_variant=self.default_variant,
        )


def create_flag(sf: Stageflow, app_name: str, spec: NewFlag, *, actor: Actor) -> Committed[Outcome]:
    """Add a new flag to the first stage of an app (later stages get it by promotion)."""
    key = spec.key

    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(app_name)
        for stage in pipeline.stages:
            if key in flags_in(sf, ws, app, stage.name).flags:
                raise AlreadyExists(
                    f"flag {key} already exists in {app.name} (stage {stage.name}); change it "
                    f"with PATCH /api/v1/apps/{app.name}/stages/<stage>/flags/{key}",
                    code="flag_exists",
                )
        first = pipeline.first_stage
        flag = spec.build()
        _check_allowed(first, flag)
        doc = flags_in(sf, ws, app, first.name)
        write_flags(sf, ws, app, first.name, doc.put(flag), [key])
        _render(sf, ws, app, [first.name])
        return Change(
            f"{app.name}/{first.name}: add flag {key} ({state_word(flag, spell_state=True)})",
            Outcome("flag.create", app.name, first.name, key, None, flag_json(flag), flag),
        )

    return commit_change(sf, actor, operation)


def _stage_flag(pipeline: Pipeline, doc: FlagDocument, app: App, stage: Stage, key: str) -> Flag:
    if key not in doc.flags:
        first = pipeline.first_stage.name
        hint = (
            f"create it with POST /api/v1/apps/{app.name}/flags"
            if stage.name == first
            else f"new flags start in {first} and arrive in {stage.name} by promotion"
        )
        raise NotFound(
            f"flag {key} is not defined in {app.name}/{stage.name}; {hint}",
            code="flag_not_found",
        )
    return doc.flags[key]


@dataclass(frozen=True)
class StageFlagChange:
    """What a change of one flag in one stage asks for; what is left UNSET stays as it is."""

    enabled: bool | None = None
    default_variant: Any = UNSET
    state: Any = UNSET
    targeting: Any = UNSET

    def apply(self, flag: Flag) -> Flag:
        """Return the flag changed as asked: switched first, then the given fields set."""
        if self.enabled is not None:
            flag = set_enabled(flag, self.enabled)
        changes: dict[str, Any] = {}
        if self.default_variant is not UNSET:
            _require_variant_of(flag, self.default_variant)
            changes["default_variant"] = self.default_variant
        if self.state is not UNSET:
            changes["state"] = self.state
        if self.targeting is not UNSET:
            changes["targeting"] = self.targeting or None
        return with_changes(flag, **changes) if changes else flag


def _require_variant_of(flag: Flag, name: str | None) -> None:
    if name is not None and name not in flag.variants:
        raise Invalid(
            f"defaultVariant {name!r} is not a variant of {flag.key}; its variants "
            f"are {', '.join(flag.variants)}",
            code="unknown_variant",
        )


def update_stage_flag(
    sf: Stageflow,
    app_name: str,
    stage_name: str,
    key: str,
    change: StageFlagChange,
    *,
    actor: Actor,
) -> Committed[Outcome]:
    """Toggle or change one flag in one stage; turning ON obeys the stage's ``flags.allow``."""

    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(app_name)
        stage = pipeline.stage(stage_name)
        doc = flags_in(sf, ws, app, stage.name)
        before = _stage_flag(pipeline, doc, app, stage, key)
        flag = change.apply(before)
        if flag != before:
            if flag.enabled:
                _check_allowed(stage, flag)
            write_flags(sf, ws, app, stage.name, doc.put(flag), [key])
            # The schema judges the rule's shape; only flagd's evaluator shows what it returns.
            if flag.targeting and flag.targeting != before.targeting and sf.codecs.trial_evaluate:
                sf.codecs.trial_evaluate(doc.put(flag), key)
            _render(sf, ws, app, [stage.name])
        return Change(
            f"{app.name}/{stage.name}: flag {key} {state_word(before, spell_state=True)} -> "
            f"{state_word(flag, spell_state=True)}",
            Outcome(
                "flag.update", app.name, stage.name, key, flag_json(before), flag_json(flag), flag
            ),
        )

    return commit_change(sf, actor, operation)


def edit_flag(
    sf: Stageflow,
    app_name: str,
    key: str,
    *,
    actor: Actor,
    lifecycle: str | None = None,
    description: Any = UNSET,
) -> Committed[Outcome]:
    """Change a flag's lifecycle or description in every stage that has it."""

    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(app_name)
        found = False
        touched: list[str] = []
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for stage in pipeline.stages:
            doc = flags_in(sf, ws, app, stage.name)
            if key not in doc.flags:
                continue
            found = True
            old = doc.flags[key]
            changes: dict[str, Any] = {}
            if lifecycle is not None:
                changes["lifecycle"] = lifecycle
            if description is not UNSET:
                changes["description"] = description
            new = with_changes(old, **changes)
            if new.lifecycle != old.lifecycle:
                _check_allowed(stage, new)
            if new != old:
                write_flags(sf, ws, app, stage.name, doc.put(new), [key])
                touched.append(stage.name)
                before[stage.name] = {"lifecycle": old.lifecycle, "description": old.description}
                after[stage.name] = {"lifecycle": new.lifecycle, "description": new.description}
        if not found:
            raise NotFound(
                f"flag {key} is not defined in any stage of {app.name}", code="flag_not_found"
            )
        _render(sf, ws, app, touched)
        return Change(
            f"{app.name}: flag {key} metadata in {', '.join(touched) or 'no stage'}",
            Outcome("flag.edit", app.name, None, key, before, after, touched),
        )

    return commit_change(sf, actor, operation)


def delete_stage_flag(
    sf: Stageflow, app_name: str, stage_name: str, key: str, *, actor: Actor
) -> Committed[Outcome]:
    """Remove a flag's definition from one stage."""

    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(app_name)
        stage = pipeline.stage(stage_name)
        doc = flags_in(sf, ws, app, stage.name)
        before = _stage_flag(pipeline, doc, app, stage, key)
        write_flags(sf, ws, app, stage.name, doc.remove(key), [])
        _render(sf, ws, app, [stage.name])
        return Change(
            f"{app.name}/{stage.name}: delete flag {key}",
            Outcome("flag.delete", app.name, stage.name, key, flag_json(before), None),
        )

    return commit_change(sf, actor, operation)
