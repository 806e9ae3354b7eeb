"""In-memory fakes of the ledger's ports: every table a container, every repository a view.

``FakeUnitOfWork`` rolls back what it did not commit, as the database does, so a use case that
raises half-way leaves nothing behind. Re-exported by ``tests.fakes``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Unpack

from stageflow.domain.events import Event, events_of
from stageflow.domain.evidence import Evidence
from stageflow.domain.gates import CheckResult, Deployment, Freeze, Hold
from stageflow.domain.hooks import Restore
from stageflow.domain.identity import ApiToken
from stageflow.domain.ledger import AuditEntry, IdempotentAnswer
from stageflow.domain.notify import Delivery
from stageflow.domain.promotions import Approval, Promotion, Rejection
from stageflow.services.ports import (
    AuditFilter,
    AuditLog,
    Checks,
    Deployments,
    EventLog,
    EvidenceChain,
    Freezes,
    Holds,
    IdempotencyStore,
    Notifications,
    PromotionQuery,
    Promotions,
    Rejections,
    Replicas,
    Restores,
    ServerKeys,
    TokenStore,
)
from tests.fake_events import FakeEvents, FakeEvidence, FakeNotifications, FakeRestores


@dataclass
class FakeLedger:
    """Every table of the ledger, as plain containers shared by the units of work."""

    audit: list[AuditEntry] = field(default_factory=list)
    tokens: dict[str, tuple[ApiToken, str]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotentAnswer] = field(default_factory=dict)
    promotions: dict[int, Promotion] = field(default_factory=dict)
    checks: list[tuple[str, str, CheckResult, Any, str]] = field(default_factory=list)
    deployments: list[tuple[str, str, Deployment]] = field(default_factory=list)
    freezes: list[Freeze] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    replicas: dict[str, datetime] = field(default_factory=dict)
    server_keys: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    notifications: list[Delivery] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    restores: dict[int, Restore] = field(default_factory=dict)
    version: int = 0
    # called at each commit, before it counts: raise from it to make the ledger fail there
    on_commit: Callable[[FakeLedger], None] | None = None

    def copy(self) -> FakeLedger:
        return FakeLedger(**{name: copy.copy(value) for name, value in self.__dict__.items()})


class FakeAuditLog:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, entry: AuditEntry) -> None:
        self.ledger.audit.append(replace(entry, id=len(self.ledger.audit) + 1))
        for event in events_of(entry):  # the outbox, as the database's audit log writes it
            FakeEvents(self.ledger).add(event)

    def recorded_changes(self, change_ids: Sequence[str]) -> set[str]:
        return {
            e.change_id
            for e in self.ledger.audit
            if e.change_id is not None and e.change_id in change_ids
        }

    def list(self, **query: Unpack[AuditFilter]) -> Sequence[AuditEntry]:
        app, stage, actor = query.get("app"), query.get("stage"), query.get("actor")
        before_id, limit = query.get("before_id"), query.get("limit", 100)
        found = [
            e
            for e in reversed(self.ledger.audit)
            if (app is None or e.app == app)
            and (stage is None or e.stage == stage)
            and (actor is None or e.actor == actor)
            and (before_id is None or (e.id or 0) < before_id)
        ]
        return found[:limit]


class FakeTokens:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, token: ApiToken, secret_hash: str) -> None:
        self.ledger.tokens[token.id] = (token, secret_hash)

    def by_hash(self, secret_hash: str) -> ApiToken | None:
        return next((t for t, h in self.ledger.tokens.values() if h == secret_hash), None)

    def used_since(self, since: datetime, limit: int) -> Sequence[tuple[str, ApiToken]]:
        used = [
            (h, t)
            for t, h in self.ledger.tokens.values()
            if t.last_used_at is not None and t.last_used_at >= since
        ]
        return used[:limit]

    def get(self, token_id: str) -> ApiToken | None:
        found = self.ledger.tokens.get(token_id)
        return None if found is None else found[0]

    def list(self) -> Sequence[ApiToken]:
        return [t for t, _ in self.ledger.tokens.values()]

    def revoke(self, token_id: str, at: datetime) -> bool:
        found = self.ledger.tokens.get(token_id)
        if found is None or found[0].revoked_at is not None:
            return False
        self.ledger.tokens[token_id] = (replace(found[0], revoked_at=at), found[1])
        return True

    def touch(self, token_id: str, at: datetime) -> None:
        found = self.ledger.tokens.get(token_id)
        if found is not None:
            self.ledger.tokens[token_id] = (replace(found[0], last_used_at=at), found[1])

    def count_admins(self) -> int:
        return sum(
            1 for t, _ in self.ledger.tokens.values() if "admin" in t.roles and not t.revoked_at
        )


class FakeIdempotency:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def get(self, owner: str, key: str) -> IdempotentAnswer | None:
        return self.ledger.idempotency.get((owner, key))

    def in_progress(self, limit: int = 500) -> Sequence[IdempotentAnswer]:
        return [a for a in self.ledger.idempotency.values() if a.status is None][:limit]

    def begin(
        self, owner: str, key: str, fingerprint: str, at: datetime, claimed_by: str | None = None
    ) -> bool:
        if (owner, key) in self.ledger.idempotency:
            return False
        self.ledger.idempotency[(owner, key)] = IdempotentAnswer(
            fingerprint, None, None, at, owner, key, claimed_by
        )
        return True

    def finish(self, owner: str, key: str, status: int, body: Any, at: datetime) -> None:
        found = self.ledger.idempotency[(owner, key)]
        self.ledger.idempotency[(owner, key)] = replace(found, status=status, body=body)

    def forget(self, owner: str, key: str) -> None:
        self.ledger.idempotency.pop((owner, key), None)

    def free_claim(self, owner: str, key: str, claimed_by: str | None) -> bool:
        found = self.ledger.idempotency.get((owner, key))
        if found is None or found.status is not None or found.claimed_by != claimed_by:
            return False
        del self.ledger.idempotency[(owner, key)]
        return True


class FakeReplicas:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def beat(self, name: str, at: datetime) -> None:
        self.ledger.replicas[name] = at

    def seen(self, name: str) -> datetime | None:
        return self.ledger.replicas.get(name)

    def forget_older(self, than: datetime) -> int:
        old = [name for name, at in self.ledger.replicas.items() if at < than]
        for name in old:
            del self.ledger.replicas[name]
        return len(old)


class FakeServerKeys:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def claim(self, name: str, secret: str, at: datetime) -> str:
        return self.ledger.server_keys.setdefault(name, secret)


class FakePromotions:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, promotion: Promotion) -> Promotion:
        added = replace(promotion, id=max(self.ledger.promotions, default=0) + 1, plan=None)
        self.ledger.promotions[added.id or 0] = added
        return added

    def get(self, promotion_id: int, *, for_update: bool = False) -> Promotion | None:
        return self.ledger.promotions.get(promotion_id)

    def save(self, promotion: Promotion, *, expected_status: str | None = None) -> bool:
        stored = self.ledger.promotions.get(promotion.id or 0)
        if stored is None or (expected_status is not None and stored.status != expected_status):
            return False
        # what the database keeps: the approvals are rows of their own, the plan is its JSON
        self.ledger.promotions[stored.id or 0] = replace(
            promotion, approvals=stored.approvals, plan=None
        )
        return True

    def list(self, **query: Unpack[PromotionQuery]) -> Sequence[Promotion]:
        wanted = {name: query.get(name) for name in ("app", "target", "source")}
        statuses, before_id = query.get("statuses", ()), query.get("before_id")
        apps, targets, limit = (
            query.get("apps", ()),
            query.get("targets", ()),
            query.get("limit", 100),
        )
        found = [
            p
            for _, p in sorted(self.ledger.promotions.items(), reverse=True)
            if all(value is None or getattr(p, name) == value for name, value in wanted.items())
            and (not statuses or p.status in statuses)
            and (before_id is None or (p.id or 0) < before_id)
            and (not apps or p.app in apps)
            and (not targets or p.target in targets)
        ]
        return found[:limit]

    def add_approval(self, promotion_id: int, approval: Approval) -> bool:
        stored = self.ledger.promotions[promotion_id]
        if approval.approver in stored.approvers():
            return False
        self.ledger.promotions[promotion_id] = replace(
            stored, approvals=(*stored.approvals, approval)
        )
        return True


class FakeChecks:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(
        self, app: str, stage: str, check: CheckResult, details: Any, reported_by: str
    ) -> CheckResult:
        stored = replace(check, id=len(self.ledger.checks) + 1)
        self.ledger.checks.append((app, stage, stored, details, reported_by))
        self.ledger.version += 1
        return stored

    def _newest(self, app: str, stage: str) -> list[tuple[CheckResult, Any, str]]:
        return [
            (check, details, by)
            for a, s, check, details, by in reversed(self.ledger.checks)
            if (a, s) == (app, stage)
        ]

    def for_content(self, app: str, stage: str, content: str) -> Sequence[CheckResult]:
        return [c for c, _, _ in self._newest(app, stage) if c.content == content]

    def for_contents(
        self, app: str, contents: Mapping[str, str]
    ) -> Mapping[str, Sequence[CheckResult]]:
        return {stage: self.for_content(app, stage, content) for stage, content in contents.items()}

    def list(
        self,
        app: str,
        stage: str,
        *,
        revision: str | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[CheckResult, Any, str]]:
        found = [
            row
            for row in self._newest(app, stage)
            if (revision is None or row[0].revision == revision)
            and (kind is None or row[0].kind == kind)
            and (before_id is None or (row[0].id or 0) < before_id)
        ]
        return found[:limit]


class FakeDeployments:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, app: str, stage: str, deployment: Deployment, reported_by: str) -> int:
        self.ledger.deployments.append((app, stage, deployment))
        self.ledger.version += 1
        return len(self.ledger.deployments)

    def recent(self, app: str, stage: str, limit: int = 200) -> Sequence[Deployment]:
        found = [d for a, s, d in reversed(self.ledger.deployments) if (a, s) == (app, stage)]
        return found[:limit]

    def latest(self, app: str, stages: Iterable[str]) -> Mapping[str, Deployment]:
        newest = {stage: self.recent(app, stage, 1) for stage in stages}
        return {stage: found[0] for stage, found in newest.items() if found}


class FakeFreezes:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def active(self, stage: str) -> Sequence[Freeze]:
        return [f for f in self.ledger.freezes if f.stage == stage]

    def add(self, freeze: Freeze) -> None:
        self.ledger.freezes.append(freeze)

    def release(self, stage: str, by: str, at: datetime) -> int:
        kept = [f for f in self.ledger.freezes if f.stage != stage]
        released = len(self.ledger.freezes) - len(kept)
        self.ledger.freezes[:] = kept
        return released


class FakeHolds:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def active(self, app: str, stage: str) -> Hold | None:
        return self.active_in(app).get(stage)

    def active_in(self, app: str) -> Mapping[str, Hold]:
        return {h.stage: h for h in self.ledger.holds if h.app == app}  # the newest wins

    def add(self, hold: Hold) -> None:
        self.ledger.holds.append(hold)
        self.ledger.version += 1

    def release(self, app: str, stage: str, by: str, at: datetime) -> int:
        kept = [h for h in self.ledger.holds if (h.app, h.stage) != (app, stage)]
        released = len(self.ledger.holds) - len(kept)
        self.ledger.holds[:] = kept
        self.ledger.version += 1
        return released


class FakeRejections:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, rejection: Rejection) -> None:
        self.ledger.rejections.append(replace(rejection, id=len(self.ledger.rejections) + 1))

    def active(self, app: str) -> Sequence[Rejection]:
        return [r for r in self.ledger.rejections if r.app == app]

    def release(self, rejection_id: int, app: str, by: str, at: datetime) -> int:
        kept = [r for r in self.ledger.rejections if (r.id, r.app) != (rejection_id, app)]
        released = len(self.ledger.rejections) - len(kept)
        self.ledger.rejections[:] = kept
        return released


class FakeUnitOfWork:
    """The `UnitOfWork` port over a `FakeLedger`: what it does not commit is rolled back."""

    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.committed = False
        self._before: FakeLedger | None = None
        self.audit: AuditLog = FakeAuditLog(ledger)
        self.tokens: TokenStore = FakeTokens(ledger)
        self.idempotency: IdempotencyStore = FakeIdempotency(ledger)
        self.promotions: Promotions = FakePromotions(ledger)
        self.checks: Checks = FakeChecks(ledger)
        self.deployments: Deployments = FakeDeployments(ledger)
        self.freezes: Freezes = FakeFreezes(ledger)
        self.holds: Holds = FakeHolds(ledger)
        self.rejections: Rejections = FakeRejections(ledger)
        self.replicas: Replicas = FakeReplicas(ledger)
        self.server_keys: ServerKeys = FakeServerKeys(ledger)
        self.events: EventLog = FakeEvents(ledger)
        self.evidence: EvidenceChain = FakeEvidence(ledger)
        self.notifications: Notifications = FakeNotifications(ledger)
        self.restores: Restores = FakeRestores(ledger)

    def __enter__(self) -> FakeUnitOfWork:
        self._before = self.ledger.copy()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._before is not None:  # roll back what was not committed
            self.ledger.__dict__.update(self._before.__dict__)
            self._before = None

    def commit(self) -> None:
        if self.ledger.on_commit is not None:
            self.ledger.on_commit(self.ledger)
        self.committed = True
        self._before = self.ledger.copy()

    def serialize(self, name: str) -> None:
        pass

    def state_version(self) -> Hashable:
        return self.ledger.version
