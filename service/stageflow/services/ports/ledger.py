"""Ports of the ledger (the database): one repository per table family, and the unit of work
that owns their transaction."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, TypedDict, Unpack

from stageflow.domain.gates import (
    CheckResult,
    Deployment,
    Freeze,
    Hold,
)
from stageflow.domain.hooks import Restore
from stageflow.domain.identity import ApiToken, Scope
from stageflow.domain.ledger import AuditEntry, IdempotentAnswer
from stageflow.domain.promotions import Approval, Promotion, Rejection
from stageflow.services.ports.events import EventLog, EvidenceChain, Notifications


class AuditLog(Protocol):
    def add(self, entry: AuditEntry) -> None: ...

    def recorded_changes(self, change_ids: Sequence[str]) -> set[str]: ...

    def list(self, **query: Unpack[AuditFilter]) -> Sequence[AuditEntry]:
        """The entries the query names, newest first."""
        ...


class TokenStore(Protocol):
    def add(self, token: ApiToken, secret_hash: str) -> None: ...

    def by_hash(self, secret_hash: str) -> ApiToken | None: ...

    def used_since(self, since: datetime, limit: int) -> Sequence[tuple[str, ApiToken]]: ...

    def get(self, token_id: str) -> ApiToken | None: ...

    def list(self) -> Sequence[ApiToken]: ...

    def revoke(self, token_id: str, at: datetime) -> bool: ...

    def touch(self, token_id: str, at: datetime) -> None: ...

    def count_admins(self) -> int: ...


class IdempotencyStore(Protocol):
    def get(self, owner: str, key: str) -> IdempotentAnswer | None: ...

    def in_progress(self, limit: int = 500) -> Sequence[IdempotentAnswer]: ...

    def begin(
        self, owner: str, key: str, fingerprint: str, at: datetime, claimed_by: str | None = None
    ) -> bool: ...

    def finish(self, owner: str, key: str, status: int, body: Any, at: datetime) -> None: ...

    def forget(self, owner: str, key: str) -> None: ...

    def free_claim(self, owner: str, key: str, claimed_by: str | None) -> bool: ...


class Replicas(Protocol):
    def beat(self, name: str, at: datetime) -> None: ...

    def seen(self, name: str) -> datetime | None: ...

    def forget_older(self, than: datetime) -> int: ...


class PromotionQuery(TypedDict, total=False):
    """Which promotions ``Promotions.list`` answers, newest first (each key given narrows it)."""

    app: str | None
    target: str | None
    source: str | None
    statuses: Sequence[str]
    before_id: int | None
    limit: int  # default 100
    apps: Sequence[str]  # a scope's apps (empty: every app)
    targets: Sequence[str]  # a scope's stages (empty: every stage)


class AuditFilter(TypedDict, total=False):
    """Which entries ``AuditLog.list`` answers, newest first (each key given narrows it)."""

    app: str | None
    stage: str | None
    actor: str | None
    before_id: int | None
    limit: int  # default 100
    scope: Scope | None
    own_actor: str | None  # with a limited scope: the entries of this actor are inside it too


class Promotions(Protocol):
    def add(self, promotion: Promotion) -> Promotion: ...

    def get(self, promotion_id: int, *, for_update: bool = False) -> Promotion | None: ...

    def save(self, promotion: Promotion, *, expected_status: str | None = None) -> bool: ...

    def list(self, **query: Unpack[PromotionQuery]) -> Sequence[Promotion]:
        """The promotions the query names, newest first."""
        ...

    def add_approval(self, promotion_id: int, approval: Approval) -> bool: ...


class Checks(Protocol):
    def add(
        self, app: str, stage: str, check: CheckResult, details: Any, reported_by: str
    ) -> CheckResult: ...

    def for_content(self, app: str, stage: str, content: str) -> Sequence[CheckResult]: ...

    def for_contents(
        self, app: str, contents: Mapping[str, str]
    ) -> Mapping[str, Sequence[CheckResult]]: ...

    def list(
        self,
        app: str,
        stage: str,
        *,
        revision: str | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[CheckResult, Any, str]]: ...


class Deployments(Protocol):
    def add(self, app: str, stage: str, deployment: Deployment, reported_by: str) -> int: ...

    def recent(self, app: str, stage: str, limit: int = 200) -> Sequence[Deployment]: ...

    def latest(self, app: str, stages: Iterable[str]) -> Mapping[str, Deployment]: ...


class Freezes(Protocol):
    def active(self, stage: str) -> Sequence[Freeze]: ...

    def add(self, freeze: Freeze) -> None: ...

    def release(self, stage: str, by: str, at: datetime) -> int: ...


class Holds(Protocol):
    def active(self, app: str, stage: str) -> Hold | None: ...

    def active_in(self, app: str) -> Mapping[str, Hold]: ...

    def add(self, hold: Hold) -> None: ...

    def release(self, app: str, stage: str, by: str, at: datetime) -> int: ...


class Rejections(Protocol):
    def add(self, rejection: Rejection) -> None: ...

    def active(self, app: str) -> Sequence[Rejection]: ...

    def release(self, rejection_id: int, app: str, by: str, at: datetime) -> int: ...


class Restores(Protocol):
    """When each rollback's revert was pushed, its controller told, its stage healthy again."""

    def add(self, restore: Restore) -> None: ...

    def get(self, promotion_id: int) -> Restore | None: ...

    def told(self, revision: str, at: datetime) -> int:
        """Note the first delivered controller hook for a revert ``revision``; rows moved."""
        ...

    def healthy(self, app: str, stage: str, content: str, at: datetime) -> int:
        """Note a healthy report of a restored state (reports from before the push are not)."""
        ...


class ServerKeys(Protocol):
    def claim(self, name: str, secret: str, at: datetime) -> str: ...


class UnitOfWork(Protocol):
    audit: AuditLog
    tokens: TokenStore
    idempotency: IdempotencyStore
    promotions: Promotions
    checks: Checks
    deployments: Deployments
    freezes: Freezes
    holds: Holds
    rejections: Rejections
    replicas: Replicas
    server_keys: ServerKeys
    events: EventLog
    evidence: EvidenceChain
    notifications: Notifications
    restores: Restores

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    # changes whenever deployment reports, checks or holds change (the ledger part of app_view)
    def serialize(self, name: str) -> None:
        """Hold ``name`` until the transaction ends (other processes doing the same wait)."""
        ...

    def state_version(self) -> Hashable: ...
