"""The cost of manifest policies (issue #17): toggles and promotions with every policy on,
as a ratio to the same on a server without policies, taken in turn over the same minutes.

Both servers run the starter repository (100 flags); one with every policy kind switched on
(the starter's namespace-isolation, network-isolation, pinned-images and its example
ValidatingAdmissionPolicy, plus resources, kubernetes-schema and parity on staging), the other
with none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import writes
from bench.gitops import RepoShape, flag_key
from bench.report import Row, ms, times
from bench.server import StageflowServer
from bench.stats import summary_ms

GOAL = 1.15


def _ratio_row(name: str, on: writes.Series, off: writes.Series) -> Row:
    if not on.samples or not off.samples:
        error = on.error or off.error or "no samples"
        return Row("policies", name, note=f"error: {error}", target=f"≤ {GOAL}x", ok=False)
    ours, base = summary_ms(on.samples), summary_ms(off.samples)
    ratio = ours["median"] / base["median"]
    rejected = on.rejected + off.rejected
    return Row(
        "policies",
        name,
        cells={
            "n": str(ours["n"]),
            "on median": ms(ours["median"]),
            "on p95": ms(ours["p95"]),
            "off median": ms(base["median"]),
            "on/off": times(ratio),
        },
        values={"on": on.to_json(), "off": off.to_json(), "ratio": ratio},
        target=f"≤ {GOAL}x",
        ok=ratio <= GOAL and not rejected,
        note=f"{len(rejected)} answers rejected: {rejected[0]}" if rejected else "",
    )


def _toggles(on: StageflowServer, off: StageflowServer, reps: int) -> tuple[writes.Series, ...]:
    key = flag_key(7)
    mine, theirs = writes.Toggler(on, key), writes.Toggler(off, key)
    series = (writes.Series(), writes.Series())
    for i in range(2 + reps):
        mine.step(series[0], record=i >= 2)
        theirs.step(series[1], record=i >= 2)
    mine.close()
    theirs.close()
    return series


def _promotions(on: StageflowServer, off: StageflowServer, reps: int) -> tuple[writes.Series, ...]:
    series = (writes.Series(), writes.Series())
    servers = ((on, series[0], on.admin()), (off, series[1], off.admin()))
    paths = on.paths()
    try:
        for i in range(1 + reps):
            for server, out, client in servers:
                writes._ready_first_stage(server, client, f"5.0.{i}", paths)
                _, elapsed = writes._promote(client, "staging")
                if i >= 1:
                    out.samples.append(elapsed)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        series[0].error = str(exc)
    finally:
        for _, _, client in servers:
            client.close()
    return series


def policy_rows(root: Path, reps: int, prometheus_url: str) -> tuple[list[Row], dict[str, Any]]:
    """Start the two servers, take the paired toggles and promotions, return the rows."""
    on = StageflowServer(
        root / "policies-on", RepoShape(policies="all"), prometheus_url=prometheus_url
    )
    off = StageflowServer(
        root / "policies-off", RepoShape(policies="off"), prometheus_url=prometheus_url
    )
    try:
        on.start()
        off.start()
        toggle = _toggles(on, off, reps)
        promotion = _promotions(on, off, reps)
        on.ensure_alive("the policy rows")
        off.ensure_alive("the policy rows")
    finally:
        on.stop()
        off.stop()
    rows = [
        _ratio_row("flag toggle, every policy on vs none", *toggle),
        _ratio_row(
            "promotion development → staging until applied, every policy on vs none", *promotion
        ),
    ]
    return rows, {
        "policies_toggle": [s.to_json() for s in toggle],
        "policies_promotion": [s.to_json() for s in promotion],
    }
