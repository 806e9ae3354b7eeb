"""Authorization: one decision per request, made before the view runs.

Every view under ``/api/`` and ``/ofrep/`` carries a mark, ``@requires(role, touches=...)``: the
role it needs and how to find every app and stage the request touches — the URL's, the body's (a
promotion's target, a webhook's Application), or a referenced resource's (a promotion's app and
target stage, a token's scope). ``authorize_request`` runs for every request (a ``before_request``
hook): it finds the mark of the view Flask routed to, resolves the targets and asks the token. A
view without a mark is refused for everyone, so a new endpoint cannot forget its scope; the
generated matrix test (``tests/e2e/test_access_matrix.py``) proves each operation of
``/openapi.json`` for every role, in scope and out.

The dashboard's pages (``stageflow.web``) carry the same marks with a ``principal`` that reads
the token from the signed-in session instead of the ``Authorization`` header; outside ``/api/``
and ``/ofrep/`` only marked views are decided, the rest (sign-in, static files) is open.

Views that list (promotions, audit, tokens, apps) are allowed by role and filter what they answer
by the token's scope (``current_token().scope``), through the services' ``scope`` parameters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, g, request
from werkzeug.wrappers import Request

from stageflow.domain import actors
from stageflow.domain.errors import Forbidden, Unauthenticated
from stageflow.domain.identity import EVERY, ApiToken, Scope
from stageflow.services import audit, promotions, state, tokens
from stageflow.services.context import Stageflow

F = TypeVar("F", bound=Callable[..., Any])
Target = tuple[str | None, str | None]  # (app, stage); None: not concerned, EVERY: all of them

MARK = "_stageflow_access"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Asked:
    """A request as a resolver sees it: the URL's arguments, the request, and who asks.

    The request is passed rather than read from Flask's globals so that the fast path
    (``fastpath.py``), which answers in front of Flask, decides with the same resolvers.
    """

    args: dict[str, Any]
    request: Request
    token: ApiToken


Resolver = Callable[[Stageflow, Asked], Iterable[Target]]


@dataclass(frozen=True)
class Access:
    """What a view needs: a role, and the apps and stages it touches (beyond the URL's)."""

    role: str
    touches: Resolver | None = None
    # Who is asking: the bearer token by default; the Flux webhook also takes an HMAC signature.
    principal: Callable[[Stageflow], ApiToken] | None = None


def requires(
    role: str,
    *,
    touches: Resolver | None = None,
    principal: Callable[[Stageflow], ApiToken] | None = None,
) -> Callable[[F], F]:
    """Mark a view: it runs only for a token with ``role`` whose scope covers what it touches."""
    access = Access(role, touches, principal)

    def mark(view: F) -> F:
        setattr(view, MARK, access)
        # The role is part of the published contract: /openapi.json shows it per operation.
        apidoc = getattr(view, "_apidoc", {})
        apidoc.setdefault("manual_doc", {})["x-stageflow-role"] = role
        # flask-smorest reads a view's documentation off this attribute, which no type declares.
        view._apidoc = apidoc  # type: ignore[attr-defined]
        return view

    return mark


def view_for(view_function: Any, method: str) -> Any:
    """The function that answers ``method`` at a Flask endpoint (a MethodView's method)."""
    view_class = getattr(view_function, "view_class", None)
    if view_class is None:
        return view_function
    return getattr(view_class, "get" if method == "HEAD" else method.lower(), None)


def access_of(view_function: Any, method: str) -> Access | None:
    """The mark of the view a Flask endpoint runs for ``method`` (None: unmarked)."""
    return getattr(view_for(view_function, method), MARK, None)


def authorize_request() -> None:
    """Decide the request from its token and every app and stage it touches (before the view)."""
    g.token = None
    if _is_open():
        return
    access = access_of(current_app.view_functions.get(request.endpoint or ""), request.method)
    if access is None and not request.path.startswith(("/api/", "/ofrep/")):
        return  # operate endpoints, the OpenAPI document, sign-in and static files are open
    sf: Stageflow = current_app.extensions["stageflow"]
    token = (access.principal if access and access.principal else bearer_token)(sf)
    g.token = token
    try:
        if access is None:
            raise Forbidden(
                f"{request.method} {request.url_rule} declares no access rule, so nobody may call "
                "it; this is a bug in Stageflow, please report it",
                code="no_access_rule",
            )
        decide(sf, access, Asked(dict(request.view_args or {}), request, token))
    except Forbidden as refused:
        _record_refusal(sf, token, refused)
        raise


def _is_open() -> bool:
    """Flask answers 404 / 405 itself; CORS preflights carry no token."""
    return request.routing_exception is not None or request.method == "OPTIONS"


def decide(sf: Stageflow, access: Access, asked: Asked) -> None:
    """Raise ``Forbidden`` unless the token has the role for every app and stage touched.

    The one decision: Flask's ``before_request`` and the fast path both make it here.
    """
    role = access.role
    asked.token.require(role)
    for app, stage in _targets(sf, access, asked):
        asked.token.require(role, app=app, stage=stage)


def _record_refusal(sf: Stageflow, token: ApiToken, refused: Forbidden) -> None:
    """Audit a refused write (evaluations are reads sent as POST, at read rates: no rows)."""
    if request.method not in WRITE_METHODS or request.path.startswith("/ofrep/"):
        return
    audit.record_refusal(
        sf,
        actor=token.owner,
        action=f"{request.method} {request.url_rule}",
        app=(request.view_args or {}).get("app"),
        stage=(request.view_args or {}).get("stage"),
        reason=refused.code,
    )


def _targets(sf: Stageflow, access: Access, asked: Asked) -> list[Target]:
    found: list[Target] = [(asked.args.get("app"), asked.args.get("stage"))]
    if access.touches is not None:
        found.extend(access.touches(sf, asked))
    return found


def bearer_token(sf: Stageflow) -> ApiToken:
    """The token of ``Authorization: Bearer <token>`` (401 when missing, unknown or inactive)."""
    return bearer_token_of(sf, request)


def bearer_secret(authorization: str) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header value (None: not one)."""
    scheme, _, secret = authorization.partition(" ")
    return (secret.strip() or None) if scheme.lower() == "bearer" else None


def bearer_token_of(sf: Stageflow, asking: Request) -> ApiToken:
    """The bearer token of a request, which need not be Flask's (see ``Asked``)."""
    secret = bearer_secret(asking.headers.get("Authorization", ""))
    return tokens.authenticate(sf, secret, client=asking.remote_addr)


# -- resolvers: what a request touches beyond its URL -------------------------------------------


def _json_body(asking: Request) -> Any:
    """The parsed JSON body (None when there is none or it does not parse: the schema says)."""
    return asking.get_json(silent=True, cache=True) if asking.is_json else None


def json_field(asking: Request, name: str) -> str | None:
    """A top-level string field of the JSON body, if there is one (the schema validates later)."""
    body = _json_body(asking)
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def target_stage(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """A promotion request touches its target stage (``to`` in the body)."""
    stage = json_field(asked.request, "to")
    return [(asked.args["app"], stage)] if stage is not None else []


def first_stage(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """A new flag enters the pipeline's first stage."""
    return [(asked.args["app"], state.first_stage(sf))]


def stages_with_flag(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """A flag definition edit touches every stage that has the flag (none known: every stage)."""
    app = asked.args["app"]
    stages = state.stages_with_flag(sf, app, asked.args["key"])
    return [(app, stage) for stage in stages or (EVERY,)]


def promotion(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """A promotion's app and target stage (an unknown id is the view's 404)."""
    found = promotions.find_promotion(sf, asked.args["promotion_id"])
    return [] if found is None else [(found.app, found.target)]


def every_stage(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """App-wide state (a rejected image version blocks promotions into every stage)."""
    return [(asked.args["app"], EVERY)]


def every_app(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """Stage-wide state (a freeze stops promotions of every app into the stage)."""
    return [(EVERY, asked.args["stage"])]


def everything(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """Data that links every app and stage (the evidence chain): only an unscoped token."""
    return [(EVERY, EVERY)]


def app_wide(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """An app's figures of one stage (``stage`` in the query, else the pipeline's last)."""
    return [(asked.args["app"], asked.request.args.get("stage") or state.last_stage(sf))]


def scope_targets(scope: Scope) -> list[Target]:
    return [(app, stage) for app in scope.apps or (EVERY,) for stage in scope.stages or (EVERY,)]


def new_token(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """A token may only be made within its maker's scope (and with roles the maker has)."""
    body = _json_body(asked.request)
    body = body if isinstance(body, dict) else {}
    scope = body.get("scope") if isinstance(body.get("scope"), dict) else {}
    apps, stages = scope.get("apps") or [], scope.get("stages") or []
    roles = body.get("roles", [])
    if not all(_names(value) for value in (apps, stages, roles)):
        return []  # the schema refuses it (a number or a string is no list of names)
    for role in roles:
        asked.token.require(role)
    return scope_targets(Scope(tuple(apps), tuple(stages)))


def _names(value: Any) -> bool:
    """Whether a body field is a list of strings, the only shape a resolver reads names from;
    anything else is left to the schema's 422 (a resolver runs before it, on raw JSON)."""
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def existing_token(sf: Stageflow, asked: Asked) -> Iterable[Target]:
    """Managing a token touches its scope; a scoped admin manages only the tokens it made."""
    found = tokens.find_token(sf, asked.args["token_id"])
    if found is None:
        return []
    tokens.require_manager(asked.token, found)
    return scope_targets(found.scope)


# -- webhooks: the payload names the app and stage ---------------------------------------------


def webhook_target(source: str) -> Resolver:
    """The app and stage of the GitOps object a webhook reports on (none: not used)."""

    def resolve(sf: Stageflow, asked: Asked) -> Iterable[Target]:
        mapped = state.webhook_stage(sf, source, _webhook_body(asked.request))
        return [] if mapped is None else [mapped]

    return resolve


def _webhook_body(asking: Request) -> Any:
    try:
        return json.loads(asking.get_data(cache=True))
    except (ValueError, RecursionError):
        return None  # the view refuses it as malformed


def flux_principal(sf: Stageflow) -> ApiToken:
    """A generic-hmac provider signs the body (X-Signature); a generic one sends a token."""
    signature = request.headers.get("X-Signature")
    if signature is None:
        return bearer_token(sf)
    settings = current_app.extensions["stageflow.settings"]
    secret = getattr(settings, "flux_webhook_secret", None)
    if not secret:
        raise Unauthenticated(
            "X-Signature sent, but STAGEFLOW_FLUX_WEBHOOK_SECRET is not set on the server; set it "
            "to the generic-hmac provider's secret, or send a reporter token instead",
            code="signature_not_configured",
        )
    algorithm, _, digest = signature.partition("=")
    if algorithm != "sha256":
        raise Unauthenticated(
            f"X-Signature uses {algorithm or 'no algorithm'}; Stageflow expects sha256=<hex>",
            code="bad_signature",
        )
    expected = hmac.new(secret.encode(), request.get_data(cache=True), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        raise Unauthenticated(
            "X-Signature does not match the body: check that the provider's secret equals "
            "STAGEFLOW_FLUX_WEBHOOK_SECRET",
            code="bad_signature",
        )
    # The secret acts as a reporter limited to what STAGEFLOW_FLUX_WEBHOOK_APPS / _STAGES allow.
    return ApiToken(
        id="flux-generic-hmac",
        name="Flux generic-hmac provider",
        owner=actors.FLUX,
        roles=frozenset({"reporter"}),
        scope=Scope(
            apps=tuple(getattr(settings, "flux_webhook_apps", ()) or ()),
            stages=tuple(getattr(settings, "flux_webhook_stages", ()) or ()),
        ),
    )
