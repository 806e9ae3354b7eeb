"""Typed answers the views return and the schemas (``schemas.py``) dump.

A view returns the domain's objects as they are whenever a schema can read its fields off them
(``attribute=`` in the schema says where a field comes from). The types here cover what an
answer adds to them: the page of a list, the app and stage a report is about, a dry run's
verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from stageflow.domain.gates import CheckResult, Deployment, verdict
from stageflow.domain.hooks import Restore
from stageflow.domain.promotions import Promotion


class _Identified(Protocol):
    @property
    def id(self) -> int | None: ...


T = TypeVar("T", bound=_Identified)


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
