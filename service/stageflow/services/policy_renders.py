"""Renders for the policy step, cached by what they are rendered from.

A render is keyed by the stage's effective inputs: the overlay's entries (with the files the
operation wrote in place of the committed ones) and the base's tree — the project's rule that a
stage's state is its overlay and its base (``state.content_at``). So the render a promotion's
gate made of its result is the render its apply needs, the render an apply made of a stage is
the next promotion's "before", and a write's own validation render (``remember``) is the one the
policy step checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stageflow.domain.pipeline import App
from stageflow.domain.policies.model import Manifest
from stageflow.services.context import PARSED_BYTES_PER_SOURCE_BYTE, Stageflow
from stageflow.services.policy_memos import memo
from stageflow.services.ports import PolicyTools, Workspace
from stageflow.services.state import git_blob_id


class Recording:
    """A workspace that remembers what an operation wrote (path -> text, None: deleted)."""

    def __init__(self, inner: Workspace) -> None:
        self.inner = inner
        self.revision = inner.revision
        self.written: dict[str, str | None] = {}
        self.checked = False  # whether the policy step will run (the pipeline has policies)
        self._blobs: dict[str, str | None] = {}

    def read(self, path: str) -> str | None:
        return self.inner.read(path)

    def unwritten_blob(self, path: str) -> str | None:
        return self.inner.unwritten_blob(path)

    def write(self, path: str, text: str) -> None:
        self.written[path] = text
        self._blobs.pop(path, None)
        self.inner.write(path, text)

    def delete(self, path: str) -> None:
        self.written[path] = None
        self._blobs.pop(path, None)
        self.inner.delete(path)

    def directory(self, path: str) -> Path:
        return self.inner.directory(path)

    def under(self, *folders: str) -> dict[str, str | None]:
        """Return what was written inside ``folders``."""
        prefixes = tuple(folder.rstrip("/") + "/" for folder in folders)
        return {path: text for path, text in self.written.items() if path.startswith(prefixes)}

    def blob(self, path: str) -> str | None:
        """Return the blob id of what was written to ``path`` (hashed once per write)."""
        if path not in self._blobs:
            text = self.written[path]
            self._blobs[path] = None if text is None else git_blob_id(text.encode("utf-8"))
        return self._blobs[path]


def render_key(
    sf: Stageflow, ws: Recording, app: App, stage: str, *, live: bool
) -> tuple[Any, ...]:
    """Identify what ``stage`` renders from: as the operation left it (live) or as committed."""
    overlay = app.overlay_path(stage)
    entries = dict(sf.repo.tree_entries(ws.revision, overlay))
    deeper: list[tuple[str, str | None]] = []
    for path in ws.under(overlay, app.base_path) if live else {}:
        name = path[len(overlay) + 1 :]
        if path.startswith(overlay + "/") and "/" not in name:
            entries[name] = ws.blob(path) or ""
        else:
            deeper.append((path, ws.blob(path)))
    base = sf.repo.tree_id(ws.revision, app.base_path)
    files = tuple(sorted((name, sha) for name, sha in entries.items() if sha))
    return ("policy-render", overlay, files, base, tuple(sorted(deeper, key=str)))


def render_text(sf: Stageflow, ws: Workspace, app: App, stage: str) -> str:
    """Render ``stage`` as the working tree of a write has it (cached by content).

    Used by promotions for their before and after renders, with or without policies: the
    after of one promotion is the before of the next, and the policy and parity gates, which
    play the promotion in a ``ScratchWorkspace`` first, rendered its after already.
    """
    if not isinstance(ws, Recording):  # nothing recorded: no key to share the render by
        return _render(sf, ws, app, stage)
    key = ("text", render_key(sf, ws, app, stage, live=True))
    return memo(sf).get(key, lambda: _render(sf, ws, app, stage), len)


def _render(sf: Stageflow, ws: Workspace, app: App, stage: str) -> str:
    """Run kustomize on ``stage`` as ``ws`` has it.

    Asked for the folder only on a miss: a ``ScratchWorkspace`` copies the overlay and its base
    out of Git to give one, which a held render does not need.
    """
    return sf.renderer.render(ws.directory(app.overlay_path(stage)))


def remember(sf: Stageflow, ws: Workspace, app: App, stage: str, text: str) -> None:
    """Hold a render a write made anyway, so that the policy step does not render it again."""
    if isinstance(ws, Recording) and ws.checked:
        memo(sf).put(("text", render_key(sf, ws, app, stage, live=True)), text, len(text))


def rendered(
    sf: Stageflow, ws: Recording, app: App, stage: str, tools: PolicyTools
) -> list[Manifest]:
    """The objects ``stage`` renders as the working tree has it now (cached by content)."""
    key = render_key(sf, ws, app, stage, live=True)
    held = memo(sf)
    found = held.peek(("objects", key))
    if found is not None:
        return found  # type: ignore[no-any-return]
    text = held.get(("text", key), lambda: _render(sf, ws, app, stage), len)
    objects: list[Manifest] = list(tools.parse_manifests(text))
    held.put(("objects", key), objects, PARSED_BYTES_PER_SOURCE_BYTE * len(text))
    return objects


def committed(
    sf: Stageflow, ws: Recording, app: App, stage: str, tools: PolicyTools
) -> list[Manifest]:
    """The objects ``stage`` renders as committed at the workspace's revision (cached).

    When neither the objects nor the text are held, the operation's files are put back as
    committed for the render, then written again.
    """
    key = render_key(sf, ws, app, stage, live=False)
    hit = memo(sf).peek(("objects", key))
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    with _AsCommitted(sf, ws, ws.under(app.overlay_path(stage), app.base_path)):
        return rendered(sf, ws, app, stage, tools)


class _AsCommitted:
    """Put the files an operation wrote back as committed, for as long as it is entered."""

    def __init__(self, sf: Stageflow, ws: Recording, written: Mapping[str, str | None]) -> None:
        self.sf, self.ws, self.written = sf, ws, dict(written)

    def __enter__(self) -> None:
        for path in self.written:
            self._put(path, self.sf.repo.read(self.ws.revision, path))
        self.ws.written = {p: t for p, t in self.ws.written.items() if p not in self.written}

    def __exit__(self, *exc: object) -> None:
        for path, text in self.written.items():
            self._put(path, text)
        self.ws.written.update(self.written)

    def _put(self, path: str, text: str | None) -> None:
        if text is None:
            self.ws.inner.delete(path)
        else:
            self.ws.inner.write(path, text)
