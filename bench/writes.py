"""Write rows: request start until the 200 that carries the pushed revision, against the floor.

Every timed request is checked afterwards (outside the timing): the answer's revision must be a
new commit, the head of the remote, and hold the value that was sent. An answer that fails the
check is not a sample; it is counted and shown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.client import Answer, Client, expect
from bench.gitops import APP, STAGES, Floor, flag_key, flags_file, read_remote, remote_head
from bench.server import StageflowServer

FIRST = STAGES[0]
PROMOTIONS = "/api/v1/apps/{app}/promotions"
CHECKS = "/api/v1/apps/{app}/stages/{stage}/checks"
DEPLOYMENTS = "/api/v1/apps/{app}/stages/{stage}/deployments"


@dataclass
class Series:
    """Paired samples of one write and its floor, taken alternately in the same run."""

    samples: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "samples_s": [round(s, 6) for s in self.samples],
            "floor_s": [round(s, 6) for s in self.floor],
            "rejected": self.rejected,
            "error": self.error,
        }


def flag_on(bare: Any, revision: str, stage: str, key: str) -> bool:
    doc = json.loads(read_remote(bare, revision, flags_file(stage)))
    return bool(doc["flags"][key]["defaultVariant"] == "on")


def _landed(server: StageflowServer, answer: Answer, before: str) -> str | None:
    """Why the answer does not stand for a new commit on the remote (None when it does)."""
    if answer.status != 200:
        return f"HTTP {answer.status}: {answer.body[:200]!r}"
    revision = (answer.json() or {}).get("revision")
    head = remote_head(server.remote)
    if revision == before:
        return f"200 without a new commit (revision {str(revision)[:12]} is the old head)"
    if revision != head:
        return f"200 with revision {str(revision)[:12]} but the remote head is {head[:12]}"
    return None


class Toggler:
    """Toggle one flag over one keep-alive connection, checking every answer against Git."""

    def __init__(self, server: StageflowServer, key: str = flag_key(0), stage: str = FIRST) -> None:
        self.server = server
        self.key = key
        self.stage = stage
        self.client = server.admin()
        self.path = f"/api/v1/apps/{APP}/stages/{stage}/flags/{key}"
        self.head = remote_head(server.remote)
        self.state = flag_on(server.remote, self.head, stage, key)

    def step(self, series: Series, *, record: bool) -> None:
        self.state = not self.state
        answer = self.client.request("PATCH", self.path, {"enabled": self.state})
        why = _landed(self.server, answer, self.head)
        if why is None:
            revision = answer.json()["revision"]
            if flag_on(self.server.remote, revision, self.stage, self.key) != self.state:
                why = "the pushed revision does not hold the value sent"
        if why is None:
            self.head = answer.json()["revision"]
            if record:
                series.samples.append(answer.seconds)
        else:
            series.rejected.append(why)
            self.head = remote_head(self.server.remote)
            self.state = flag_on(self.server.remote, self.head, self.stage, self.key)

    def close(self) -> None:
        self.client.close()


def toggles(
    server: StageflowServer,
    floor: Floor | None,
    *,
    reps: int,
    warmup: int = 2,
    key: str = flag_key(0),
    stage: str = FIRST,
) -> Series:
    """PATCH one flag on and off ``reps`` times, each followed by the floor's toggle."""
    toggler = Toggler(server, key, stage)
    series = Series()
    for i in range(warmup + reps):
        toggler.step(series, record=i >= warmup)
        if floor is not None and i >= warmup:
            series.floor.append(floor.toggle(stage, key))
    toggler.close()
    return series


def paired_toggles(
    base: StageflowServer,
    server: StageflowServer,
    floor: Floor,
    *,
    reps: int,
    warmup: int = 2,
) -> tuple[Series, Series]:
    """Toggles on ``server`` and on ``base`` in turn (with ``server``'s floor), so that the two
    are compared over the same minutes of machine time."""
    key = flag_key(5)
    mine, theirs = Toggler(server, key), Toggler(base, key)
    series, reference = Series(), Series()
    for i in range(warmup + reps):
        record = i >= warmup
        mine.step(series, record=record)
        theirs.step(reference, record=record)
        if record:
            series.floor.append(floor.toggle(FIRST, key))
    mine.close()
    theirs.close()
    return series, reference


def paired_commit_pushes(
    floor: Floor, base_floor: Floor, *, reps: int, warmup: int = 2
) -> tuple[list[float], list[float]]:
    """Git alone, in turn on the two repositories: flip one flag line, `git commit` + `git push`.

    What the size of a stage's flags.json costs git itself, whatever calls it.
    """
    key = flag_key(5)
    mine: list[float] = []
    theirs: list[float] = []
    for i in range(warmup + reps):
        for target, out in ((floor, mine), (base_floor, theirs)):
            target.flip_flag(FIRST, key)
            took = target.commit_push(f"floor: flip {key}")
            if i >= warmup:
                out.append(took)
    return mine, theirs


def image_sets(server: StageflowServer, floor: Floor, *, reps: int, warmup: int = 2) -> Series:
    """PUT a new tag of the app's image into the first stage ``reps`` times."""
    client = server.admin()
    path = f"/api/v1/apps/{APP}/stages/{FIRST}/images"
    series = Series()
    head = remote_head(server.remote)
    for i in range(warmup + reps):
        answer = client.request("PUT", path, {"name": "ghcr.io/acme/demo", "tag": f"2.0.{i}"})
        why = _landed(server, answer, head)
        if why is None:
            head = answer.json()["revision"]
            if i >= warmup:
                series.samples.append(answer.seconds)
        else:
            series.rejected.append(why)
            head = remote_head(server.remote)
        if i >= warmup:
            series.floor.append(floor.image(FIRST))
    client.close()
    return series


# -- promotions and automatic rollback (built in parallel: probed, never assumed) ---------------


def promotion_available(paths: set[str]) -> bool:
    return PROMOTIONS in paths


def rollback_available(paths: set[str]) -> bool:
    return PROMOTIONS in paths and CHECKS in paths


def _ready_first_stage(server: StageflowServer, client: Client, tag: str, paths: set[str]) -> str:
    """Put something new in the first stage and report it deployed, healthy and smoke-tested."""
    answer = client.request(
        "PUT",
        f"/api/v1/apps/{APP}/stages/{FIRST}/images",
        {"name": "ghcr.io/acme/demo", "tag": tag},
    )
    revision = str(expect(answer, 200, what="image set before a promotion")["revision"])
    if DEPLOYMENTS in paths:
        expect(
            client.post(
                DEPLOYMENTS.format(app=APP, stage=FIRST),
                {"revision": revision, "health": "healthy"},
            ),
            200,
            201,
            what="report a deployment",
        )
    expect(
        client.post(
            CHECKS.format(app=APP, stage=FIRST),
            {"kind": "smoke", "revision": revision, "status": "passed", "summary": "bench"},
        ),
        200,
        201,
        what="report a passed smoke check",
    )
    return revision


def _promote(client: Client, target: str) -> tuple[dict[str, Any], float]:
    """POST a promotion and wait until it is applied; return it and the time that took."""
    started = time.perf_counter()
    answer = client.post(PROMOTIONS.format(app=APP), {"to": target, "reason": "bench"})
    promotion = expect(answer, 200, 201, what=f"promote to {target}")
    deadline = started + 60
    while promotion.get("status") == "applying" and time.perf_counter() < deadline:
        time.sleep(0.005)
        promotion = expect(
            client.get(f"/api/v1/promotions/{promotion['id']}"), 200, what="read promotion"
        )
    elapsed = time.perf_counter() - started
    if promotion.get("status") != "applied":
        reasons = [
            f"{g.get('name')}: {g.get('status')} ({g.get('message')})"
            for g in promotion.get("gates", [])
            if g.get("status") != "passed"
        ]
        raise RuntimeError(f"promotion {promotion.get('status')}: {'; '.join(reasons)[:300]}")
    return promotion, elapsed


def promotions(server: StageflowServer, floor: Floor, *, reps: int, warmup: int = 1) -> Series:
    """Promote development to staging with all gates passing, until ``applied``."""
    series = Series()
    paths = server.paths()
    client = server.admin()
    target = STAGES[1]
    try:
        for i in range(warmup + reps):
            _ready_first_stage(server, client, f"3.0.{i}", paths)
            promotion, elapsed = _promote(client, target)
            if promotion.get("revision") != remote_head(server.remote):
                series.rejected.append("applied, but its revision is not the remote head")
            elif i >= warmup:
                series.samples.append(elapsed)
            if i >= warmup:
                series.floor.append(floor.promotion(target))
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        series.error = str(exc)
    finally:
        client.close()
    return series


def rollbacks(server: StageflowServer, floor: Floor, *, reps: int, warmup: int = 1) -> Series:
    """A failed smoke report for a promoted revision, until the revert is on the remote."""
    series = Series()
    paths = server.paths()
    client = server.admin()
    target = STAGES[1]
    try:
        for i in range(warmup + reps):
            _ready_first_stage(server, client, f"4.0.{i}", paths)
            promotion, _ = _promote(client, target)
            promoted = str(promotion["revision"])
            started = time.perf_counter()
            answer = client.post(
                CHECKS.format(app=APP, stage=target),
                {"kind": "smoke", "revision": promoted, "status": "failed", "summary": "bench"},
            )
            report = expect(answer, 200, 201, what="report a failed smoke check")
            elapsed = _wait_for_revert(server, promoted, started, answer.seconds, report)
            # An automatic rollback puts the stage on hold until a person releases it.
            client.request("DELETE", f"/api/v1/apps/{APP}/stages/{target}/hold")
            if elapsed is None:
                series.rejected.append("no revert reached the remote within 60 s")
            elif i >= warmup:
                series.samples.append(elapsed)
            if i >= warmup:
                series.floor.append(floor.image(target))
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        series.error = str(exc)
    finally:
        client.close()
    return series


def _wait_for_revert(
    server: StageflowServer,
    promoted: str,
    started: float,
    answered: float,
    report: dict[str, Any],
) -> float | None:
    rollback = report.get("rollback") or {}
    revision = rollback.get("revision")
    deadline = started + 60
    check: Callable[[], bool]
    if revision:

        def check() -> bool:
            head = remote_head(server.remote)
            return head == revision or _is_ancestor(server, revision, head)

        # The answer names the revert: when the remote has it, it was pushed before the answer.
        if check():
            return answered
    else:

        def check() -> bool:
            return remote_head(server.remote) != promoted

    while time.perf_counter() < deadline:
        if check():
            return time.perf_counter() - started
        time.sleep(0.002)
    return None


def _is_ancestor(server: StageflowServer, older: str, newer: str) -> bool:
    from bench.gitops import git

    try:
        git("--git-dir", str(server.remote), "merge-base", "--is-ancestor", older, newer)
    except RuntimeError:
        return False
    return True
