"""The one way a use case changes Git: an operation, committed with trailers, then audited."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from stageflow.domain.errors import Unavailable
from stageflow.domain.ledger import AuditEntry
from stageflow.services import hooks
from stageflow.services.context import Stageflow
from stageflow.services.policies import policed
from stageflow.services.ports import Change, Committed, Workspace

T = TypeVar("T")
log = logging.getLogger(__name__)


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
    # what the policy step reported but let through (services.policies): answer and audit log
    warnings: tuple[Mapping[str, str], ...] = ()


def commit_change(
    sf: Stageflow,
    actor: Actor,
    operation: Callable[[Workspace], Change[Outcome]],
    *,
    trailers: dict[str, str] | None = None,
    on_pushed: Callable[[Committed[Outcome]], None] | None = None,
) -> Committed[Outcome]:
    """Run ``operation`` as one commit on the remote, then record it in the audit log.

    The commit carries what the audit entry needs (actor, change id, action, app, stage,
    target) as trailers: should the ledger write after the push fail, or the process die
    there, the settler writes the entry from the commit (``services.settler``).

    Right after the push the stages' controllers are told (``services.hooks``, queued: the
    answer does not wait for them); ``on_pushed`` runs first, for what the deliveries' records
    need to find (a rollback's restore record). Should it find the ledger unreachable, the
    audit write is not tried (it would wait out the same timeout): the answer is
    ``recorded_later`` at once, and the settler records the change from its trailers.
    """
    if sf.ledger_outage.known:
        raise Unavailable(
            "the database is unreachable, so the change could not be recorded; nothing was "
            "committed — try again once it is back (GET /readyz names it)",
            code="database_unavailable",
        )
    actor = actor.with_change_id()
    done = sf.repo.change(
        _described(policed(sf, operation)),
        actor=actor.name,
        trailers={
            "Stageflow-Change": actor.change_id,
            "Stageflow-Actor": actor.name,
            **(trailers or {}),
        },
    )
    if done.committed:
        done = replace(done, pushed_at=sf.clock())
        down = _pushed(sf, done, on_pushed)
        try:
            if down is not None:  # the ledger just failed: asking it again would wait again
                raise down
            _audit(sf, actor, done)
        except Unavailable as exc:
            sf.ledger_outage.failed()
            raise recorded_later(done.revision, exc) from exc
    return done


def _audit(sf: Stageflow, actor: Actor, done: Committed[Outcome]) -> None:
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
                after=_with_warnings(outcome),
                revision=done.revision,
                change_id=actor.change_id,
                at=sf.clock(),
            )
        )
        uow.commit()


def _pushed(
    sf: Stageflow,
    done: Committed[Outcome],
    on_pushed: Callable[[Committed[Outcome]], None] | None,
) -> Unavailable | None:
    """Run ``on_pushed``, then queue the controller hooks; return the ledger's failure if any.

    The push landed, so nothing here turns it into an error: a failure is logged, and an
    unreachable ledger is handed back for the write to answer as ``recorded_later``.
    """
    down = None
    if on_pushed is not None:
        try:
            on_pushed(done)
        except Unavailable as exc:
            down = exc
        except Exception:
            log.exception("after pushing %s", done.revision[:12])
    hooks.announce(sf, done)
    return down


def _described(
    operation: Callable[[Workspace], Change[Outcome]],
) -> Callable[[Workspace], Change[Outcome]]:
    def described(ws: Workspace) -> Change[Outcome]:
        change = operation(ws)
        outcome = change.result
        facts = {"Stageflow-Action": outcome.action, "Stageflow-App": outcome.app}
        if outcome.stage:
            facts["Stageflow-Stage"] = outcome.stage
        if outcome.target:
            facts["Stageflow-Target"] = outcome.target
        return replace(change, trailers={**facts, **change.trailers})

    return described


def _with_warnings(outcome: Outcome) -> Any:
    """The audit entry's ``after``, with what the policy step let through (if anything)."""
    if not outcome.warnings:
        return outcome.after
    warnings = [dict(warning) for warning in outcome.warnings]
    if isinstance(outcome.after, Mapping):
        return {**outcome.after, "policy_warnings": warnings}
    return {"after": outcome.after, "policy_warnings": warnings}


def recorded_later(revision: str, cause: Unavailable) -> Unavailable:
    """The answer to a write whose push landed but whose ledger write failed: it is done."""
    return Unavailable(
        f"the change was committed and pushed as {revision[:12]}, but the ledger could not "
        f"record it ({cause.message}); it is recorded from the commit's trailers once the "
        "database is back. It is done: do not send it again.",
        code="database_unavailable",
        details={"committed": True, "revision": revision},
    )
