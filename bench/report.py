"""Rows of results, the Markdown tables they print as, and ``bench/results.json``."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"

NOT_BUILT = "n/a (not built yet)"

# Column order of each table; a row fills the cells it has.
COLUMNS: dict[str, tuple[str, ...]] = {
    "writes": ("row", "n", "median", "p95", "floor", "floor median", "ratio", "target", "verdict"),
    "reads": (
        "endpoint",
        "clients",
        "req/s",
        "p50",
        "p99",
        "errors",
        "Unleash req/s",
        "ours/Unleash",
        "target",
        "verdict",
    ),
    "scale": (
        "row",
        "n",
        "median",
        "p95",
        "floor median",
        "vs floor",
        "base median",
        "vs base",
        "git alone vs base",
        "target",
        "verdict",
    ),
    "concurrency": ("row", "value", "reference", "ratio", "target", "verdict"),
    "replicas": (
        "row",
        "value",
        "req/s",
        "reference",
        "ratio",
        "lost",
        "409",
        "p99",
        "errors",
        "target",
        "verdict",
    ),
    "resources": ("row", "value", "reference", "ratio", "target", "verdict"),
    "peers": ("row", "ours", "Unleash", "ours/Unleash", "target", "verdict"),
    "policies": ("row", "n", "on median", "on p95", "off median", "on/off", "target", "verdict"),
    "dashboard": (
        "row",
        "n",
        "median",
        "p95",
        "floor",
        "floor median",
        "vs floor",
        "target",
        "verdict",
    ),
    "streams": (
        "row",
        "n",
        "p50 without",
        "p99 without",
        "p50 with 1,000",
        "p99 with 1,000",
        "p50 change",
        "p99 change",
        "value",
        "target",
        "verdict",
    ),
}
TITLES = {
    "writes": "Writes: request start until the 200 (the commit is on the remote)",
    "scale": "Scale: the toggle on a large repository",
    "reads": "Reads: throughput and latency under load",
    "concurrency": "Concurrent writers",
    "replicas": "Replicas: two `stageflow serve` on one PostgreSQL and one remote",
    "resources": "Memory",
    "peers": "Against Unleash",
    "policies": "Manifest policies: the same write with every policy on, and with none",
    "dashboard": "Dashboard live pages: open pages on the event-stream server",
    "streams": "Event streams: 1,000 idle SSE connections held while the rows run",
}


def ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def times(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}x"


def number(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "**MISS**")


@dataclass
class Row:
    """One line of one table: formatted cells for people, raw values for results.json."""

    table: str
    name: str
    cells: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    ok: bool | None = None
    note: str = ""

    def cell(self, column: str) -> str:
        if column in ("row", "endpoint"):
            return self.name + (f" — {self.note}" if self.note else "")
        if column == "target":
            return self.target
        if column == "verdict":
            return verdict(self.ok)
        return self.cells.get(column, "")


def unavailable(table: str, name: str, note: str = NOT_BUILT, target: str = "") -> Row:
    return Row(table, name, note=note, target=target)


def render(rows: list[Row]) -> str:
    """All rows as Markdown tables, one per kind, in a fixed order."""
    out: list[str] = []
    for table, columns in COLUMNS.items():
        mine = [row for row in rows if row.table == table]
        if not mine:
            continue
        out.append(f"### {TITLES[table]}\n")
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "|".join(" --- " for _ in columns) + "|")
        for row in mine:
            cells = (" ".join(row.cell(c).split()).replace("|", "\\|") for c in columns)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _first_line(path: Path, prefix: str) -> str:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs other work keeps busy right now (from /proc/stat over ``seconds``)."""

    def sample() -> tuple[int, int]:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    share = (busy1 - busy0) / max(1, total1 - total0)
    return round(share * (os.cpu_count() or 1), 2)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    memory_kb = _first_line(Path("/proc/meminfo"), "MemTotal").split()[0]
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout
    dirty = subprocess.run(
        [*git, "status", "--porcelain"], capture_output=True, text=True, check=False
    ).stdout
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": _first_line(Path("/proc/cpuinfo"), "model name"),
        "memory_gib": round(int(memory_kb) / 1024 / 1024, 1) if memory_kb.isdigit() else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git": (
            subprocess.run(
                ["git", "--version"], capture_output=True, text=True, check=False
            ).stdout.strip()
        ),
        "commit": head.strip(),
        "working_tree_dirty": bool(dirty.strip()),
        "load_average_at_start": load_average(),
        "cpus_busy_with_other_work_at_start": busy_cpus(),
    }


def _finite(value: Any) -> Any:
    """NaN (a median of nothing) as null, so that results.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def save(kind: str, meta: dict[str, Any], rows: list[Row], samples: dict[str, Any]) -> Path:
    """Write this run under ``kind`` ("bench" or "peers") and keep the other kind's last run."""
    try:
        existing = json.loads(RESULTS.read_text())
        if not isinstance(existing, dict):
            existing = {}
    except (OSError, ValueError):
        existing = {}
    existing[kind] = _finite(
        {"meta": meta, "rows": [asdict(row) for row in rows], "samples": samples}
    )
    RESULTS.write_text(json.dumps(existing, indent=1, default=str, allow_nan=False) + "\n")
    return RESULTS
