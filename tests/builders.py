"""Test data and helpers that look at the remote the way Argo CD or a reviewer would."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from stageflow.adapters.kustomize import KubectlKustomize
from tests.conftest import git


def remote_head(bare: Path, branch: str = "main") -> str:
    return git("--git-dir", str(bare), "rev-parse", f"refs/heads/{branch}").strip()


def remote_log(bare: Path, count: int = 50) -> list[str]:
    return git("--git-dir", str(bare), "log", f"-{count}", "--format=%H").split()


def commit_message(bare: Path, revision: str) -> str:
    return git("--git-dir", str(bare), "log", "-1", "--format=%B", revision)


def changed_files(bare: Path, revision: str) -> list[str]:
    out = git("--git-dir", str(bare), "show", "--name-only", "--format=", revision)
    return [line for line in out.splitlines() if line]


def read_remote(bare: Path, revision: str, path: str) -> str:
    return git("--git-dir", str(bare), "show", f"{revision}:{path}")


def render_remote(bare: Path, revision: str, overlay: str) -> str:
    """`kubectl kustomize` of one overlay exactly as the remote has it at ``revision``."""
    import subprocess

    archive = subprocess.run(
        ["git", "--git-dir", str(bare), "archive", "--format=tar", revision],
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        return KubectlKustomize.from_setting().render(Path(tmp) / overlay)


def rendered_objects(stream: str) -> list[dict]:
    from ruamel.yaml import YAML

    return [doc for doc in YAML(typ="safe").load_all(stream) if doc]


def rendered_config_map(stream: str, prefix: str = "demo-flags") -> dict:
    for obj in rendered_objects(stream):
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith(prefix):
            return obj
    raise AssertionError(f"no ConfigMap {prefix}-* in the render")


def third_party_commit(bare: Path, path: str, text: str, message: str = "hand edit") -> str:
    """Push a commit to the remote as a person with the git CLI would."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "-q", str(bare), str(work))
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", message, cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()


def add_app(bare: Path, name: str, copy_of: str = "demo") -> str:
    """Push another app to the remote: a copy of ``copy_of`` under its own name, in the pipeline."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "-q", str(bare), str(work))
        source, target = work / "apps" / copy_of, work / "apps" / name
        for path in sorted(source.rglob("*")):
            if path.is_file():
                dest = target / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(path.read_text().replace(copy_of, name))
        pipeline = work / "stageflow.yaml"
        pipeline.write_text(
            pipeline.read_text().replace(
                f"  {copy_of}:\n    path: apps/{copy_of}\n",
                f"  {copy_of}:\n    path: apps/{copy_of}\n  {name}:\n    path: apps/{name}\n",
            )
        )
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"add the app {name}", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()


def make_token(client: Any, owner: str, roles: list[str], **scope: list[str]) -> str:
    """Create a token over the API (``client`` sends an admin token); return its secret."""
    body: dict[str, Any] = {"name": owner, "owner": owner, "roles": roles}
    if scope:
        body["scope"] = scope
    created = client.post("/api/v1/tokens", json=body)
    assert created.status_code == 201, created.get_json()
    return str(created.get_json()["token"])


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
