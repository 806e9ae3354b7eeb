"""The one build step pyproject.toml cannot declare: ship the repository's `overlays/` (the
starter GitOps repo) and `migrations/` (Alembic) inside the wheel, as `stageflow/_data/`.

The top-level folders stay the one copy people edit; `stageflow.resources.shipped` finds the
wheel's copy when installed and the checkout's otherwise (an editable install skips this step).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("overlays", "migrations")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "stageflow" / "_data"
        for name in SHIPPED:
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(
                HERE / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


setup(cmdclass={"build_py": BuildPyWithData})
