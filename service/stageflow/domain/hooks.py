"""Controller hooks: how a stage's GitOps controller (Argo CD, Flux) is told about a new commit.

Argo CD polls Git every three minutes and Flux every ``interval`` of its GitRepository; both
accept a webhook that makes them look at once. A stage lists its controllers' webhooks under
``controller_hooks`` in ``stageflow.yaml``; the URLs and secrets are named by environment
variable, never written into Git, so the file can be public while the secrets stay with the
process that sends them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, Protocol

__all__ = [
    "HOOK_KINDS",
    "ChangedPaths",
    "ControllerHook",
    "HookCall",
    "HookOutcome",
    "Restore",
    "missing_variables",
    "parse_controller_hooks",
]

HOOK_KINDS = ("argocd", "flux")
FLUX_TYPES = ("generic-hmac", "generic")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_KEYS = {
    "argocd": ("kind", "url_env", "secret_env", "repository_url"),
    "flux": ("kind", "url_env", "secret_env", "type"),
}

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ControllerHook:
    """One webhook of a stage's controller: what kind, and the variables naming URL and secret.

    ``repository_url`` (Argo CD only) is the URL Argo CD's Applications use for the GitOps repo:
    Argo CD refreshes the Applications whose ``repoURL`` matches the event's repository, so it
    must be spelled as they spell it. None: the service's Git URL (credentials removed).
    ``flux_type`` is the Flux ``Receiver`` type: ``generic-hmac`` signs the body, ``generic``
    does not.
    """

    kind: str
    url_env: str
    secret_env: str | None = None
    repository_url: str | None = None
    flux_type: str = "generic"

    def describe(self) -> str:
        return f"{self.kind} hook (URL from ${self.url_env})"


@dataclass(frozen=True)
class ChangedPaths:
    """The files a commit added, modified and removed (what Argo CD's manifest paths match)."""

    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def all(self) -> tuple[str, ...]:
        return (*self.added, *self.modified, *self.removed)


@dataclass(frozen=True)
class HookCall:
    """One delivery to make: a hook of a stage whose rendered state the commit changed."""

    hook: ControllerHook
    stage: str
    apps: tuple[str, ...]
    revision: str
    before: str | None
    branch: str
    repository_url: str
    paths: ChangedPaths
    message: str
    pushed_at: datetime


@dataclass(frozen=True)
class HookOutcome:
    """What became of a delivery: ``delivered``, ``failed`` (after every retry) or
    ``unconfigured`` (the variable naming its URL or secret is not set)."""

    call: HookCall
    outcome: str
    attempts: int
    seconds: float
    at: datetime
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.call.hook.kind,
            "url_env": self.call.hook.url_env,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
            "paths": list(self.call.paths.all()),
        }


@dataclass(frozen=True)
class Restore:
    """How long a rollback took to restore a stage: pushed, controller told, reported healthy.

    ``content`` is the restored state of the stage (``services.state.content_at``): a healthy
    deployment report for any revision carrying that state counts, as controllers sync the head.
    """

    promotion_id: int
    app: str
    stage: str
    revision: str
    content: str
    pushed_at: datetime
    controller_told_at: datetime | None = None
    healthy_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        """End to end: from the revert's push to the stage's healthy report (None until then)."""
        if self.healthy_at is None:
            return None
        return max(0.0, (self.healthy_at - self.pushed_at).total_seconds())

    def to_json(self) -> dict[str, Any]:
        told = self.controller_told_at
        return {
            "revision": self.revision,
            "pushed_at": self.pushed_at.isoformat(),
            "controller_told_at": told.isoformat() if told else None,
            "healthy_at": self.healthy_at.isoformat() if self.healthy_at else None,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


# --- parsing (called by domain.pipeline for each stage) ----------------------------------------


class Reader(Protocol):
    """What the pipeline's reader offers: typed access that fails with the file's line."""

    def fail(self, path: Path, problem: str, fix: str) -> NoReturn: ...

    def mapping(self, value: object, path: Path, example: str) -> Mapping[str, object]: ...

    def sequence(self, value: object, path: Path, example: str) -> list[object]: ...

    def string(self, value: object, path: Path, example: str) -> str: ...

    def keys(
        self,
        value: Mapping[str, object],
        path: Path,
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> None: ...


_EXAMPLE = "- {kind: argocd, url_env: STAGEFLOW_PROD_ARGOCD_WEBHOOK}"


def parse_controller_hooks(reader: Reader, value: object, path: Path) -> tuple[ControllerHook, ...]:
    """Validate a stage's ``controller_hooks`` list (None or empty: no hooks)."""
    if value is None:
        return ()
    items = reader.sequence(value, path, _EXAMPLE)
    return tuple(_parse_hook(reader, item, (*path, index)) for index, item in enumerate(items))


def _parse_hook(reader: Reader, value: object, path: Path) -> ControllerHook:
    hook = reader.mapping(value, path, "{kind: argocd, url_env: STAGEFLOW_PROD_ARGOCD_WEBHOOK}")
    if "kind" not in hook:
        reader.fail((*path, "kind"), "is missing", f"add kind: with one of {', '.join(HOOK_KINDS)}")
    kind = hook["kind"]
    if kind not in HOOK_KINDS:
        reader.fail(
            (*path, "kind"),
            f"{json.dumps(kind) if isinstance(kind, str) else repr(kind)} is not a controller",
            f"use one of {', '.join(HOOK_KINDS)}",
        )
    kind = str(kind)
    reader.keys(hook, path, _KEYS[kind], required=("url_env",))
    url_env = _env_name(reader, hook["url_env"], (*path, "url_env"))
    secret_env = None
    if hook.get("secret_env") is not None:
        secret_env = _env_name(reader, hook["secret_env"], (*path, "secret_env"))
    if kind == "argocd":
        return ControllerHook(kind, url_env, secret_env, _repository_url(reader, hook, path))
    return ControllerHook(kind, url_env, secret_env, flux_type=_flux_type(reader, hook, path))


def _env_name(reader: Reader, value: object, path: Path) -> str:
    name = reader.string(value, path, "STAGEFLOW_PROD_ARGOCD_WEBHOOK")
    if not _ENV_NAME.match(name):
        reader.fail(
            path,
            f"{json.dumps(name)} is not an environment variable name",
            "name the variable that holds the value (letters, digits and _), never the value "
            "itself: URLs and secrets stay out of Git",
        )
    return name


def _repository_url(reader: Reader, hook: Mapping[str, object], path: Path) -> str | None:
    if hook.get("repository_url") is None:
        return None
    url = reader.string(
        hook["repository_url"], (*path, "repository_url"), "https://github.com/acme/gitops"
    )
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        reader.fail(
            (*path, "repository_url"),
            "carries credentials",
            "write the URL as Argo CD's Applications name it, without a user or password",
        )
    return url


def _flux_type(reader: Reader, hook: Mapping[str, object], path: Path) -> str:
    has_secret = hook.get("secret_env") is not None
    if hook.get("type") is None:
        return "generic-hmac" if has_secret else "generic"
    kind = hook["type"]
    if kind not in FLUX_TYPES:
        reader.fail(
            (*path, "type"),
            f"{json.dumps(kind) if isinstance(kind, str) else repr(kind)} is not a Receiver type "
            "Stageflow sends",
            f"use one of {', '.join(FLUX_TYPES)}",
        )
    if kind == "generic-hmac" and not has_secret:
        reader.fail(
            (*path, "secret_env"),
            "is missing: a generic-hmac Receiver checks a signature",
            "add secret_env: naming the variable that holds the Receiver's token",
        )
    return str(kind)


def missing_variables(hooks: Iterable[ControllerHook], environ: Mapping[str, str]) -> list[str]:
    """The variables the hooks name that are not set (or empty) in ``environ``."""
    wanted: list[str] = []
    for hook in hooks:
        wanted += [hook.url_env] + ([hook.secret_env] if hook.secret_env else [])
    return sorted({name for name in wanted if not environ.get(name, "").strip()})
