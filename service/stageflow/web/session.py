"""Who is signed in to the dashboard: the token in an HTTP-only cookie, and CSRF tokens.

The session is the API token itself, kept in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure``
when the request came over HTTPS): no session store to share between workers and replicas, and a
revoked token ends every session it opened within the second it ends its API use. Page views are
marked with ``access.requires(..., principal=session_token)``, so ``access.authorize_request``
decides them with the same rule as the API.

Every form carries a CSRF token. Signed in, it is an HMAC of a fixed label keyed by the session's
secret, which a page of another origin can neither read nor compute; before signing in (the sign-in
form itself), it is a random value that must match a cookie of the same name (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Response, g, request

from stageflow.domain.errors import Forbidden
from stageflow.domain.identity import ApiToken
from stageflow.services import tokens
from stageflow.services.context import Stageflow

SESSION_COOKIE = "stageflow_session"
LOGIN_CSRF_COOKIE = "stageflow_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A session lasts as long as the browser keeps it, at most this long (and never past the token).
SESSION_SECONDS = 12 * 3600


def session_token(sf: Stageflow) -> ApiToken:
    """The signed-in token (401 without one); a write must also carry the session's CSRF token."""
    secret = request.cookies.get(SESSION_COOKIE)
    token = tokens.authenticate(sf, secret, client=request.remote_addr)
    g.session_secret = secret
    if request.method in WRITE_METHODS:
        require_csrf(csrf_for(secret or ""))
    return token


def csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"stageflow dashboard csrf", hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The CSRF token the forms of this page carry."""
    secret = g.get("session_secret")
    if secret:
        return csrf_for(secret)
    nonce: str | None = g.get("login_csrf") or request.cookies.get(LOGIN_CSRF_COOKIE)
    if not nonce:
        nonce = secrets.token_urlsafe(32)
    g.login_csrf = nonce
    return nonce


def require_csrf(expected: str) -> None:
    """Refuse (403) a write whose form field or header does not carry ``expected``."""
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(
            "the form carries no valid CSRF token; reload the page and send it again",
            code="csrf_failed",
        )


def require_login_csrf() -> None:
    """The sign-in form's CSRF check: the field must equal the cookie set with the form."""
    require_csrf(request.cookies.get(LOGIN_CSRF_COOKIE, ""))


def remember_login_csrf(response: Response) -> None:
    """Set the sign-in form's CSRF cookie when a page made one (signed out pages only)."""
    nonce = g.get("login_csrf")
    if nonce and request.cookies.get(LOGIN_CSRF_COOKIE) != nonce:
        response.set_cookie(
            LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="Lax", secure=request.is_secure
        )


def start_session(response: Response, secret: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="Lax", secure=request.is_secure)
