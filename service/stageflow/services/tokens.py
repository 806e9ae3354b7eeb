"""Use cases on API tokens: create, authenticate, list, revoke, and the bootstrap admin token."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from stageflow.domain.errors import (
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from stageflow.domain.identity import ApiToken, Scope, validate_owner, validate_roles
from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow

TOKEN_PREFIX = "sf_"
# Authentication runs on every request; a short-lived cache keeps it off the database on the
# hot read path. Revocation in this process clears it at once; other processes (workers,
# replicas) see it when their entry expires, so a revoked token stops everywhere within a second.
CACHE_TTL = 0.5
# last_used_at is written at most this often per token (seconds), not on every request.
TOUCH_EVERY = 60.0
# The cache holds at most this many tokens (the oldest verified go first).
CACHE_SIZE = 10_000
_cache_lock = threading.Lock()


def hash_secret(secret: str) -> str:
    # Tokens are 256-bit random values, so a plain SHA-256 is enough (no brute force to slow).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewToken:
    """What a token to create is: name, owner, roles, scope (empty: every one) and expiry."""

    name: str
    owner: str
    roles: Sequence[str]
    apps: Sequence[str] = ()
    stages: Sequence[str] = ()
    expires_at: datetime | None = None


def create_token(
    sf: Stageflow, new: NewToken, *, created_by: str, secret: str | None = None
) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned here and never again."""
    now = sf.clock()
    if new.expires_at is not None and new.expires_at <= now:
        raise Invalid("expires_at is in the past; give a future time (ISO 8601 with a zone)")
    if not new.name.strip():
        raise Invalid("a token needs a non-empty name")
    token = ApiToken(
        id=str(uuid.uuid4()),
        name=new.name.strip(),
        owner=validate_owner(new.owner),
        roles=validate_roles(list(new.roles)),
        scope=Scope(apps=tuple(new.apps), stages=tuple(new.stages)),
        created_at=now,
        expires_at=new.expires_at,
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


def authenticate(sf: Stageflow, secret: str | None, *, client: str | None = None) -> ApiToken:
    """Return the active token for ``secret`` or raise Unauthenticated.

    ``client`` (the caller's address) counts failed attempts: past the limit, an address gets 429
    for any token this process has not seen succeed, until its rate drops.
    """
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
    if hit is not None and now_mono - hit[0] < CACHE_TTL:
        token = hit[1]
    else:
        token = _verify(sf, digest, hit, client=client, now_mono=now_mono)
    if not token.active(sf.clock()):
        note_failure(sf, client)
        raise Unauthenticated(
            f"token {token.name!r} is "
            f"{'revoked' if token.revoked_at else 'expired'}; ask an admin for a new one",
            code="token_inactive",
        )
    return token


def _verify(
    sf: Stageflow,
    digest: str,
    hit: tuple[float, ApiToken] | None,
    *,
    client: str | None,
    now_mono: float,
) -> ApiToken:
    """Find the token for ``digest`` when the cache (``hit``, if any) is too old to answer."""
    if hit is None:
        refuse_while_limited(sf, client)
    # The ledger is the truth while it is up; when it is down, a token verified not long ago
    # goes on working (flag reads and OFREP come from Git), and a revocation made meanwhile
    # applies once it is back.
    if hit is None:  # verified by another process of the fleet, lately
        hit = sf.token_fallback.get(digest)
    fallback = hit if hit is not None and now_mono - hit[0] < sf.token_outage_grace else None
    try:
        found = _lookup(sf, digest, fallback=fallback)
    except Unavailable:
        if fallback is None:
            raise
        return fallback[1]
    if found is None:
        note_failure(sf, client)
        raise Unauthenticated(
            "the token is not known; check for a typo or ask an admin for a new one",
            code="token_invalid",
        )
    with _cache_lock:
        sf.token_cache.pop(digest, None)
        sf.token_cache[digest] = (now_mono, found)
        while len(sf.token_cache) > CACHE_SIZE:
            del sf.token_cache[next(iter(sf.token_cache))]
    return found


def _lookup(
    sf: Stageflow, digest: str, *, fallback: tuple[float, ApiToken] | None = None
) -> ApiToken | None:
    """Read a token by its secret's hash, and note that it was used (once a minute at most).

    Raises Unavailable when the ledger cannot be asked; with a ``fallback`` to serve, it does
    not even try while the ledger is known to be down (``Stageflow.ledger_outage``).
    """
    outage = sf.ledger_outage
    if fallback is not None and outage.skip():
        raise Unavailable("the database is unreachable", code="database_unavailable")
    try:
        token = _read_token(sf, digest)
    except Unavailable:
        outage.failed()
        raise
    outage.recovered()
    return token


def _read_token(sf: Stageflow, digest: str) -> ApiToken | None:
    now = sf.clock()
    with sf.uow() as uow:
        token = uow.tokens.by_hash(digest)
        if token is None or not token.active(now):
            return token
        last = token.last_used_at
        if last is None or (now - last).total_seconds() >= TOUCH_EVERY:
            uow.tokens.touch(token.id, now)
            uow.commit()
            token = replace(token, last_used_at=now)
    return token


def refresh_outage_cache(sf: Stageflow) -> int:
    """Keep the tokens any process used within the outage grace, for use while the ledger is down.

    A worker keeps its own cache of the tokens it verified; a client whose requests all went
    to another worker (or replica) would find none during an outage. ``last_used_at`` is
    written once a minute per token by whoever verifies it, so this covers every token in use.
    """
    if sf.token_outage_grace <= 0:
        return 0
    now_mono = time.monotonic()
    since = sf.clock() - timedelta(seconds=sf.token_outage_grace)
    with sf.uow() as uow:
        found = uow.tokens.used_since(since, CACHE_SIZE)
    fresh = {digest: (now_mono, token) for digest, token in found}
    sf.token_fallback = fresh  # replaced whole: a token revoked since drops out
    return len(fresh)


def note_failure(sf: Stageflow, client: str | None) -> None:
    """Count a failed attempt of ``client`` (tokens, event-stream tickets) towards its limit."""
    if sf.auth_failures is not None and client:
        sf.auth_failures.acquire(client)


def refuse_while_limited(sf: Stageflow, client: str | None) -> None:
    """Raise TooManyRequests while ``client`` is past its limit of failed attempts."""
    limiter = sf.auth_failures
    if limiter is not None and client and (wait := limiter.wait(client)):
        raise _too_many(wait)


def _too_many(wait: int) -> TooManyRequests:
    return TooManyRequests(
        f"too many requests with unknown or inactive tokens from this address; wait {wait} s "
        "and check the token you send (ask an admin for a new one)",
        retry_after=wait,
    )


def find_token(sf: Stageflow, token_id: str) -> ApiToken | None:
    """Read a token by id (None when there is none)."""
    with sf.uow() as uow:
        return uow.tokens.get(token_id)


def manages(manager: ApiToken, token: ApiToken) -> bool:
    """Whether ``manager`` may see and revoke ``token``.

    An admin without a scope manages every token. A scoped admin manages only tokens made by its
    owner, within its scope, and itself: never the tokens of others.
    """
    if not manager.has_role("admin"):
        return False
    if not manager.scope.limited:
        return True
    if token.id == manager.id:
        return True
    return token.created_by == manager.owner and token.scope.within(manager.scope)


def require_manager(manager: ApiToken, token: ApiToken) -> None:
    if not manages(manager, token):
        raise Forbidden(
            f"token {manager.name!r} is scoped to {manager.scope.describe()}, and token "
            f"{token.name!r} was made by {token.created_by or 'someone else'}: only an admin "
            "without a scope manages the tokens of others",
            code="out_of_scope",
        )


def list_tokens(sf: Stageflow, reader: ApiToken | None = None) -> Sequence[ApiToken]:
    """List tokens (never secrets); a ``reader`` sees only the tokens it manages."""
    with sf.uow() as uow:
        found = uow.tokens.list()
    return [t for t in found if reader is None or manages(reader, t)]


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
        NewToken(name="bootstrap admin", owner="admin", roles=["admin"]),
        created_by="stageflow",
        secret=configured,
    )
    return None if configured is not None else secret
