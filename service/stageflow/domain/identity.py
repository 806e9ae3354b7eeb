"""Who is asking: API tokens, their roles and their scope."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from stageflow.domain.errors import Forbidden, Invalid

ROLES = ("viewer", "client", "reporter", "editor", "promoter", "approver", "admin")
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


@dataclass(frozen=True)
class Scope:
    """Apps and stages a token may act on; an empty tuple means every one."""

    apps: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()

    def covers(self, app: str | None = None, stage: str | None = None) -> bool:
        if app is not None and self.apps and app not in self.apps:
            return False
        return not (stage is not None and self.stages and stage not in self.stages)


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

    def active(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def has_role(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles

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
            raise Forbidden(
                f"token {self.name!r} is scoped to apps {list(self.scope.apps) or 'all'} and "
                f"stages {list(self.scope.stages) or 'all'}; {app or ''}/{stage or ''} is outside",
                code="out_of_scope",
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
    if not OWNER_RE.match(owner):
        raise Invalid(
            f"owner {owner!r} must be 1-128 letters, digits or _.@+- (it is written into commit "
            "trailers and audit entries)",
            code="invalid_owner",
        )
    return owner
