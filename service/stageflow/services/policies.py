"""The policy step of every write: check what each touched stage renders, before the commit.

``policed`` wraps a write's operation (``commit_change`` applies it to every write): once the
operation has written its files, each stage whose overlay or base it wrote is rendered and
checked against the stage's policies. An ``enforce`` violation refuses the write (422
``policy_violation``) unless the committed state has it already — a write that leaves the same
violations as before is allowed and says so, so a newly enabled policy locks nobody out.
``warn`` violations never refuse; they travel in the outcome (the answer and the audit log).

Renders are cached by what they are rendered from (``services.policy_renders``), verdicts by
the render and the rules: a promotion's gate renders and judges its result once and the apply
finds both. A flag toggle, which changes only the generated ConfigMap's data and name, reuses the
verdict of the last check with the same other inputs (unless an admission policy looks at
ConfigMaps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stageflow.domain.errors import Invalid, Unavailable
from stageflow.domain.pipeline import App, Pipeline, Stage
from stageflow.domain.policies import (
    ENFORCE,
    PolicyError,
    PolicyViolation,
    Violation,
    object_id,
)
from stageflow.domain.policies.admission import (
    AdmissionPolicy,
    check_admission,
    is_admission_policy,
    read_policy,
)
from stageflow.domain.policies.builtin import StageFacts, check_builtin
from stageflow.domain.policies.model import Manifest, PolicySpec
from stageflow.services.context import Stageflow
from stageflow.services.policy_memos import memo
from stageflow.services.policy_renders import Recording, committed, render_key, rendered
from stageflow.services.ports import Change, PolicyTools, Workspace
from stageflow.services.state import (
    FLAGS_FILE,
    FileProblem,
    Snapshot,
    git_blob_id,
    kustomization_path,
    pipeline_in,
)

_YAML = (".yaml", ".yml")
# Actions that restore a state committed before: refusing them could keep a broken promotion
# running, so their violations are reported, never enforced.
_NEVER_REFUSED = frozenset({"promotion.rollback"})


@dataclass(frozen=True)
class Verdict:
    """What the policies found in one stage's render."""

    violations: tuple[Violation, ...] = ()
    skipped: tuple[str, ...] = ()  # kinds the Kubernetes schemas do not know (CRDs)

    @property
    def enforced(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.action == ENFORCE)


@dataclass(frozen=True)
class Judgement:
    """A stage's verdict after the promotion or write, measured against the state before."""

    verdict: Verdict
    new: tuple[Violation, ...]  # enforce violations the committed state does not have
    kept: tuple[Violation, ...]  # enforce violations it has already (allowed: not worse)

    def warnings(self) -> list[dict[str, str]]:
        """Return what is reported but not refused, each saying why it was let through."""
        warned = [v for v in self.verdict.violations if v.action != ENFORCE]
        return [{**v.to_json(), "allowed": "warn"} for v in warned] + [
            {**v.to_json(), "allowed": "not_worse"} for v in self.kept
        ]


def tools(sf: Stageflow) -> PolicyTools:
    """Return the policy libraries, or say they are missing."""
    found = sf.codecs.policy_tools
    if found is None:
        raise Unavailable(
            "stageflow.yaml switches policies on, but this process was built without the "
            "policy libraries; nothing was committed",
            code="policies_unavailable",
        )
    return found


# -- the policies of a stage --------------------------------------------------------------------


def admission_policies(sf: Stageflow, revision: str, folder: str) -> tuple[AdmissionPolicy, ...]:
    """Compile the ValidatingAdmissionPolicies of ``folder`` at ``revision`` (once per tree)."""
    tree = sf.repo.tree_id(revision, folder)
    if tree is None:
        raise PolicyError(
            f"stageflow.yaml names the policy folder {folder}/, which is not in the GitOps repo "
            "at this revision; add it, or remove the entry",
            details={"file": folder},
        )
    found = memo(sf).get(
        ("admission-policies", tree), lambda: _compile_folder(sf, revision, folder), _small
    )
    if isinstance(found, PolicyError):
        raise found
    return found


def _compile_folder(
    sf: Stageflow, revision: str, folder: str
) -> tuple[AdmissionPolicy, ...] | PolicyError:
    compiled: list[AdmissionPolicy] = []
    try:
        for name, blob in sorted(sf.repo.tree_entries(revision, folder).items()):
            if name.endswith(_YAML):
                compiled += _compile_file(sf, f"{folder}/{name}", sf.repo.read_blob(blob))
    except PolicyError as exc:
        return exc
    return tuple(compiled)


def _compile_file(sf: Stageflow, file: str, data: bytes) -> list[AdmissionPolicy]:
    try:
        documents = tools(sf).parse_manifests(data.decode("utf-8"))
    except (Invalid, UnicodeDecodeError) as exc:
        raise PolicyError(
            f"{file} is not a YAML stream ({exc}); fix it in the GitOps repo",
            details={"file": file},
        ) from None
    return [
        read_policy(doc, file, tools(sf).compile_cel)
        for doc in documents
        if is_admission_policy(doc)
    ]


def stage_facts(pipeline: Pipeline, stage: Stage) -> StageFacts:
    """Return what the built-ins need to know about ``stage``."""
    others = {s.namespace: s.name for s in pipeline.stages if s.name != stage.name}
    return StageFacts(stage.name, stage.namespace, others)


def judge_objects(
    sf: Stageflow, revision: str, pipeline: Pipeline, stage: Stage, objects: Sequence[Manifest]
) -> Verdict:
    """Run every policy of ``stage`` over its rendered objects."""
    facts = stage_facts(pipeline, stage)
    found: list[Violation] = []
    skipped: list[str] = []
    for spec in pipeline.policies.for_stage(stage.name):
        if spec.builtin == "kubernetes-schema":
            violations, unknown = _schema(sf, spec, objects, stage.name)
            found += violations
            skipped += unknown
        elif spec.builtin is not None:
            found += check_builtin(spec, objects, facts)
        else:
            policies = admission_policies(sf, revision, spec.folder or "")
            found += check_admission(spec, policies, objects, stage.name)
    return Verdict(tuple(found), tuple(sorted(set(skipped))))


def _schema(
    sf: Stageflow, spec: PolicySpec, objects: Sequence[Manifest], stage: str
) -> tuple[list[Violation], list[str]]:
    version = str(spec.options.get("version"))
    strict = bool(spec.options.get("strict", True))
    problems, unknown = tools(sf).schema_findings(objects, version, strict)
    violations = [
        Violation(
            spec.name,
            object_id(objects[index]),
            f"{message} (Kubernetes {version})",
            spec.action,
            stage,
        )
        for index, message in problems
    ]
    return violations, unknown


# -- the write check -----------------------------------------------------------------------------


def judge(sf: Stageflow, ws: Recording, pipeline: Pipeline, app: App, stage: Stage) -> Judgement:
    """Check ``stage`` as the operation left it, against the committed state's violations."""
    verdict = _verdict(sf, ws, pipeline, app, stage)
    if not verdict.enforced:
        return Judgement(verdict, (), ())
    before = _judged(sf, ws, pipeline, app, stage, live=False)
    known = {v.identity for v in before.enforced}
    new = tuple(v for v in verdict.enforced if v.identity not in known)
    kept = tuple(v for v in verdict.enforced if v.identity in known)
    return Judgement(verdict, new, kept)


def _verdict(sf: Stageflow, ws: Recording, pipeline: Pipeline, app: App, stage: Stage) -> Verdict:
    proof = _flags_only(sf, ws, pipeline, app, stage)
    if proof is not None:
        held = memo(sf).peek(proof)  # a peek counts as a use: large renders do not push it out
        if held is not None:
            return held  # type: ignore[no-any-return]
    verdict = _judged(sf, ws, pipeline, app, stage, live=True)
    if proof is not None:
        memo(sf).put(proof, verdict)
    return verdict


def _judged(
    sf: Stageflow, ws: Recording, pipeline: Pipeline, app: App, stage: Stage, *, live: bool
) -> Verdict:
    """The verdict of a render, held by the render and the rules: a promotion's gate judged the
    render its apply checks, and the state before a write is often a render judged already."""
    key = (
        "verdict",
        render_key(sf, ws, app, stage.name, live=live),
        _rules(sf, ws.revision, pipeline, stage),
    )
    load = rendered if live else committed
    return memo(sf).get(
        key,
        lambda: judge_objects(
            sf, ws.revision, pipeline, stage, load(sf, ws, app, stage.name, tools(sf))
        ),
        _small,
    )


def _small(value: object) -> int:
    """Weigh a small value (a verdict, a proof, compiled policies) at 1 KiB."""
    return 1024


def _rules(sf: Stageflow, revision: str, pipeline: Pipeline, stage: Stage) -> str:
    """What a verdict depends on besides the render: the stage's policies, the namespaces and
    the trees of the admission policy folders (a pushed policy is a new key)."""
    specs = pipeline.policies.for_stage(stage.name)
    folders = [sf.repo.tree_id(revision, spec.folder) for spec in specs if spec.folder]
    return repr((specs, stage_facts(pipeline, stage), folders))


def _flags_only(
    sf: Stageflow, ws: Recording, pipeline: Pipeline, app: App, stage: Stage
) -> tuple[Any, ...] | None:
    """A key for the verdict when the write changed only a generated flags.json, else None.

    Such a write changes only the generated ConfigMap's data and its name hash; no built-in
    reads either, so the verdict of the same other inputs stands.
    """
    overlay = app.overlay_path(stage.name)
    written = ws.under(overlay, app.base_path)
    if set(written) != {f"{overlay}/{FLAGS_FILE}"} or _sees_configmaps(
        sf, ws.revision, pipeline, stage
    ):
        return None
    text = ws.read(kustomization_path(app, stage.name))
    if text is None:
        return None
    path = kustomization_path(app, stage.name)
    local = memo(sf).get(
        ("generated-only", git_blob_id(text.encode("utf-8")), overlay),
        lambda: sf.codecs.parse_kustomization(text, path).generated_only(
            FLAGS_FILE, overlay, app.base_path
        ),
        _small,
    )
    entries = sf.repo.tree_entries(ws.revision, overlay)
    inputs = tuple(sorted((n, sha) for n, sha in entries.items() if n != FLAGS_FILE))
    if local is None or not set(local) <= {name for name, _ in inputs}:
        return None
    base = sf.repo.tree_id(ws.revision, app.base_path)
    return ("policy-verdict-flags", _rules(sf, ws.revision, pipeline, stage), overlay, inputs, base)


def _sees_configmaps(sf: Stageflow, revision: str, pipeline: Pipeline, stage: Stage) -> bool:
    for spec in pipeline.policies.for_stage(stage.name):
        if spec.folder is not None:
            for policy in admission_policies(sf, revision, spec.folder):
                if policy.resources & {"*", "configmaps"}:
                    return True
    return False


def touched(pipeline: Pipeline, ws: Recording) -> Iterator[tuple[App, Stage]]:
    """Yield each (app, stage) whose overlay or base the operation wrote."""
    for app in pipeline.apps.values():
        base = bool(ws.under(app.base_path))
        for stage in pipeline.stages:
            if base or ws.under(app.overlay_path(stage.name)):
                yield app, stage


def refuse(app: App, stage: Stage, new: Sequence[Violation]) -> PolicyViolation:
    """The 422 answer to a write that adds enforce violations."""
    first = new[0]
    more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
    return PolicyViolation(
        f"{app.name}/{stage.name} would break policy {first.policy}: {first.object} "
        f"{first.message}{more}; nothing was committed — fix the overlay, or the value you sent",
        details={"violations": [v.to_json() for v in new], "stage": stage.name, "app": app.name},
    )


def policed(
    sf: Stageflow, operation: Callable[[Workspace], Change[Any]]
) -> Callable[[Workspace], Change[Any]]:
    """Wrap a write's operation with the policy step (see the module docstring)."""

    def run(ws: Workspace) -> Change[Any]:
        recording = Recording(ws)
        pipeline = _pipeline_or_none(sf, ws)
        recording.checked = pipeline is not None and bool(pipeline.policies.policies)
        change = operation(recording)
        if not recording.written or not recording.checked:
            return change
        pipeline = pipeline_in(sf, ws)  # as the operation left it (it never writes it today)
        enforce = getattr(change.result, "action", None) not in _NEVER_REFUSED
        warnings: list[dict[str, str]] = []
        for app, stage in touched(pipeline, recording):
            if not pipeline.policies.for_stage(stage.name):
                continue
            judgement = judge(sf, recording, pipeline, app, stage)
            if judgement.new and enforce:
                raise refuse(app, stage, judgement.new)
            warnings += judgement.warnings() + [
                {**v.to_json(), "allowed": "rollback"} for v in judgement.new
            ]
        if not warnings or not hasattr(change.result, "warnings"):
            return change
        return replace(change, result=replace(change.result, warnings=tuple(warnings)))

    return run


def _pipeline_or_none(sf: Stageflow, ws: Workspace) -> Pipeline | None:
    """The pipeline, or None when it is broken: then the operation refuses, as it would."""
    try:
        return pipeline_in(sf, ws)
    except Invalid:
        return None


# -- problems for GET /api/v1/pipeline -----------------------------------------------------------


def policy_problems(sf: Stageflow, snap: Snapshot) -> list[FileProblem]:
    """The policy folders at the snapshot that do not compile (writes they check are refused)."""
    problems: list[FileProblem] = []
    if sf.codecs.policy_tools is None:  # nothing can compile them here; writes say so
        return problems
    for folder in snap.pipeline.policies.folders:
        try:
            admission_policies(sf, snap.revision, folder)
        except PolicyError as exc:
            file = str(exc.details.get("file") or folder)
            problems.append(FileProblem(file, snap.revision, None, exc.message, None))
        except Unavailable:
            # The remote is away and the folder was never read: reads go on without it (the
            # problem shows once the remote is back; writes wait for the remote anyway).
            continue
    return problems
