"""Use cases on API tokens: create, authenticate, list, revoke, and the bootstrap admin token."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from stageflow.domain.errors import Invalid, NotFound, Unauthenticated
from stageflow.domain.identity import ApiToken, Scope, validate_owner, validate_roles
from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow

TOKEN_PREFIX = "sf_"
# Authentication runs on every request; a short-lived cache keeps it off the database on the
# hot read path. Revocation in this process clears it at once; other processes see it within TTL.
_CACHE_TTL = 2.0
_cache_lock = threading.Lock()


def hash_secret(secret: str) -> str:
    # Tokens are 256-bit random values, so a plain SHA-256 is enough (no brute force to slow).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    sf: Stageflow,
    *,
    name: str,
    owner: str,
    roles: list[str],
    created_by: str,
    apps: Sequence[str] = (),
    stages: Sequence[str] = (),
    expires_at: datetime | None = None,
    secret: str | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned here and never again."""
    now = sf.clock()
    if expires_at is not None and expires_at <= now:
        raise Invalid("expires_at is in the past; give a future time (ISO 8601 with a zone)")
    if not name.strip():
        raise Invalid("a token needs a non-empty name")
    token = ApiToken(
        id=str(uuid.uuid4()),
        name=name.strip(),
        owner=validate_owner(owner),
        roles=validate_roles(list(roles)),
        scope=Scope(apps=tuple(apps), stages=tuple(stages)),
        created_at=now,
        expires_at=expires_at,
        created_by=created_by,
    )
    secret = secret or new_secret()
    with sf.uow() as uow:
        uow.tokens.add(token, hash_secret(secret))
        uow.audit.add(
            AuditEntry(
                actor=created_by,
                action="token.create",
                target=token.id,
                after={"name": token.name, "owner": token.owner, "roles": sorted(token.roles)},
                at=now,
            )
        )
        uow.commit()
    return token, secret


def authenticate(sf: Stageflow, secret: str | None) -> ApiToken:
    """Return the active token for ``secret`` or raise Unauthenticated."""
    if not secret:
        raise Unauthenticated(
            "this endpoint needs a token: send `Authorization: Bearer <token>` (`make run` "
            "prints the admin token; admins create more with POST /api/v1/tokens)",
            code="token_missing",
        )
    digest = hash_secret(secret)
    now_mono = time.monotonic()
    with _cache_lock:
        hit: tuple[float, ApiToken] | None = sf.token_cache.get(digest)
    if hit is not None and now_mono - hit[0] < _CACHE_TTL:
        token = hit[1]
    else:
        with sf.uow() as uow:
            found = uow.tokens.by_hash(digest)
        if found is None:
            raise Unauthenticated(
                "the token is not known; check for a typo or ask an admin for a new one",
                code="token_invalid",
            )
        token = found
        with _cache_lock:
            sf.token_cache[digest] = (now_mono, token)
    if not token.active(sf.clock()):
        raise Unauthenticated(
            f"token {token.name!r} is "
            f"{'revoked' if token.revoked_at else 'expired'}; ask an admin for a new one",
            code="token_inactive",
        )
    return token


def list_tokens(sf: Stageflow) -> Sequence[ApiToken]:
    with sf.uow() as uow:
        return uow.tokens.list()


def revoke_token(sf: Stageflow, token_id: str, *, actor: str) -> ApiToken:
    now = sf.clock()
    with sf.uow() as uow:
        token = uow.tokens.get(token_id)
        if token is None:
            raise NotFound(f"no token with id {token_id}; GET /api/v1/tokens lists them")
        uow.tokens.revoke(token_id, now)
        uow.audit.add(
            AuditEntry(
                actor=actor,
                action="token.revoke",
                target=token_id,
                before={"name": token.name},
                at=now,
            )
        )
        uow.commit()
    with _cache_lock:
        sf.token_cache.clear()
    return token


def ensure_admin_token(sf: Stageflow, configured: str | None) -> str | None:
    """Make sure an admin can log in; return a newly generated secret to print, else None.

    With ``configured`` (STAGEFLOW_ADMIN_TOKEN) that exact secret becomes an admin token if it is
    not one yet. Without it, a secret is generated only when no admin token exists at all.
    """
    with sf.uow() as uow:
        if configured is not None:
            if uow.tokens.by_hash(hash_secret(configured)) is not None:
                return None
        elif uow.tokens.count_admins() > 0:
            return None
    _, secret = create_token(
        sf,
        name="bootstrap admin",
        owner="admin",
        roles=["admin"],
        created_by="stageflow",
        secret=configured,
    )
    return None if configured is not None else secret
