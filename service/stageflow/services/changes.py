"""The one way a use case changes Git: an operation, committed with trailers, then audited."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow
from stageflow.services.ports import Change, Committed, Workspace

T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    """Who asks for a change: the token's owner, and the request's change id."""

    name: str
    change_id: str = ""

    def with_change_id(self) -> Actor:
        return self if self.change_id else Actor(self.name, str(uuid.uuid4()))


@dataclass(frozen=True)
class Outcome:
    """What an operation reports for the audit log and the caller."""

    action: str
    app: str
    stage: str | None
    target: str | None
    before: Any
    after: Any
    value: Any = None


def commit_change(
    sf: Stageflow,
    actor: Actor,
    operation: Callable[[Workspace], Change[Outcome]],
    *,
    trailers: dict[str, str] | None = None,
) -> Committed[Outcome]:
    """Run ``operation`` as one commit on the remote, then record it in the audit log."""
    actor = actor.with_change_id()
    done = sf.repo.change(
        operation,
        actor=actor.name,
        trailers={
            "Stageflow-Change": actor.change_id,
            "Stageflow-Actor": actor.name,
            **(trailers or {}),
        },
    )
    if done.committed:
        outcome = done.result
        with sf.uow() as uow:
            uow.audit.add(
                AuditEntry(
                    actor=actor.name,
                    action=outcome.action,
                    app=outcome.app,
                    stage=outcome.stage,
                    target=outcome.target,
                    before=outcome.before,
                    after=outcome.after,
                    revision=done.revision,
                    change_id=actor.change_id,
                    at=sf.clock(),
                )
            )
            uow.commit()
    return done
