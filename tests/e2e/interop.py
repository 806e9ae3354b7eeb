"""The JavaScript side of the interop tests (``tests/interop``): install it, run a script in it.

Node and npm are the only things needed; the packages come from ``tests/interop/package-lock.json``
into ``tests/interop/node_modules`` (gitignored) whenever one of package.json's is missing there
(the first time, and after a package is added). Scripts talk to 127.0.0.1 only
and are killed after ``timeout`` seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

HARNESS = Path(__file__).parents[1] / "interop"
_install_lock = threading.Lock()


def node_harness() -> Path:
    """Return the harness folder with its packages installed; skip when Node or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the OpenFeature JavaScript interop tests")
    with _install_lock:
        wanted = json.loads((HARNESS / "package.json").read_text())["dependencies"]
        if not all((HARNESS / "node_modules" / name).is_dir() for name in wanted):
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HARNESS,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {HARNESS} failed: {done.stderr[-2000:]}")
    return HARNESS


def run_script(script: str, job: dict[str, Any], *, timeout: float = 120) -> Any:
    """Run ``node <script> <job.json>`` in the harness; return the JSON it prints."""
    harness = node_harness()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
    try:
        done = subprocess.run(
            ["node", script, handle.name],
            cwd=harness,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        Path(handle.name).unlink()
    assert done.returncode == 0, f"node {script} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve the app over real HTTP on a free 127.0.0.1 port until the block ends."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="stageflow-interop-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=30)
        httpd.server_close()
