"""What `make bench` and `make bench-peers` measure, and the rows they make of it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import concurrency, dashboard, hooks, load, policies, streams, visibility, writes
from bench.client import Client
from bench.config import Config
from bench.gitops import APP, STAGES, Floor, RepoShape, build_remote, flag_key
from bench.postgres import PostgresUnavailable, PrivatePostgres
from bench.processes import status_kb
from bench.report import NOT_BUILT, Row, ms, number, times, unavailable
from bench.server import StageflowServer, StubPrometheus
from bench.stats import summary_ms
from bench.unleash import UnleashServer, UnleashUnavailable, install

READ_CONCURRENCY = (1, 8, 32)
P99_TARGET_MS = 50.0
FLAGD_DOC = f"/api/v1/apps/{APP}/stages/{STAGES[0]}/flags"
OFREP_BULK = "/ofrep/v1/evaluate/flags"
OFREP_BODY = {"context": {"targetingKey": "user-1"}}
UNLEASH_READ = "Unleash GET /api/client/features"


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
    """Every endpoint at every concurrency, the endpoints taking turns at each level (so that
    a burst of other work on the machine does not land on one endpoint only)."""
    results: dict[str, dict[int, dict[str, Any]] | None] = {}
    for name, request in requests.items():
        if request is None:
            results[name] = None
            continue
        check_once(request)
        load.run(request, 8, 1)  # warm every worker up; not recorded
        results[name] = {}
    for concurrency_ in READ_CONCURRENCY:
        for name, request in requests.items():
            if request is None:
                continue
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
    return sum(status_kb(pid, "VmRSS") for pid in server.helper_pids()) / 1024


# -- make bench ---------------------------------------------------------------------------------


def run_bench(root: Path, cfg: Config, only: set[str]) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    samples: dict[str, Any] = {}

    def wanted(part: str) -> bool:
        return not only or part in only

    with StubPrometheus() as prometheus:
        say(f"starting stageflow serve on the base repository (100 flags, policies {cfg.policies})")
        server = StageflowServer(
            root / "base", RepoShape(policies=cfg.policies), prometheus_url=prometheus.url
        )
        try:
            server.start()
            floor = Floor(server.remote, root / "base-floor")
            paths = server.paths()
            if wanted("writes"):
                _write_rows(server, floor, paths, cfg, rows, samples)
                server.ensure_alive("the write rows")
            if wanted("reads"):
                _read_rows(server, cfg, rows, samples)
                server.ensure_alive("the read rows")
            if wanted("concurrency"):
                _concurrency_rows(server, cfg, rows, samples)
                server.ensure_alive("the concurrency rows")
            helpers = helpers_rss_mib(server)
            memory = server.memory.stop() if server.memory else {}
            # The base server stays up (idle) for the scale rows: their toggles take turns
            # with toggles on it, so "vs base" compares the same minutes of machine time.
            if wanted("scale"):
                _scale_rows(root, cfg, prometheus.url, server, rows, samples)
        finally:
            server.stop()
        if wanted("replicas"):
            _replica_rows(root, cfg, prometheus.url, rows, samples)
        if wanted("hooks"):
            _hook_rows(root, cfg, prometheus.url, rows, samples)
        if wanted("policies"):
            say(f"policies: {cfg.reps} toggles and promotions, every policy on vs none, in turn")
            found, taken = policies.policy_rows(root, cfg.reps, prometheus.url)
            rows += found
            samples.update(taken)
        if wanted("dashboard"):
            say(f"dashboard: {cfg.reps} toggles with {dashboard.PAGES} open pages, and without")
            found, taken = dashboard.dashboard_rows(root, cfg.reps, prometheus.url)
            rows += found
            samples.update(taken)
        if wanted("streams"):
            found, taken = streams.stream_rows(root, cfg.reps, cfg.read_seconds, prometheus.url)
            rows += found
            samples.update(taken)
        rows += memory_rows("base repo, during the rows above", memory, helpers)
        samples["memory_base"] = memory
    return rows, samples


def _write_rows(
    server: StageflowServer,
    floor: Floor,
    paths: set[str],
    cfg: Config,
    rows: list[Row],
    samples: dict[str, Any],
) -> None:
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


HOOK_ROW = "failed-smoke-report → controller told (Argo CD hook names the revert)"


def _hook_rows(
    root: Path, cfg: Config, prometheus_url: str, rows: list[Row], samples: dict[str, Any]
) -> None:
    """On a server of its own whose staging stage has an Argo CD hook (a local receiver)."""
    receiver = hooks.Receiver()
    server = StageflowServer(
        root / "hooks",
        RepoShape(),
        prometheus_url=prometheus_url,
        env={hooks.URL_ENV: receiver.url},
    )
    try:
        say("starting stageflow serve with a controller hook on staging")
        server.start()
        if not writes.rollback_available(server.paths()):
            rows.append(unavailable("writes", HOOK_ROW, NOT_BUILT, "< 1 s"))
            return
        hooks.add_hook(server.remote)
        reps = max(3, cfg.reps // 2)
        say(f"hooks: {reps} automatic rollbacks until the controller is told")
        series = hooks.controller_told(server, receiver, reps=reps)
        rows.append(
            latency_row(
                "writes",
                HOOK_ROW,
                series,
                floor_name="the report's answer (revert pushed)",
                limit=None,
                target="< 1 s",
                absolute_ms=1000.0,
            )
        )
        samples["controller_told"] = series.to_json()
        server.ensure_alive("the controller hook row")
    finally:
        server.stop()
        receiver.close()


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

    # The same read while one client toggles a flag without pause: what a reader sees while
    # writes go on (a write holds the worker's repository lock for its whole length).
    request = requests["GET flagd document"]
    assert request is not None
    say(f"reads: GET flagd document at 8 clients for {cfg.read_seconds:g}s, one writer toggling")
    stop = threading.Event()
    writer = writes.Series()

    def toggle_on() -> None:
        toggler = writes.Toggler(server, flag_key(7))
        while not stop.is_set():
            toggler.step(writer, record=True)
        toggler.close()

    thread = threading.Thread(target=toggle_on, daemon=True)
    thread.start()
    try:
        during = load.run(request, 8, cfg.read_seconds)
    finally:
        stop.set()
        thread.join(timeout=60)
    row = read_row("GET flagd document, while 1 client toggles", during)
    row.note = f"{len(writer.samples)} toggles meanwhile"
    rows.append(row)
    samples["reads_during_writes"] = {"reads": during, "toggles": writer.to_json()}


def _concurrency_rows(
    server: StageflowServer, cfg: Config, rows: list[Row], samples: dict[str, Any]
) -> None:
    n = 16
    one_count = cfg.writers_per_client * 2
    say(f"concurrency: 1 client x {one_count} toggles, new connection each")
    first = concurrency.run(server, clients=1, per_client=one_count, first_flag=40)
    say(f"concurrency: {n} clients x {cfg.writers_per_client} toggles of {n} different flags")
    many = concurrency.run(server, clients=n, per_client=cfg.writers_per_client, first_flag=10)
    say(f"concurrency: 1 client x {one_count} toggles again")
    second = concurrency.run(server, clients=1, per_client=one_count, first_flag=41)
    # One client before and after the crowd: their mean is the reference for the same minutes.
    one = {
        key: first[key] + second[key]
        for key in ("acknowledged", "failed", "commits", "lost_updates", "stale_acks")
    }
    one["seconds"] = first["seconds"] + second["seconds"]
    one["toggles_per_s"] = one["acknowledged"] / one["seconds"] if one["seconds"] else 0.0
    one["runs"] = [first, second]
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
    base: StageflowServer,
    rows: list[Row],
    samples: dict[str, Any],
) -> None:
    shapes = [
        ("5,000 flags in development", RepoShape(flags=5000)),
        ("20,000 commits of history", RepoShape(history=20_000)),
    ]
    if not cfg.quick:
        shapes.append(("20,000 commits and 5,000 flags", RepoShape(flags=5000, history=20_000)))
    for label, shape in shapes:
        name = label.replace(",", "").replace(" ", "_")
        say(f"scale: building and serving a repo with {label}")
        server = StageflowServer(root / name, shape, prometheus_url=prometheus_url)
        try:
            server.start()
            floor = Floor(server.remote, root / f"{name}-floor")
            say(f"scale: {cfg.scale_reps} toggles there, each followed by one on the base repo")
            series, reference = writes.paired_toggles(base, server, floor, reps=cfg.scale_reps)
            say("scale: git alone there and on the base repo (commit + push, in turn)")
            base_floor = Floor(base.remote, root / f"{name}-base-floor")
            git_mine, git_base = writes.paired_commit_pushes(floor, base_floor, reps=cfg.scale_reps)
            server.ensure_alive(f"the toggles on {label}")
            base.ensure_alive(f"the toggles on {label}")
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
        base_ms = summary_ms(reference.samples)["median"] if reference.samples else None
        vs_base = ours / base_ms if ours and base_ms else None
        row.cells["base median"] = ms(base_ms)
        row.cells["vs base"] = times(vs_base)
        # What the same change costs git itself here vs on the base repo: the physical ratio.
        git_ratio = summary_ms(git_mine)["median"] / summary_ms(git_base)["median"]
        row.cells["git alone vs base"] = times(git_ratio)
        row.values["vs_base"] = vs_base
        row.values["git_commit_push_s"] = {"here": git_mine, "base": git_base, "ratio": git_ratio}
        row.values["base"] = reference.to_json()
        row.values["repo"] = server.built
        row.ok = vs_base is not None and vs_base <= 1.3 and not series.rejected
        rows.append(row)
        rows += memory_rows(label, memory, helpers)
        samples[f"scale_{name}"] = {
            **series.to_json(),
            "base": reference.to_json(),
            "memory": memory,
            "repo": server.built,
        }


def _replica_rows(
    root: Path, cfg: Config, prometheus_url: str, rows: list[Row], samples: dict[str, Any]
) -> None:
    """Two replicas on one PostgreSQL and one remote: writes shared, reads through an outage."""
    n = 16
    names = (
        f"toggles/s, 2 replicas x {n} writers vs 1 replica x {n} writers (PostgreSQL)",
        "OFREP bulk evaluation, 8 clients, during a database outage",
    )
    try:
        database = PrivatePostgres()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        for name in names:
            rows.append(unavailable("replicas", name, f"no private PostgreSQL: {exc}"))
        return
    with database:
        remote = root / "replicas" / "gitops.git"
        build_remote(remote, RepoShape())
        url = database.new_database()
        say("replicas: starting two `stageflow serve` on one remote and one PostgreSQL")
        first = StageflowServer(
            root / "replica-1",
            RepoShape(),
            prometheus_url=prometheus_url,
            remote=remote,
            database_url=url,
        )
        second = StageflowServer(
            root / "replica-2",
            RepoShape(),
            prometheus_url=prometheus_url,
            remote=remote,
            database_url=url,
        )
        second.admin_token = first.admin_token  # one ledger: the token the first one made
        try:
            first.start()
            second.start()
            _shared_writes(first, second, cfg, n, names[0], rows, samples)
            first.ensure_alive("the replica writes")
            second.ensure_alive("the replica writes")
            _reads_in_outage(first, database, cfg, names[1], rows, samples)
            first.ensure_alive("the outage reads")
        finally:
            first.stop()
            second.stop()


def _shared_writes(
    first: StageflowServer,
    second: StageflowServer,
    cfg: Config,
    n: int,
    name: str,
    rows: list[Row],
    samples: dict[str, Any],
) -> None:
    """1 replica x n writers and 2 replicas x n writers, in turn (one, two, one, ...): the
    machine is shared, and taking turns puts both under the same minutes of it."""
    per = cfg.writers_per_client
    ones: list[dict[str, Any]] = []
    twos: list[dict[str, Any]] = []
    for turn in range(3 if cfg.quick else 5):
        if turn % 2 == 0:
            replica = (first, second)[turn // 2 % 2]
            say(f"replicas: 1 replica x {n} writers x {per} toggles")
            ones.append(concurrency.run(replica, clients=n, per_client=per, first_flag=50))
        else:
            say(f"replicas: 2 replicas x {n} writers x {per} toggles (each client on one)")
            twos.append(
                concurrency.run(
                    first, clients=2 * n, per_client=per, first_flag=10, via=[first, second]
                )
            )

    def rate(runs: list[dict[str, Any]]) -> float:
        seconds = sum(r["seconds"] for r in runs)
        return sum(r["acknowledged"] for r in runs) / seconds if seconds else 0.0

    one_rate, two_rate = rate(ones), rate(twos)
    ratio = two_rate / one_rate if one_rate else None
    runs = ones + twos
    lost = sum(r["lost_updates"] for r in runs)
    conflicts = sum(r["conflicts"] for r in runs)
    refused = sum(r["failed"] for r in runs)
    rows.append(
        Row(
            "replicas",
            name,
            cells={
                "value": number(two_rate, "/s"),
                "reference": number(one_rate, "/s (1 replica)"),
                "ratio": times(ratio),
                "lost": str(lost),
                "409": str(conflicts),
            },
            values={"two": twos, "one": ones, "ratio": ratio},
            target="≥ 1.0x, 0 lost, 0 409",
            ok=ratio is not None and ratio >= 1.0 and lost == 0 and refused == 0,
            note=f"{len(twos)} runs of 2 replicas, {len(ones)} of 1, taking turns; "
            f"{sum(r['acknowledged'] for r in twos)} + {sum(r['acknowledged'] for r in ones)} "
            f"acked, {refused} refused",
        )
    )
    samples["replicas_writes"] = {"one": ones, "two": twos}


def _reads_in_outage(
    server: StageflowServer,
    database: PrivatePostgres,
    cfg: Config,
    name: str,
    rows: list[Row],
    samples: dict[str, Any],
) -> None:
    """OFREP bulk reads with the database up and down, in turn (up, down, up, ...)."""
    request = read_requests(server, True)["POST OFREP bulk evaluation"]
    assert request is not None
    check_once(request)
    load.run(request, 8, 1)  # warm every worker up; not recorded
    up: list[dict[str, Any]] = []
    down: list[dict[str, Any]] = []
    for turn in range(3 if cfg.quick else 5):
        if turn % 2 == 0:
            say(f"replicas: OFREP bulk at 8 clients for {cfg.read_seconds:g}s, database up")
            up.append(load.run(request, 8, cfg.read_seconds))
            continue
        say("replicas: stopping PostgreSQL")
        database.stop()
        try:
            check_once(request)
            say(f"replicas: OFREP bulk at 8 clients for {cfg.read_seconds:g}s, database DOWN")
            down.append(load.run(request, 8, cfg.read_seconds))
        finally:
            database.start()

    def mean(runs: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    ratio = mean(down, "rps") / mean(up, "rps") if mean(up, "rps") else None
    errors = sum(r["errors"] for r in down)
    rows.append(
        Row(
            "replicas",
            name,
            cells={
                "req/s": number(mean(down, "rps")),
                "reference": number(mean(up, "rps"), " req/s (database up)"),
                "ratio": times(ratio),
                "p99": ms(max(r["p99_ms"] for r in down)),
                "errors": str(errors),
            },
            values={"down": down, "up": up, "ratio": ratio},
            target="≥ 0.9x database up, 0 errors",
            ok=ratio is not None and ratio >= 0.9 and errors == 0,
            note=f"{len(down)} runs down, {len(up)} up, taking turns",
        )
    )
    samples["replicas_outage_reads"] = {"up": up, "down": down}


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


def _paired_toggles(
    server: StageflowServer, unleash: UnleashServer, reps: int, key: str
) -> tuple[writes.Series, list[float]]:
    """Toggles on ours and on Unleash in turn, each over one keep-alive connection."""
    toggler = writes.Toggler(server, key)
    ours = writes.Series()
    admin = unleash.admin()
    theirs: list[float] = []
    state = False
    for i in range(reps + 2):
        toggler.step(ours, record=i >= 2)
        state = not state
        answer = admin.post(unleash.toggle_path(key, state))
        if answer.status != 200:
            raise RuntimeError(f"Unleash toggle: HTTP {answer.status} {answer.body[:200]!r}")
        if i >= 2:
            theirs.append(answer.seconds)
    toggler.close()
    admin.close()
    return ours, theirs


def _their_visibility(unleash: UnleashServer, cfg: Config, key: str) -> dict[str, list[Any]]:
    admin = unleash.admin()
    reader = unleash.client(keep_alive=False)

    def toggle(value: bool) -> None:
        answer = admin.post(unleash.toggle_path(key, value))
        if answer.status != 200:
            raise RuntimeError(f"Unleash toggle: HTTP {answer.status}")

    return visibility.series(
        toggle,
        {"client features": lambda: unleash.enabled(reader, key)},
        bool(unleash.enabled(reader, key)),
        reps=cfg.visibility_reps,
    )


def run_peers(root: Path, cfg: Config) -> tuple[list[Row], dict[str, Any]]:
    """Ours and Unleash up side by side; reads and toggles take turns between them."""
    rows: list[Row] = []
    samples: dict[str, Any] = {}
    key = flag_key(1)  # a beta flag, OFF at the start, in both systems
    theirs: dict[str, Any] = {}
    why_not: str | None = None
    installed: dict[str, str] | None = None
    try:
        say("installing Unleash 8 (npm, cached in bench/.cache/unleash)")
        installed = install()
        theirs["installed"] = installed
    except UnleashUnavailable as exc:
        why_not = str(exc)

    with StubPrometheus() as prometheus:
        say("starting stageflow serve on the base repository (100 flags)")
        server = StageflowServer(root / "ours", RepoShape(), prometheus_url=prometheus.url)
        unleash = UnleashServer(root, installed) if installed else None
        ours_memory: dict[str, Any] = {}
        try:
            server.start()
            if unleash is not None:
                try:
                    say(f"starting Unleash {installed['unleash']} on {installed['node_version']}")  # type: ignore[index]
                    unleash.start()
                    unleash.create_flags(100)
                except UnleashUnavailable as exc:
                    why_not = str(exc)
                    theirs["memory"] = unleash.stop()
                    unleash = None
            ours_requests = read_requests(server, server.has_ofrep())
            requests = {
                name: ours_requests[name]
                for name in ("GET flagd document", "POST OFREP bulk evaluation")
            }
            if unleash is not None:
                requests[UNLEASH_READ] = load.Request(
                    "unleash",
                    unleash.url,
                    "/api/client/features",
                    headers={"Authorization": unleash.client_token},
                )
            reads = measure_reads(requests, cfg)
            ours_reads = {name: reads[name] for name in reads if name != UNLEASH_READ}
            theirs["reads"] = reads.get(UNLEASH_READ)
            if unleash is not None:
                say(f"toggles: {cfg.reps} on ours and on Unleash, in turn")
                ours_toggle, theirs["toggle_s"] = _paired_toggles(
                    server, unleash, cfg.reps, flag_key(3)
                )
            else:
                say(f"toggles: {cfg.reps} on ours")
                ours_toggle = writes.toggles(server, None, reps=cfg.reps, key=flag_key(3))
            say(f"ours: {cfg.visibility_reps} x toggle-to-visible")
            ours_visible = _ours_visibility(server, cfg, key)
            server.ensure_alive("the peer comparison")
            if unleash is not None:
                say(f"Unleash: {cfg.visibility_reps} x toggle-to-visible")
                theirs["visible_s"] = _their_visibility(unleash, cfg, key)
        finally:
            ours_memory = server.stop()
            if unleash is not None:
                theirs["memory"] = unleash.stop()
    samples["ours"] = {
        "reads": ours_reads,
        "toggle": ours_toggle.to_json(),
        "visible_s": ours_visible,
        "memory": ours_memory,
    }
    samples["unleash"] = theirs
    if why_not:
        say(f"Unleash unavailable: {why_not}")

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

    def median_ms(samples_s: list[float | None] | None) -> float | None:
        seen = [x for x in samples_s or [] if x is not None]
        return summary_ms(seen)["median"] if seen else None

    ours_toggle_ms = median_ms(list(ours_toggle.samples))
    their_toggle_ms = median_ms(theirs.get("toggle_s"))
    rows.append(
        Row(
            "peers",
            "toggle latency, request → 200 (median)",
            cells={
                "ours": ms(ours_toggle_ms),
                "Unleash": ms(their_toggle_ms),
                "ours/Unleash": times(
                    ours_toggle_ms / their_toggle_ms if ours_toggle_ms and their_toggle_ms else None
                ),
            },
            values={"ours_ms": ours_toggle_ms, "unleash_ms": their_toggle_ms},
            note="ours renders, commits and pushes to Git; theirs updates a database row",
        )
    )
    their_visible = (theirs.get("visible_s") or {}).get("client features")
    their_visible_ms = median_ms(their_visible)
    for name, values in ours_visible.items():
        ours_ms = median_ms(values)
        ratio = ours_ms / their_visible_ms if ours_ms and their_visible_ms else None
        missing = sum(1 for x in values if x is None)
        rows.append(
            Row(
                "peers",
                f"toggle-to-visible (median), ours via {name}, theirs via /api/client/features",
                cells={
                    "ours": ms(ours_ms),
                    "Unleash": ms(their_visible_ms),
                    "ours/Unleash": times(ratio),
                },
                values={"ours_s": values, "unleash_s": their_visible},
                target="≤ 0.3x",
                ok=None if ratio is None else ratio <= 0.3 and not missing,
                note=f"{missing} never seen" if missing else "",
            )
        )
    ours_rss = ours_memory.get("peak_rss_mib")
    their_memory = theirs.get("memory") or {}
    their_rss = their_memory.get("peak_rss_mib")
    with_db = (their_memory.get("with_postgres_backends") or {}).get("peak_rss_mib")
    rows.append(
        Row(
            "peers",
            "server peak RSS (ours: gunicorn master + workers; theirs: the node process)",
            cells={
                "ours": number(ours_rss, "MiB"),
                "Unleash": number(their_rss, "MiB"),
                "ours/Unleash": times(ours_rss / their_rss if ours_rss and their_rss else None),
            },
            values={"ours": ours_memory, "unleash": their_memory},
            target="< 0.5x",
            ok=None if not (ours_rss and their_rss) else ours_rss < 0.5 * their_rss,
            note=f"PSS ours {ours_memory.get('peak_pss_mib')} MiB"
            + (f"; Unleash with its PostgreSQL backends {with_db} MiB RSS" if with_db else ""),
        )
    )
    return rows, samples
