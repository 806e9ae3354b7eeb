"""Repositories: turn ledger rows into domain values and back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stageflow.adapters.database.records import AuditRecord, IdempotencyRecord, TokenRecord
from stageflow.domain.identity import ApiToken, Scope
from stageflow.domain.ledger import AuditEntry, IdempotentAnswer


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns; all ours are UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class SqlAuditLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, entry: AuditEntry) -> None:
        self.session.add(
            AuditRecord(
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                app=entry.app,
                stage=entry.stage,
                target=entry.target,
                before=entry.before,
                after=entry.after,
                revision=entry.revision,
                change_id=entry.change_id,
            )
        )

    def list(
        self,
        *,
        app: str | None = None,
        stage: str | None = None,
        actor: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
        scope: Scope | None = None,
        own_actor: str | None = None,
    ) -> Sequence[AuditEntry]:
        query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
        if scope is not None and scope.limited:
            # Strict: an entry about every app (or every stage) is inside only an unlimited scope;
            # the token's own owner always sees what it did.
            inside = []
            if scope.apps:
                inside.append(AuditRecord.app.in_(list(scope.apps)))
            if scope.stages:
                inside.append(AuditRecord.stage.in_(list(scope.stages)))
            query = query.where(or_(and_(*inside), AuditRecord.actor == own_actor))
        if app is not None:
            query = query.where(AuditRecord.app == app)
        if stage is not None:
            query = query.where(AuditRecord.stage == stage)
        if actor is not None:
            query = query.where(AuditRecord.actor == actor)
        if before_id is not None:
            query = query.where(AuditRecord.id < before_id)
        return [
            AuditEntry(
                id=row.id,
                at=_utc(row.at) or row.at,
                actor=row.actor,
                action=row.action,
                app=row.app,
                stage=row.stage,
                target=row.target,
                before=row.before,
                after=row.after,
                revision=row.revision,
                change_id=row.change_id,
            )
            for row in self.session.scalars(query)
        ]


def _token(row: TokenRecord) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        owner=row.owner,
        roles=frozenset(row.roles),
        scope=Scope(apps=tuple(row.scope_apps), stages=tuple(row.scope_stages)),
        created_at=_utc(row.created_at),
        expires_at=_utc(row.expires_at),
        revoked_at=_utc(row.revoked_at),
        created_by=row.created_by,
        last_used_at=_utc(row.last_used_at),
    )


class SqlTokenStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, token: ApiToken, secret_hash: str) -> None:
        self.session.add(
            TokenRecord(
                id=token.id,
                name=token.name,
                owner=token.owner,
                roles=sorted(token.roles),
                scope_apps=list(token.scope.apps),
                scope_stages=list(token.scope.stages),
                secret_hash=secret_hash,
                created_at=token.created_at,
                created_by=token.created_by,
                expires_at=token.expires_at,
            )
        )

    def by_hash(self, secret_hash: str) -> ApiToken | None:
        row = self.session.scalars(
            select(TokenRecord).where(TokenRecord.secret_hash == secret_hash)
        ).first()
        return None if row is None else _token(row)

    def get(self, token_id: str) -> ApiToken | None:
        row = self.session.get(TokenRecord, token_id)
        return None if row is None else _token(row)

    def list(self) -> Sequence[ApiToken]:
        rows = self.session.scalars(select(TokenRecord).order_by(TokenRecord.created_at))
        return [_token(row) for row in rows]

    def revoke(self, token_id: str, at: datetime) -> bool:
        result = self.session.execute(
            update(TokenRecord)
            .where(TokenRecord.id == token_id, TokenRecord.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return bool(getattr(result, "rowcount", 0))

    def touch(self, token_id: str, at: datetime) -> None:
        self.session.execute(
            update(TokenRecord).where(TokenRecord.id == token_id).values(last_used_at=at)
        )

    def count_admins(self) -> int:
        rows = self.session.scalars(select(TokenRecord).where(TokenRecord.revoked_at.is_(None)))
        return sum(1 for row in rows if "admin" in row.roles)


class SqlIdempotencyStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, owner: str, key: str) -> IdempotentAnswer | None:
        row = self.session.scalars(
            select(IdempotencyRecord).where(
                IdempotencyRecord.owner == owner, IdempotencyRecord.key == key
            )
        ).first()
        if row is None:
            return None
        return IdempotentAnswer(
            fingerprint=row.fingerprint,
            status=row.status,
            body=row.body,
            created_at=_utc(row.created_at) or row.created_at,
        )

    def begin(self, owner: str, key: str, fingerprint: str, at: datetime) -> bool:
        """Claim the key; False when another request holds it already."""
        try:
            with self.session.begin_nested():
                self.session.add(
                    IdempotencyRecord(owner=owner, key=key, fingerprint=fingerprint, created_at=at)
                )
        except IntegrityError:
            return False
        return True

    def finish(self, owner: str, key: str, status: int, body: Any, at: datetime) -> None:
        self.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.owner == owner, IdempotencyRecord.key == key)
            .values(status=status, body=body, finished_at=at)
        )

    def forget(self, owner: str, key: str) -> None:
        self.session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.owner == owner, IdempotencyRecord.key == key
            )
        )

    def count(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0)
