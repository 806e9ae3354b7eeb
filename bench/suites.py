"""What `make bench` and `make bench-peers` measure, and the rows they make of it."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import concurrency, load, visibility, writes
from bench.client import Client
from bench.gitops import APP, STAGES, Floor, RepoShape, flag_key
from bench.report import NOT_BUILT, Row, ms, number, times, unavailable
from bench.server import StageflowServer, StubPrometheus
from bench.stats import summary_ms
from bench.unleash import UnleashServer, UnleashUnavailable, install

if TYPE_CHECKING:
    from bench.__main__ import Config

READ_CONCURRENCY = (1, 8, 32)
P99_TARGET_MS = 50.0
FLAGD_DOC = f"/api/v1/apps/{APP}/stages/{STAGES[0]}/flags"
OFREP_BULK = "/ofrep/v1/evaluate/flags"
OFREP_BODY = {"context": {"targetingKey": "user-1"}}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- rows ---------------------------------------------------------------------------------------


def latency_row(
    table: str,
    name: str,
    series: writes.Series,
    *,
    floor_name: str,
    limit: float | None,
    target: str,
    absolute_ms: float | None = None,
) -> Row:
    """A write row: median/p95 and the ratio of medians to the floor measured alongside it."""
    if series.error and not series.samples:
        return Row(table, name, note=f"error: {series.error}", target=target, ok=False)
    ours = summary_ms(series.samples)
    floor = summary_ms(series.floor)
    ratio = ours["median"] / floor["median"] if series.samples and series.floor else None
    ok: bool | None = None
    if absolute_ms is not None and series.samples:
        ok = ours["median"] < absolute_ms and not series.rejected
    elif limit is not None and ratio is not None:
        ok = ratio <= limit and not series.rejected
    note = ""
    if series.rejected:
        note = f"{len(series.rejected)} answers rejected: {series.rejected[0]}"
    if series.error:
        note = (note + "; " if note else "") + f"stopped: {series.error}"
    return Row(
        table,
        name,
        cells={
            "n": str(ours["n"]),
            "median": ms(ours["median"]),
            "p95": ms(ours["p95"]),
            "floor": floor_name,
            "floor median": ms(floor["median"]),
            "ratio": times(ratio),
            "vs floor": times(ratio),
        },
        values={"ours_ms": ours, "floor_ms": floor, "ratio": ratio, **series.to_json()},
        target=target,
        ok=ok,
        note=note,
    )


def floor_row(name: str, samples: list[float]) -> Row:
    stats = summary_ms(samples)
    return Row(
        "writes",
        name,
        cells={"n": str(stats["n"]), "median": ms(stats["median"]), "p95": ms(stats["p95"])},
        values={"ms": stats, "samples_s": [round(s, 6) for s in samples]},
    )


def read_row(name: str, result: dict[str, Any], peer: dict[str, Any] | None = None) -> Row:
    concurrency_ = result["concurrency"]
    ok = result["p99_ms"] < P99_TARGET_MS and result["errors"] == 0
    target = f"p99 < {P99_TARGET_MS:.0f} ms"
    cells = {
        "clients": str(concurrency_),
        "req/s": number(result["rps"]),
        "p50": ms(result.get("p50_ms")),
        "p99": ms(result["p99_ms"]),
        "errors": str(result["errors"]),
    }
    values: dict[str, Any] = {"ours": result}
    if peer is not None:
        ratio = result["rps"] / peer["rps"] if peer.get("rps") else None
        cells["Unleash req/s"] = number(peer.get("rps"))
        cells["ours/Unleash"] = times(ratio)
        values["unleash"] = peer
        values["ratio"] = ratio
        if concurrency_ >= 8:
            target = f"≥ 2x Unleash, {target}"
            ok = ok and ratio is not None and ratio >= 2.0
    return Row("reads", name, cells=cells, values=values, target=target, ok=ok)


# -- shared measurements ------------------------------------------------------------------------


def read_requests(server: StageflowServer, with_ofrep: bool) -> dict[str, load.Request | None]:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    requests: dict[str, load.Request | None] = {
        "GET app state": load.Request("app", server.url, f"/api/v1/apps/{APP}", headers=admin),
        "GET flag matrix": load.Request(
            "matrix", server.url, f"/api/v1/apps/{APP}/flags", headers=admin
        ),
        "GET flagd document": load.Request("flagd", server.url, FLAGD_DOC, headers=admin),
        "POST OFREP bulk evaluation": None,
    }
    if with_ofrep:
        requests["POST OFREP bulk evaluation"] = load.Request(
            "ofrep",
            server.url,
            OFREP_BULK,
            method="POST",
            headers={"Authorization": f"Bearer {server.ofrep_token()}"},
            body=json.dumps(OFREP_BODY),
        )
    return requests


def check_once(request: load.Request) -> None:
    body = None if request.body is None else json.loads(request.body)
    answer = Client(request.base_url, request.headers).request(request.method, request.path, body)
    if answer.status != 200:
        raise RuntimeError(f"{request.method} {request.path}: HTTP {answer.status}")


def measure_reads(
    requests: dict[str, load.Request | None], cfg: Config
) -> dict[str, dict[int, dict[str, Any]] | None]:
    results: dict[str, dict[int, dict[str, Any]] | None] = {}
    for name, request in requests.items():
        if request is None:
            results[name] = None
            continue
        check_once(request)
        load.run(request, 8, 1)  # warm every worker up; not recorded
        results[name] = {}
        for concurrency_ in READ_CONCURRENCY:
            say(f"reads: {name} at {concurrency_} clients for {cfg.read_seconds:g}s")
            results[name][concurrency_] = load.run(request, concurrency_, cfg.read_seconds)  # type: ignore[index]
    return results


def memory_rows(name: str, memory: dict[str, Any], helpers_mib: float | None) -> list[Row]:
    note = f"{memory.get('processes', '?')} processes"
    if helpers_mib:
        note += f"; the workers' git cat-file helpers add {helpers_mib:.0f} MiB"
    return [
        Row(
            "resources",
            f"peak RSS, gunicorn master + workers ({name})",
            cells={"value": number(memory.get("peak_rss_mib"), "MiB")},
            values=memory,
            note=note,
        ),
        Row(
            "resources",
            f"peak PSS, same processes ({name})",
            cells={"value": number(memory.get("peak_pss_mib"), "MiB")},
            values=memory,
            note="shared pages counted once",
        ),
    ]


def helpers_rss_mib(server: StageflowServer) -> float:
    from bench.processes import _status_kb

    return sum(_status_kb(pid, "VmRSS") for pid in server.helper_pids()) / 1024


# -- make bench ---------------------------------------------------------------------------------


def run_bench(root: Path, cfg: Config, only: set[str]) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    samples: dict[str, Any] = {}

    def wanted(part: str) -> bool:
        return not only or part in only

    with StubPrometheus() as prometheus:
        base_toggle: writes.Series | None = None
        if wanted("writes") or wanted("reads") or wanted("concurrency") or wanted("scale"):
            say("starting stageflow serve on the base repository (100 flags)")
            server = StageflowServer(root / "base", RepoShape(), prometheus_url=prometheus.url)
            try:
                server.start()
                floor = Floor(server.remote, root / "base-floor")
                paths = server.paths()
                if wanted("writes") or wanted("scale"):
                    base_toggle = _write_rows(server, floor, paths, cfg, rows, samples)
                if wanted("reads"):
                    _read_rows(server, cfg, rows, samples)
                if wanted("concurrency"):
                    _concurrency_rows(server, cfg, rows, samples)
                helpers = helpers_rss_mib(server)
            finally:
                memory = server.stop()
            rows += memory_rows("base repo, after all of the above", memory, helpers)
            samples["memory_base"] = memory
        if wanted("scale") and base_toggle is not None:
            _scale_rows(root, cfg, prometheus.url, base_toggle, rows, samples)
    return rows, samples


def _write_rows(
    server: StageflowServer,
    floor: Floor,
    paths: set[str],
    cfg: Config,
    rows: list[Row],
    samples: dict[str, Any],
) -> writes.Series:
    say(f"floors: {cfg.reps} x kustomize build, {cfg.reps} x git commit + push")
    builds = [floor.build(STAGES[0]) for _ in range(cfg.reps)]
    pushes = []
    for _ in range(cfg.reps):
        floor.flip_flag(STAGES[0], flag_key(99))
        pushes.append(floor.commit_push())
    rows.append(floor_row("floor: one `kustomize build` of the development overlay", builds))
    rows.append(floor_row("floor: `git commit` + `git push` of a one-line change", pushes))

    say(f"writes: {cfg.reps} flag toggles")
    toggle = writes.toggles(server, floor, reps=cfg.reps)
    rows.append(
        latency_row(
            "writes",
            "flag toggle (PATCH …/flags/{key})",
            toggle,
            floor_name="build + commit + push",
            limit=1.2,
            target="≤ 1.2x floor",
        )
    )
    say(f"writes: {cfg.reps} image sets")
    image = writes.image_sets(server, floor, reps=cfg.reps)
    rows.append(
        latency_row(
            "writes",
            "image set, first stage (PUT …/images)",
            image,
            floor_name="build + commit + push",
            limit=1.2,
            target="≤ 1.2x floor",
        )
    )
    if writes.promotion_available(paths):
        say(f"writes: {cfg.reps} promotions development → staging")
        promotion = writes.promotions(server, floor, reps=cfg.reps)
        rows.append(
            latency_row(
                "writes",
                "promotion with passing gates, until applied",
                promotion,
                floor_name="2 builds + commit + push",
                limit=1.5,
                target="≤ 1.5x floor",
            )
        )
        samples["promotion"] = promotion.to_json()
    else:
        rows.append(
            unavailable(
                "writes", "promotion with passing gates, until applied", NOT_BUILT, "≤ 1.5x floor"
            )
        )
    if writes.rollback_available(paths):
        say(f"writes: {cfg.reps} automatic rollbacks")
        rollback = writes.rollbacks(server, floor, reps=max(3, cfg.reps // 2))
        rows.append(
            latency_row(
                "writes",
                "automatic rollback: failed smoke report until the revert is pushed",
                rollback,
                floor_name="build + commit + push",
                limit=None,
                target="< 1 s",
                absolute_ms=1000.0,
            )
        )
        samples["rollback"] = rollback.to_json()
    else:
        rows.append(
            unavailable(
                "writes",
                "automatic rollback: failed smoke report until the revert is pushed",
                NOT_BUILT,
                "< 1 s",
            )
        )
    samples["floor_build_s"] = builds
    samples["floor_commit_push_s"] = pushes
    samples["toggle"] = toggle.to_json()
    samples["image"] = image.to_json()
    return toggle


def _read_rows(
    server: StageflowServer, cfg: Config, rows: list[Row], samples: dict[str, Any]
) -> None:
    requests = read_requests(server, server.has_ofrep())
    results = measure_reads(requests, cfg)
    for name, by_concurrency in results.items():
        if by_concurrency is None:
            rows.append(unavailable("reads", name, NOT_BUILT, f"p99 < {P99_TARGET_MS:.0f} ms"))
            continue
        for result in by_concurrency.values():
            rows.append(read_row(name, result))
    samples["reads"] = results


def _concurrency_rows(
    server: StageflowServer, cfg: Config, rows: list[Row], samples: dict[str, Any]
) -> None:
    n = 16
    say(f"concurrency: 1 client x {cfg.writers_per_client * 2} toggles, new connection each")
    one = concurrency.run(server, clients=1, per_client=cfg.writers_per_client * 2, first_flag=40)
    say(f"concurrency: {n} clients x {cfg.writers_per_client} toggles of {n} different flags")
    many = concurrency.run(server, clients=n, per_client=cfg.writers_per_client, first_flag=10)
    ratio = many["toggles_per_s"] / one["toggles_per_s"] if one["toggles_per_s"] else None
    rows.append(
        Row(
            "concurrency",
            "toggles/s, 1 client",
            cells={"value": number(one["toggles_per_s"], "/s")},
            values=one,
            note=_writer_note(one),
            ok=None if one["lost_updates"] == 0 else False,
        )
    )
    rows.append(
        Row(
            "concurrency",
            f"toggles/s, {n} clients on {n} flags",
            cells={
                "value": number(many["toggles_per_s"], "/s"),
                "reference": number(one["toggles_per_s"], "/s (1 client)"),
                "ratio": times(ratio),
            },
            values=many,
            target="≥ 1x one client",
            ok=ratio is not None and ratio >= 1.0,
            note=_writer_note(many),
        )
    )
    rows.append(
        Row(
            "concurrency",
            f"lost updates ({n} clients)",
            cells={
                "value": str(many["lost_updates"]),
                "reference": f"{many['acknowledged']} acknowledged toggles",
            },
            values={"lost": many["lost_updates"], "one_client_lost": one["lost_updates"]},
            target="0",
            ok=many["lost_updates"] == 0 and one["lost_updates"] == 0,
            note=(
                f"1 client: {one['lost_updates']} lost of {one['acknowledged']}"
                if one["lost_updates"]
                else ""
            ),
        )
    )
    samples["concurrency"] = {"one": one, "many": many}


def _writer_note(result: dict[str, Any]) -> str:
    parts = [f"{result['acknowledged']} acked, {result['commits']} commits"]
    if result["failed"]:
        parts.append(f"{result['failed']} refused")
    if result["stale_acks"]:
        parts.append(f"{result['stale_acks']} answers older than the client's previous one")
    if result["lost_updates"]:
        parts.append(f"{result['lost_updates']} LOST")
    return ", ".join(parts)


def _scale_rows(
    root: Path,
    cfg: Config,
    prometheus_url: str,
    base: writes.Series,
    rows: list[Row],
    samples: dict[str, Any],
) -> None:
    shapes = [
        ("5,000 flags in development", RepoShape(flags=5000)),
        ("20,000 commits of history", RepoShape(history=20_000)),
    ]
    if not cfg.quick:
        shapes.append(("20,000 commits and 5,000 flags", RepoShape(flags=5000, history=20_000)))
    base_median = summary_ms(base.samples)["median"] if base.samples else None
    rows.append(
        Row(
            "scale",
            "flag toggle, base repo (100 flags, 2 commits) — from the writes table",
            cells={
                "n": str(len(base.samples)),
                "median": ms(base_median),
                "p95": ms(summary_ms(base.samples)["p95"]),
                "floor median": ms(summary_ms(base.floor)["median"]),
                "vs floor": times(
                    base_median / summary_ms(base.floor)["median"] if base.floor else None
                ),
            },
        )
    )
    for label, shape in shapes:
        name = label.replace(",", "").replace(" ", "_")
        say(f"scale: building and serving a repo with {label}")
        server = StageflowServer(root / name, shape, prometheus_url=prometheus_url)
        try:
            server.start()
            floor = Floor(server.remote, root / f"{name}-floor")
            series = writes.toggles(server, floor, reps=cfg.scale_reps)
            helpers = helpers_rss_mib(server)
        finally:
            memory = server.stop()
        row = latency_row(
            "scale",
            f"flag toggle, {label}",
            series,
            floor_name="build + commit + push",
            limit=None,
            target="≤ 1.3x base",
        )
        ours = summary_ms(series.samples)["median"] if series.samples else None
        vs_base = ours / base_median if ours and base_median else None
        row.cells["vs base"] = times(vs_base)
        row.values["vs_base"] = vs_base
        row.values["repo"] = server.built
        row.ok = vs_base is not None and vs_base <= 1.3 and not series.rejected
        rows.append(row)
        rows += memory_rows(label, memory, helpers)
        samples[f"scale_{name}"] = {**series.to_json(), "memory": memory, "repo": server.built}


# -- make bench-peers ---------------------------------------------------------------------------


def _ours_visibility(server: StageflowServer, cfg: Config, key: str) -> dict[str, list[Any]]:
    admin = server.admin()
    toggle_path = f"/api/v1/apps/{APP}/stages/{STAGES[0]}/flags/{key}"

    def toggle(value: bool) -> None:
        answer = admin.request("PATCH", toggle_path, {"enabled": value})
        if answer.status != 200:
            raise RuntimeError(f"toggle: HTTP {answer.status}")

    doc_client = server.admin(keep_alive=False)

    def flagd() -> bool | None:
        answer = doc_client.get(FLAGD_DOC)
        if answer.status != 200:
            return None
        return bool(answer.json()["flags"][key]["defaultVariant"] == "on")

    readers: dict[str, Callable[[], bool | None]] = {"flagd document": flagd}
    if server.has_ofrep():
        ofrep_client = server.ofrep(keep_alive=False)

        def ofrep() -> bool | None:
            answer = ofrep_client.post(OFREP_BULK, OFREP_BODY)
            if answer.status != 200:
                return None
            for flag in answer.json().get("flags", []):
                if flag.get("key") == key:
                    return bool(flag.get("value"))
            return None

        readers["OFREP bulk evaluation"] = ofrep
    initial = flagd()
    return visibility.series(toggle, readers, bool(initial), reps=cfg.visibility_reps)


def _their_toggles(unleash: UnleashServer, reps: int, key: str) -> list[float]:
    admin = unleash.admin()
    out = []
    state = False
    for i in range(reps + 2):
        state = not state
        answer = admin.post(unleash.toggle_path(key, state))
        if answer.status != 200:
            raise RuntimeError(f"Unleash toggle: HTTP {answer.status} {answer.body[:200]!r}")
        if i >= 2:
            out.append(answer.seconds)
    admin.close()
    return out


def run_peers(root: Path, cfg: Config) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    samples: dict[str, Any] = {}
    key = flag_key(1)  # a beta flag, OFF at the start, in both systems

    say("starting stageflow serve on the base repository (100 flags)")
    with StubPrometheus() as prometheus:
        server = StageflowServer(root / "ours", RepoShape(), prometheus_url=prometheus.url)
        try:
            server.start()
            with_ofrep = server.has_ofrep()
            requests = read_requests(server, with_ofrep)
            ours_reads = measure_reads(
                {
                    name: requests[name]
                    for name in ("GET flagd document", "POST OFREP bulk evaluation")
                },
                cfg,
            )
            say(f"ours: {cfg.reps} toggles")
            ours_toggle = writes.toggles(server, None, reps=cfg.reps, key=flag_key(3))
            say(f"ours: {cfg.visibility_reps} x toggle-to-visible")
            ours_visible = _ours_visibility(server, cfg, key)
        finally:
            ours_memory = server.stop()
    samples["ours"] = {
        "reads": ours_reads,
        "toggle": ours_toggle.to_json(),
        "visible_s": ours_visible,
        "memory": ours_memory,
    }

    theirs: dict[str, Any] = {}
    why_not: str | None = None
    try:
        say("installing Unleash 8 (npm, cached in bench/.cache/unleash)")
        installed = install()
        theirs["installed"] = installed
        unleash = UnleashServer(root, installed)
        try:
            say(f"starting Unleash {installed['unleash']} on node {installed['node_version']}")
            unleash.start()
            unleash.create_flags(100)
            request = load.Request(
                "unleash",
                unleash.url,
                "/api/client/features",
                headers={"Authorization": unleash.client_token},
            )
            theirs["reads"] = measure_reads({"Unleash GET /api/client/features": request}, cfg)[
                "Unleash GET /api/client/features"
            ]
            say(f"Unleash: {cfg.reps} toggles")
            theirs["toggle_s"] = _their_toggles(unleash, cfg.reps, flag_key(3))
            say(f"Unleash: {cfg.visibility_reps} x toggle-to-visible")
            admin = unleash.admin()
            reader = unleash.client(keep_alive=False)
            theirs["visible_s"] = visibility.series(
                lambda value: admin.post(unleash.toggle_path(key, value)),
                {"client features": lambda: unleash.enabled(reader, key)},
                False,
                reps=cfg.visibility_reps,
            )
        finally:
            theirs["memory"] = unleash.stop()
    except UnleashUnavailable as exc:
        why_not = str(exc)
        say(f"Unleash unavailable: {why_not}")
    samples["unleash"] = theirs

    peer_reads = theirs.get("reads") or {}
    for name, by_concurrency in ours_reads.items():
        if by_concurrency is None:
            rows.append(unavailable("reads", name, NOT_BUILT, "≥ 2x Unleash at 8 and 32"))
            continue
        for concurrency_, result in by_concurrency.items():
            rows.append(read_row(name, result, peer_reads.get(concurrency_)))
    for concurrency_, result in peer_reads.items():
        rows.append(
            Row(
                "reads",
                "Unleash GET /api/client/features (for reference)",
                cells={
                    "clients": str(concurrency_),
                    "req/s": number(result["rps"]),
                    "p50": ms(result.get("p50_ms")),
                    "p99": ms(result["p99_ms"]),
                    "errors": str(result["errors"]),
                },
                values=result,
            )
        )
    if why_not:
        rows.append(unavailable("peers", "Unleash 8", f"not measured: {why_not}"))
        return rows, samples

    ours_toggle_ms = summary_ms(ours_toggle.samples)["median"]
    their_toggle_ms = summary_ms(theirs["toggle_s"])["median"]
    rows.append(
        Row(
            "peers",
            "toggle latency, request → 200 (median)",
            cells={
                "ours": ms(ours_toggle_ms),
                "Unleash": ms(their_toggle_ms),
                "ours/Unleash": times(ours_toggle_ms / their_toggle_ms),
            },
            values={"ours_ms": ours_toggle_ms, "unleash_ms": their_toggle_ms},
            note="ours renders, commits and pushes to Git; theirs is a database row",
        )
    )
    their_visible = [s for s in theirs["visible_s"]["client features"] if s is not None]
    their_visible_ms = summary_ms(their_visible)["median"] if their_visible else None
    for name, values in ours_visible.items():
        seen = [s for s in values if s is not None]
        ours_ms = summary_ms(seen)["median"] if seen else None
        ratio = ours_ms / their_visible_ms if ours_ms and their_visible_ms else None
        rows.append(
            Row(
                "peers",
                f"toggle-to-visible (median), ours via {name}, theirs via /api/client/features",
                cells={
                    "ours": ms(ours_ms),
                    "Unleash": ms(their_visible_ms),
                    "ours/Unleash": times(ratio),
                },
                values={"ours_s": values, "unleash_s": theirs["visible_s"]["client features"]},
                target="≤ 0.3x",
                ok=ratio is not None and ratio <= 0.3 and len(seen) == len(values),
                note="" if len(seen) == len(values) else f"{len(values) - len(seen)} never seen",
            )
        )
    ours_rss = ours_memory.get("peak_rss_mib")
    their_rss = theirs["memory"].get("peak_rss_mib")
    with_db = theirs["memory"].get("with_postgres_backends", {}).get("peak_rss_mib")
    rows.append(
        Row(
            "peers",
            "server peak RSS (ours: gunicorn master + workers; theirs: the node process)",
            cells={
                "ours": number(ours_rss, "MiB"),
                "Unleash": number(their_rss, "MiB"),
                "ours/Unleash": times(ours_rss / their_rss if ours_rss and their_rss else None),
            },
            values={"ours": ours_memory, "unleash": theirs["memory"]},
            target="< 0.5x",
            ok=bool(ours_rss and their_rss and ours_rss < 0.5 * their_rss),
            note=(
                f"PSS ours {ours_memory.get('peak_pss_mib')} MiB; Unleash with its PostgreSQL "
                f"backends {with_db} MiB RSS"
            ),
        )
    )
    return rows, samples
