"""Repositories: turn ledger rows into domain values and back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Unpack

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stageflow.adapters.database.events import SqlEvents
from stageflow.adapters.database.records import (
    AuditRecord,
    IdempotencyRecord,
    ReplicaRecord,
    ServerKeyRecord,
    TokenRecord,
    _aware,
    _utc,
)
from stageflow.domain.events import events_of
from stageflow.domain.identity import ApiToken, Scope
from stageflow.domain.ledger import AuditEntry, IdempotentAnswer
from stageflow.services.ports import AuditFilter


class SqlAuditLog:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.events = SqlEvents(session)

    def add(self, entry: AuditEntry) -> None:
        # The outbox: an entry's events go into the same transaction, so a change that is
        # committed has its events and one that is rolled back has none (domain.events).
        for event in events_of(entry):
            self.events.add(event)
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

    def recorded_changes(self, change_ids: Sequence[str]) -> set[str]:
        """Return those of ``change_ids`` that some audit entry carries."""
        if not change_ids:
            return set()
        return set(
            self.session.scalars(
                select(AuditRecord.change_id).where(AuditRecord.change_id.in_(list(change_ids)))
            )
        )

    def list(self, **query: Unpack[AuditFilter]) -> Sequence[AuditEntry]:
        rows = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(query.get("limit", 100))
        rows = rows.where(*_audit_filter(query))
        return [
            AuditEntry(
                id=row.id,
                at=_aware(row.at),
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
            for row in self.session.scalars(rows)
        ]


def _audit_filter(query: AuditFilter) -> list[Any]:
    """The WHERE clauses of an audit query: one per key given, and the scope's."""
    clauses = _scope_filter(query.get("scope"), query.get("own_actor"))
    equal = {"app": AuditRecord.app, "stage": AuditRecord.stage, "actor": AuditRecord.actor}
    clauses += [column == query.get(k) for k, column in equal.items() if query.get(k) is not None]
    before_id = query.get("before_id")
    if before_id is not None:
        clauses.append(AuditRecord.id < before_id)
    return clauses


def _scope_filter(scope: Scope | None, own_actor: str | None) -> list[Any]:
    if scope is None or not scope.limited:
        return []
    # Strict: an entry about every app (or every stage) is inside only an unlimited scope;
    # the token's own owner always sees what it did.
    inside = []
    if scope.apps:
        inside.append(AuditRecord.app.in_(list(scope.apps)))
    if scope.stages:
        inside.append(AuditRecord.stage.in_(list(scope.stages)))
    return [or_(and_(*inside), AuditRecord.actor == own_actor)]


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

    def used_since(self, since: datetime, limit: int) -> Sequence[tuple[str, ApiToken]]:
        """Return (secret hash, token) of unrevoked tokens used since ``since``, newest first."""
        rows = self.session.scalars(
            select(TokenRecord)
            .where(TokenRecord.revoked_at.is_(None), TokenRecord.last_used_at >= since)
            .order_by(TokenRecord.last_used_at.desc())
            .limit(limit)
        )
        return [(row.secret_hash, _token(row)) for row in rows]

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


def _answer(row: IdempotencyRecord) -> IdempotentAnswer:
    return IdempotentAnswer(
        fingerprint=row.fingerprint,
        status=row.status,
        body=row.body,
        created_at=_aware(row.created_at),
        owner=row.owner,
        key=row.key,
        claimed_by=row.claimed_by,
    )


# The claimer of an Idempotency-Key whose request died (see `free_claim`).
FREED = ""


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
        return _answer(row)

    def in_progress(self, limit: int = 500) -> Sequence[IdempotentAnswer]:
        """Return claims whose request has not answered yet, oldest first."""
        rows = self.session.scalars(
            select(IdempotencyRecord)
            .where(
                IdempotencyRecord.status.is_(None),
                or_(IdempotencyRecord.claimed_by.is_(None), IdempotencyRecord.claimed_by != FREED),
            )
            .order_by(IdempotencyRecord.id)
            .limit(limit)
        )
        return [_answer(row) for row in rows]

    def begin(
        self, owner: str, key: str, fingerprint: str, at: datetime, claimed_by: str | None = None
    ) -> bool:
        """Claim the key; False when another request holds it already."""
        try:
            with self.session.begin_nested():
                self.session.add(
                    IdempotencyRecord(
                        owner=owner,
                        key=key,
                        fingerprint=fingerprint,
                        created_at=at,
                        claimed_by=claimed_by,
                    )
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

    def free_claim(self, owner: str, key: str, claimed_by: str | None) -> bool:
        """Mark the key's claim as nobody's (a retry takes it over) while ``claimed_by`` holds it.

        The row stays, so that the retry knows a request went before it and looks for the
        commit that one may have pushed.
        """
        holder = (
            IdempotencyRecord.claimed_by.is_(None)
            if claimed_by is None
            else IdempotencyRecord.claimed_by == claimed_by
        )
        done = self.session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.owner == owner,
                IdempotencyRecord.key == key,
                IdempotencyRecord.status.is_(None),
                holder,
            )
            .values(claimed_by=FREED)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def count(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0)


class SqlServerKeys:
    """Secrets shared by every process (``ServerKeyRecord``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, name: str, secret: str, at: datetime) -> str:
        """The key called ``name``: the stored one, or ``secret`` when there was none."""
        found = self._get(name)
        if found is not None:
            return found
        try:
            with self.session.begin_nested():
                self.session.add(ServerKeyRecord(name=name, secret=secret, created_at=at))
        except IntegrityError:  # another process made it first: theirs is the key
            pass
        found = self._get(name)
        if found is None:  # neither ours nor theirs: the database lost a committed row
            raise RuntimeError(f"server key {name!r} was neither stored nor found")
        return found

    def _get(self, name: str) -> str | None:
        return self.session.scalar(
            select(ServerKeyRecord.secret).where(ServerKeyRecord.name == name)
        )


class SqlReplicas:
    """Heartbeats of the running processes (``ReplicaRecord``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def beat(self, name: str, at: datetime) -> None:
        moved = self.session.execute(
            update(ReplicaRecord).where(ReplicaRecord.name == name).values(seen_at=at)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            try:
                with self.session.begin_nested():
                    self.session.add(ReplicaRecord(name=name, seen_at=at))
            except IntegrityError:  # another thread of this process beat first
                pass

    def seen(self, name: str) -> datetime | None:
        return _utc(
            self.session.scalar(select(ReplicaRecord.seen_at).where(ReplicaRecord.name == name))
        )

    def forget_older(self, than: datetime) -> int:
        done = self.session.execute(delete(ReplicaRecord).where(ReplicaRecord.seen_at < than))
        return int(done.rowcount)  # type: ignore[attr-defined]
