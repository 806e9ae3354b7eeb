"""Operate: liveness, readiness, Prometheus metrics, and a self-contained API reference page."""

from __future__ import annotations

import html
import time

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stageflow.domain.errors import StageflowError
from stageflow.logs import redact

blp = Blueprint("operate", __name__)


@blp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up."""
    return jsonify({"status": "ok"})


# The parts reads need; /readyz is 503 only when one of them fails. Everything else (the
# remote, the database, the disk, the files, kustomize) is reported, and decides /readyz/writes.
READS_NEED = frozenset({"state"})


@blp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 while reads can be served, with every part's state; 503 naming what stops reads."""
    return _readiness(writes=False)


@blp.get("/readyz/writes")
def readyz_writes() -> ResponseReturnValue:
    """200 when writes can succeed; 503 naming each part that stops them."""
    return _readiness(writes=True)


def _readiness(*, writes: bool) -> ResponseReturnValue:
    checks = current_app.extensions["stageflow.readiness"]
    results: dict[str, dict[str, object]] = {}
    for name, probe in checks.items():
        started = time.perf_counter()
        try:
            detail = probe(writes)
            results[name] = {"ok": True, "detail": detail}
        except StageflowError as exc:
            results[name] = {"ok": False, "detail": exc.message}
        except Exception as exc:  # a probe must never turn readiness into a 500
            results[name] = {"ok": False, "detail": redact(f"{type(exc).__name__}: {exc}")}
        results[name]["seconds"] = round(time.perf_counter() - started, 4)
    broken = [name for name, result in results.items() if not result["ok"]]
    # Reads: a process that can answer from its clone stays in the load balancer whatever
    # else is down, so a shared dependency's outage never takes every replica out with it.
    decisive = (
        broken
        if writes or not READS_NEED & set(checks)
        else [name for name in broken if name in READS_NEED]
    )
    what = "writes" if writes else "reads"
    if decisive:
        body = {
            "error": {
                "code": "not_ready",
                "message": f"{what} cannot succeed: {', '.join(decisive)} unusable — "
                + "; ".join(f"{n}: {results[n]['detail']}" for n in decisive),
                "details": results,
            }
        }
        return jsonify(body), 503
    return jsonify({"status": "ready", "degraded": broken, "checks": results})


@blp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus metrics in the text format."""
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


@blp.get("/docs")
def docs() -> ResponseReturnValue:
    """A plain HTML reference built from /openapi.json (no CDN: works on closed networks)."""
    spec = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    rows = []
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op.get('summary', ''))}</td><td>{codes}</td></tr>"
            )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Stageflow API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 12px;border-bottom:1px solid"
        " #ddd;vertical-align:top}</style></head><body><h1>Stageflow API v1</h1>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Authenticate with "
        "<code>Authorization: Bearer &lt;token&gt;</code>. Errors are "
        '<code>{"error": {"code", "message", "details"}}</code>.</p>'
        "<table><tr><th>method</th><th>path</th><th>what</th><th>answers</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return Response(page, mimetype="text/html")
