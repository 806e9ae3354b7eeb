"""Typed answers the views return and the schemas (``schemas.py``) dump.

A view returns the domain's objects as they are whenever a schema can read its fields off them
(``attribute=`` in the schema says where a field comes from). The types here cover what an
answer adds to them: the page of a list, the app and stage a report is about, a dry run's
verdict, a write's revision and warnings, a token's standing at the time of the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from stageflow.domain.gates import CheckResult, Deployment, verdict
from stageflow.domain.hooks import Restore
from stageflow.domain.identity import ApiToken
from stageflow.domain.promotions import Promotion
from stageflow.services.changes import Outcome
from stageflow.services.ports import Committed


class _Identified(Protocol):
    @property
    def id(self) -> int | None: ...


T = TypeVar("T", bound=_Identified)
V = TypeVar("V")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, newest first: ``next`` is the ``before`` of the next page (None:
    this is the last)."""

    items: Sequence[T]
    next: int | None

    @classmethod
    def of(cls, items: Sequence[T], limit: int) -> Page[T]:
        """A full page may have more after it; a shorter one is the last."""
        return cls(items, items[-1].id if len(items) == limit else None)


@dataclass(frozen=True)
class StageDeployment:
    """A deployment report with the app and stage it is about (the domain's omits them)."""

    app: str
    stage: str
    deployment: Deployment


@dataclass(frozen=True)
class ReportedCheck:
    """A check result with the app and stage it is about, who reported it, its details, and
    the automatic rollback it caused (``{promotion, revision}``), if any."""

    app: str
    stage: str
    check: CheckResult
    details: Any
    reported_by: str
    rollback: dict[str, Any] | None = None


class _Shown:
    """A promotion as an answer shows it: ``PromotionSchema`` reads the promotion's fields
    through it (``__getattr__``), and a subclass adds or overrides some."""

    promotion: Promotion

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends ask before ``promotion`` is set
            raise AttributeError(name)
        return getattr(self.promotion, name)


@dataclass(frozen=True)
class DryRun(_Shown):
    """A promotion's dry run: what would be promoted, never stored, and its gates' verdict."""

    promotion: Promotion
    status: str = "dry_run"
    dry_run: bool = True

    @property
    def verdict(self) -> str:
        return verdict(self.promotion.gates)


@dataclass(frozen=True)
class RolledBack(_Shown):
    """A rolled-back promotion with its rollback's time to restore (``restore``, when recorded)."""

    promotion: Promotion
    restore: Restore | None


@dataclass(frozen=True)
class Written(Generic[V]):
    """A write's answer: the pushed commit, what the write made (the flag, the image; None when
    the answer shows only the revision), and what the policies reported but let through (the
    schemas leave ``warnings`` out when there are none, as the answers always have)."""

    revision: str
    made: V
    warnings: Sequence[Mapping[str, str]] = ()

    @classmethod
    def of(cls, done: Committed[Outcome], made: V) -> Written[V]:
        """The answer to a committed change."""
        return cls(done.revision, made, done.result.warnings)


@dataclass(frozen=True)
class ShownToken:
    """A token as an answer shows it: whether it is ``active`` depends on the time of the
    answer, and its ``secret`` is there only in the answer that created it."""

    token: ApiToken
    active: bool
    secret: str | None = None

    @classmethod
    def at(cls, token: ApiToken, now: datetime, secret: str | None = None) -> ShownToken:
        """The token as it stands at ``now``."""
        return cls(token, token.active(now), secret)

    @classmethod
    def revoked(cls, token: ApiToken, now: datetime) -> ShownToken:
        """The token as its revocation at ``now`` leaves it (``token`` is read before it)."""
        return cls.at(replace(token, revoked_at=now), now)


@dataclass(frozen=True)
class HoldReleased:
    """An app's stage released from its hold."""

    app: str
    stage: str
    released: bool = True


@dataclass(frozen=True)
class StageThawed:
    """A stage no longer frozen for any app."""

    stage: str
    frozen: bool = False


@dataclass(frozen=True)
class RejectionReleased:
    """A rejected image version that may be promoted again (``released``: the rejection's id)."""

    released: int
