"""Who is asking: API tokens, their roles and their scope."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stageflow.domain.actors import SYSTEM_ACTORS, is_system_actor
from stageflow.domain.errors import Forbidden, Invalid

ROLES = ("viewer", "client", "reporter", "editor", "promoter", "approver", "admin")
# Every role that acts on a resource may read it: an approver reads the promotion it approves, an
# editor the flags it edits. ``client`` only evaluates flags (OFREP), so it reads nothing else.
READERS = frozenset(ROLES) - {"client"}
# A resource that touches every app or every stage (a freeze touches every app of a stage, a flag
# definition edit every stage that has the flag): only a scope without that limit covers it.
EVERY = "*"
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


@dataclass(frozen=True)
class Scope:
    """Apps and stages a token may act on; an empty tuple means every one."""

    apps: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()

    @property
    def limited(self) -> bool:
        return bool(self.apps or self.stages)

    def covers(self, app: str | None = None, stage: str | None = None) -> bool:
        """Whether ``app`` and ``stage`` are inside; None: not concerned, EVERY: all of them."""
        return _inside(app, self.apps) and _inside(stage, self.stages)

    def within(self, other: Scope) -> bool:
        """Whether everything this scope lets a token touch is inside ``other`` too."""
        return all(
            other.covers(app, stage)
            for app in self.apps or (EVERY,)
            for stage in self.stages or (EVERY,)
        )

    def describe(self) -> str:
        apps = ", ".join(self.apps) or "every app"
        stages = ", ".join(self.stages) or "every stage"
        return f"{apps} / {stages}"


def _inside(name: str | None, allowed: tuple[str, ...]) -> bool:
    if name is None or not allowed:
        return True
    return name != EVERY and name in allowed


@dataclass(frozen=True)
class ApiToken:
    """A token as stored: never the secret, only its hash lives in the ledger."""

    id: str
    name: str
    owner: str
    roles: frozenset[str]
    scope: Scope = field(default_factory=Scope)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_by: str | None = None
    last_used_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The token as the API and the CLI show it (never the secret: only its hash is kept)."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "roles": sorted(self.roles),
            "scope": {"apps": list(self.scope.apps), "stages": list(self.scope.stages)},
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "active": self.active(now),
        }

    def has_role(self, role: str) -> bool:
        if "admin" in self.roles or role in self.roles:
            return True
        return role == "viewer" and bool(self.roles & READERS)

    def require(self, role: str, *, app: str | None = None, stage: str | None = None) -> None:
        """Raise Forbidden unless this token has ``role`` for ``app`` and ``stage``."""
        if not self.has_role(role):
            raise Forbidden(
                f"token {self.name!r} lacks the {role!r} role (it has: "
                f"{', '.join(sorted(self.roles)) or 'none'}); ask an admin for a token with it",
                code="missing_role",
                details={"required": role},
            )
        if not self.scope.covers(app, stage):
            what = "/".join(
                "every " + kind if name == EVERY else name
                for name, kind in ((app, "app"), (stage, "stage"))
                if name is not None
            )
            raise Forbidden(
                f"token {self.name!r} is scoped to {self.scope.describe()}; this request touches "
                f"{what}, which is outside it: use a token whose scope covers it",
                code="out_of_scope",
                details={
                    "app": app,
                    "stage": stage,
                    "scope": {"apps": list(self.scope.apps), "stages": list(self.scope.stages)},
                },
            )


def validate_roles(roles: list[str]) -> frozenset[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise Invalid(
            f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}",
            code="invalid_role",
        )
    if not roles:
        raise Invalid(f"a token needs at least one role out of {', '.join(ROLES)}")
    return frozenset(roles)


def validate_owner(owner: str) -> str:
    if is_system_actor(owner):
        raise Invalid(
            f"owner {owner!r} is reserved: Stageflow writes {', '.join(SYSTEM_ACTORS)} as its own "
            "actor; choose the person's or the job's name",
            code="reserved_owner",
        )
    if not OWNER_RE.match(owner):
        raise Invalid(
            f"owner {owner!r} must be 1-128 letters, digits or _.@+- (it is written into commit "
            "trailers and audit entries)",
            code="invalid_owner",
        )
    return owner
