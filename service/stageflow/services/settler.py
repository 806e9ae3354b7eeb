"""The settler: in every replica, every few seconds, settle what a crash or an outage left.

A write's commit trailers are the truth (DESIGN.md section 7). Each round:

- says this process lives (its heartbeat, for replicas on other hosts), and reads the tokens
  in use lately (what it may serve while the ledger is down);
- settles `applying` promotions whose applier is gone or whose ledger write failed after the
  push: applied when their ``Stageflow-Promotion`` commit is on the remote, failed otherwise;
- frees Idempotency-Keys whose request died (a retry then finds the commit it pushed);
- reads the remote's new Stageflow commits: one without its audit entry gets it, from its
  trailers; a rollback commit whose promotion still says `applied` is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from stageflow.domain.errors import Unavailable
from stageflow.domain.ledger import AuditEntry
from stageflow.services import evidence, idempotency, promotions, replicas, rollbacks, tokens
from stageflow.services.context import Stageflow
from stageflow.services.ports import CommitFacts, History

log = logging.getLogger(__name__)

# Commits read per round (the first round reads back this far).
SWEEP_LIMIT = 500


@dataclass
class Round:
    """What one settler round did."""

    promotions: list[int] = field(default_factory=list)
    keys_freed: int = 0
    audited: list[str] = field(default_factory=list)  # revisions whose entries were written
    rollbacks: list[int] = field(default_factory=list)
    evidence: list[int] = field(default_factory=list)  # promotions whose evidence was recorded


class Settler:
    """Settles half-done work; keeps how far it has read the remote's history."""

    def __init__(self, sf: Stageflow) -> None:
        self.sf = sf
        self.through: str | None = None  # the newest commit already swept

    def probe(self) -> bool:
        """Ask the ledger whether it is back (a heartbeat); True when it answered."""
        try:
            replicas.beat(self.sf)
        except Unavailable:
            self.sf.ledger_outage.failed()
            return False
        self.sf.ledger_outage.recovered()
        return True

    def round(self) -> Round:
        done = Round()
        if not self.probe():
            return done
        tokens.refresh_outage_cache(self.sf)
        done.promotions = [
            p.id for p in promotions.settle_all(self.sf) if p.id and p.status != "applying"
        ]
        done.keys_freed = idempotency.free_dead_claims(self.sf)
        self._sweep(done)
        done.evidence = evidence.record_missing(self.sf)
        if done.promotions or done.keys_freed or done.audited or done.rollbacks:
            log.info(
                "settled: promotions %s, %d idempotency keys freed, audit entries for %s, "
                "rollbacks of %s",
                done.promotions,
                done.keys_freed,
                [r[:12] for r in done.audited],
                done.rollbacks,
            )
        return done

    def _sweep(self, done: Round) -> None:
        """Record the pushed commits whose writer died before recording them (from trailers)."""
        if self.sf.history is None:
            return
        head = self.sf.repo.head()
        if head == self.through:
            return
        ripe = self._ripe(self.sf.history, head)
        if not ripe:
            return  # (a commit without a change id is no writer's: nothing to record)
        self._settle_rollbacks(ripe, done)
        self._audit(ripe, done)
        self.through = ripe[-1].revision

    def _ripe(self, history: History, head: str) -> list[CommitFacts]:
        """The Stageflow commits since the last sweep, old enough to record, oldest first."""
        # A younger commit may still be recorded by the process that pushed it.
        cutoff = self.sf.clock() - timedelta(seconds=self.sf.record_grace)
        ripe: list[CommitFacts] = []
        for commit in history.stageflow_commits(self.through, head, limit=SWEEP_LIMIT):
            if commit.at > cutoff:
                break  # oldest first: the rest are younger still
            if "Stageflow-Change" in commit.trailers:
                ripe.append(commit)
        return ripe

    def _settle_rollbacks(self, ripe: list[CommitFacts], done: Round) -> None:
        """Record the rollbacks these commits made whose promotions still say `applied`."""
        for commit in ripe:
            promotion_id = commit.trailers.get("Stageflow-Rollback", "")
            if not promotion_id.isdigit():
                continue
            rolled = rollbacks.settle_rollback(
                self.sf,
                int(promotion_id),
                commit.revision,
                actor=commit.trailers.get("Stageflow-Actor", "stageflow"),
                automatic=commit.trailers.get(rollbacks.AUTOMATIC_TRAILER) == "true",
            )
            if rolled is not None:
                done.rollbacks.append(int(promotion_id))

    def _audit(self, ripe: list[CommitFacts], done: Round) -> None:
        """Add an audit entry for each commit whose change the audit log does not have yet."""
        ids = [c.trailers["Stageflow-Change"] for c in ripe]
        with self.sf.uow() as uow:
            uow.serialize("stageflow-settler-audit")  # every worker sweeps: one at a time
            known = uow.audit.recorded_changes(ids)
            for commit in ripe:
                if commit.trailers["Stageflow-Change"] in known:
                    continue
                uow.audit.add(_entry(commit))
                done.audited.append(commit.revision)
            uow.commit()


def _entry(commit: CommitFacts) -> AuditEntry:
    trailers = commit.trailers
    return AuditEntry(
        actor=trailers.get("Stageflow-Actor", "unknown"),
        action=trailers.get("Stageflow-Action", "change"),
        at=commit.at,
        app=trailers.get("Stageflow-App"),
        stage=trailers.get("Stageflow-Stage"),
        target=trailers.get("Stageflow-Target"),
        after={"recorded_from": "the commit's trailers (its writer did not record it)"},
        revision=commit.revision,
        change_id=trailers["Stageflow-Change"],
    )
