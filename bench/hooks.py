"""The controller-hook row: a failed smoke report until Argo CD is told of the revert (issue #19).

A stage whose controller is told of every commit rolls back in the time Stageflow takes to push
the revert and send the hook, not in Argo CD's three-minute poll. The row times a failed smoke
report for a promoted revision until a receiver on 127.0.0.1, standing in for Argo CD's
``/api/webhook``, gets the GitHub push event naming the revert.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import writes
from bench.client import expect
from bench.gitops import APP, STAGES, git
from bench.processes import free_port
from bench.server import StageflowServer

URL_ENV = "STAGEFLOW_BENCH_STAGING_ARGOCD"
HOOK = (
    "    controller_hooks:\n"
    "      - kind: argocd\n"
    f"        url_env: {URL_ENV}\n"
    "        repository_url: https://git.example.com/bench/gitops.git\n"
)


class Receiver:
    """Records when each push event arrives, by the revision it names (``after``)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.perf_counter()
                after = json.loads(body).get("after", "") if body else ""
                with owner.changed:
                    owner.arrived.setdefault(after, now)
                    owner.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, revision: str, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: revision in self.arrived, timeout)
            return self.arrived.get(revision)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def add_hook(remote: Path) -> None:
    """Push a stageflow.yaml whose staging stage tells its Argo CD (the receiver) of commits."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "-q", str(remote), str(work))
        pipeline = work / "stageflow.yaml"
        text = pipeline.read_text()
        marker = f"  - name: {STAGES[1]}\n"
        if marker not in text:
            raise RuntimeError(f"no stage {STAGES[1]} in the bench's stageflow.yaml")
        pipeline.write_text(text.replace(marker, marker + HOOK, 1))
        git("commit", "-q", "-am", "bench: controller hook on staging", cwd=work)
        git("push", "-q", "origin", "HEAD", cwd=work)


def controller_told(
    server: StageflowServer, receiver: Receiver, *, reps: int, warmup: int = 1
) -> writes.Series:
    """A failed smoke report for a promoted revision, until the hook naming the revert arrives.

    The floor of each sample is the same report until its answer (the revert is pushed by
    then): the difference is what telling the controller adds.
    """
    series = writes.Series()
    paths = server.paths()
    client = server.admin()
    target = STAGES[1]
    try:
        for i in range(warmup + reps):
            writes._ready_first_stage(server, client, f"5.0.{i}", paths)
            promotion, _ = writes._promote(client, target)
            started = time.perf_counter()
            answer = client.post(
                writes.CHECKS.format(app=APP, stage=target),
                {
                    "kind": "smoke",
                    "revision": promotion["revision"],
                    "status": "failed",
                    "summary": "bench",
                },
            )
            report = expect(answer, 200, 201, what="report a failed smoke check")
            revert = (report.get("rollback") or {}).get("revision")
            arrived = receiver.wait_for(str(revert), 10.0) if revert else None
            client.request("DELETE", f"/api/v1/apps/{APP}/stages/{target}/hold")
            if arrived is None:
                series.rejected.append("no hook named the revert within 10 s")
            elif i >= warmup:
                series.samples.append(arrived - started)
                series.floor.append(answer.seconds)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        series.error = str(exc)
    finally:
        client.close()
    return series
