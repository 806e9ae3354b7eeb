"""Use cases: tell each stage's GitOps controller about a commit that changed what it renders.

Argo CD and Flux poll Git every few minutes; a webhook makes them look at once, so a rollback
is live in seconds instead of "up to the poll interval". ``announce`` runs in the write path and
only queues (``ControllerNotifier``); the notifier's background thread calls ``plan`` to learn
which hooks to call and ``record`` with each outcome, so neither waits on the write's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stageflow.domain import actors
from stageflow.domain.hooks import ChangedPaths, HookCall, HookOutcome, missing_variables
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.pipeline import App, Pipeline, Stage
from stageflow.services.context import Stageflow
from stageflow.services.ports import Committed, GitRepo
from stageflow.services.state import content_at, snapshot

log = logging.getLogger(__name__)

ACTION = "controller_hook"


def announce(sf: Stageflow, done: Committed[Any]) -> None:
    """Queue the controller hooks of a commit that just landed (never blocks, never raises)."""
    notifier = sf.controller_hooks
    if notifier is None or not done.committed:
        return
    try:
        notifier.pushed(done.revision, done.pushed_at or sf.clock())
    except Exception:  # a notifier's fault must never fail a write that has landed
        log.exception("could not queue the controller hooks of %s", done.revision[:12])


def plan(sf: Stageflow, revision: str, pushed_at: datetime) -> list[HookCall]:
    """The hooks to call for ``revision``: those of every stage whose rendered state changed.

    A stage's state is its overlay and its app's base (``content_at``): a change to a shared
    base changes every stage of that app, a change to one overlay only that stage.
    """
    pipeline = snapshot(sf, revision).pipeline
    hooked = [stage for stage in pipeline.stages if stage.controller_hooks]
    if not hooked:
        return []
    before = sf.repo.parent_of(revision)
    message = _message(sf, revision)
    calls = []
    for stage in hooked:
        apps = _changed_apps(sf, pipeline, stage, before, revision)
        if not apps:
            continue
        paths = _changed_paths(sf.repo, before, revision, apps, stage.name)
        calls += [
            HookCall(
                hook=hook,
                stage=stage.name,
                apps=tuple(app.name for app in apps),
                revision=revision,
                before=before,
                branch=sf.repo.branch,
                repository_url=hook.repository_url or sf.repo.display_url,
                paths=paths,
                message=message,
                pushed_at=pushed_at,
            )
            for hook in stage.controller_hooks
        ]
    return calls


def record(sf: Stageflow, outcome: HookOutcome) -> None:
    """Write a delivery's outcome to the audit log; a delivered revert notes its restore."""
    call = outcome.call
    with sf.uow() as uow:
        uow.audit.add(
            AuditEntry(
                actor=actors.AUTOMATION,
                action=ACTION,
                app=call.apps[0] if len(call.apps) == 1 else None,
                stage=call.stage,
                target=call.hook.kind,
                after=outcome.to_json(),
                revision=call.revision,
                at=outcome.at,
            )
        )
        if outcome.outcome == "delivered":
            uow.restores.told(call.revision, outcome.at)
        uow.commit()


def unset_variables(sf: Stageflow, environ: Mapping[str, str]) -> list[str]:
    """The variables the head's ``controller_hooks`` name that this process lacks."""
    stages = snapshot(sf).pipeline.stages
    return missing_variables([hook for s in stages for hook in s.controller_hooks], environ)


def _changed_apps(
    sf: Stageflow, pipeline: Pipeline, stage: Stage, before: str | None, revision: str
) -> list[App]:
    return [
        app
        for app in pipeline.apps.values()
        if before is None
        or content_at(sf, before, app, stage.name) != content_at(sf, revision, app, stage.name)
    ]


def _message(sf: Stageflow, revision: str) -> str:
    trailers = sf.history.trailers_of(revision) if sf.history is not None else {}
    parts = [trailers.get(key, "") for key in ("Stageflow-Action", "Stageflow-App")]
    stage = trailers.get("Stageflow-Stage")
    text = " ".join(part for part in parts if part) or "Stageflow commit"
    return f"{text} in {stage}" if stage else text


def _changed_paths(
    repo: GitRepo, before: str | None, after: str, apps: list[App], stage: str
) -> ChangedPaths:
    """The files under the stage's overlays and the apps' bases that the commit changed."""
    diff = _TreeDiff(repo, after)
    for app in apps:
        for folder in (app.overlay_path(stage), app.base_path):
            diff.folder(before, folder)
    return ChangedPaths(
        added=tuple(sorted(set(diff.found["added"]))),
        modified=tuple(sorted(set(diff.found["modified"]))),
        removed=tuple(sorted(set(diff.found["removed"]))),
    )


class _TreeDiff:
    """Compare folders of ``after`` with ``before`` through the GitRepo port's tree ids.

    Only folders whose tree ids differ are walked, so a commit that changes one file of an
    overlay costs a few lookups, not a listing of the repository.
    """

    def __init__(self, repo: GitRepo, after: str) -> None:
        self.repo = repo
        self.after = after
        self.found: dict[str, list[str]] = {"added": [], "modified": [], "removed": []}

    def folder(self, before: str | None, folder: str) -> None:
        old_tree = self.repo.tree_id(before, folder) if before else None
        if old_tree is not None and old_tree == self.repo.tree_id(self.after, folder):
            return
        old = self.repo.tree_entries(before, folder) if before and old_tree else {}
        new = self.repo.tree_entries(self.after, folder)
        for name in sorted(old.keys() | new.keys()):
            if old.get(name) != new.get(name):
                self.entry(before, f"{folder}/{name}", name in old, name in new)

    def entry(self, before: str | None, path: str, in_old: bool, in_new: bool) -> None:
        was_dir = in_old and before is not None and self.repo.tree_id(before, path) is not None
        is_dir = in_new and self.repo.tree_id(self.after, path) is not None
        if was_dir or is_dir:  # a file that became a folder (or back) is removed and added
            self.folder(before if was_dir else None, path)
        file_before, file_after = in_old and not was_dir, in_new and not is_dir
        if file_before and file_after:
            self.found["modified"].append(path)
        elif file_after:
            self.found["added"].append(path)
        elif file_before:
            self.found["removed"].append(path)
