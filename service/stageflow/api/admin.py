"""Administer: API tokens and the audit log."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api import access
from stageflow.api.answers import Page, ShownToken
from stageflow.api.auth import current_stageflow, current_token, requires
from stageflow.api.schemas import (
    AuditPageSchema,
    AuditQuerySchema,
    TokenCreatedSchema,
    TokenCreateSchema,
    TokenSchema,
)
from stageflow.domain.ledger import AuditEntry
from stageflow.services import audit, tokens

blp = Blueprint("admin", __name__, url_prefix="/api/v1", description="Tokens and the audit log")


@blp.route("/tokens")
class Tokens(MethodView):
    @requires("admin", touches=access.new_token)
    @blp.arguments(TokenCreateSchema)
    @blp.response(201, TokenCreatedSchema)
    @blp.alt_response(403, response="DEFAULT_ERROR")
    @blp.alt_response(422, response="DEFAULT_ERROR")
    def post(self, body: dict[str, Any]) -> ShownToken:
        """Create a token; its secret is in this answer only."""
        sf = current_stageflow()
        scope = body.get("scope") or {}
        new = tokens.NewToken(
            name=body["name"],
            owner=body["owner"],
            roles=body["roles"],
            apps=scope.get("apps", ()),
            stages=scope.get("stages", ()),
            expires_at=body.get("expires_at"),
        )
        token, secret = tokens.create_token(sf, new, created_by=current_token().owner)
        return ShownToken.at(token, sf.clock(), secret)

    @requires("admin")
    @blp.response(200, TokenSchema(many=True))
    def get(self) -> list[ShownToken]:
        """List tokens (never their secrets)."""
        sf = current_stageflow()
        now = sf.clock()
        return [ShownToken.at(t, now) for t in tokens.list_tokens(sf, current_token())]


@blp.route("/tokens/<token_id>")
class TokenById(MethodView):
    @requires("admin", touches=access.existing_token)
    @blp.response(200, TokenSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def delete(self, token_id: str) -> ShownToken:
        """Revoke a token."""
        sf = current_stageflow()
        token = tokens.revoke_token(sf, token_id, actor=current_token().owner)
        return ShownToken.revoked(token, sf.clock())


@blp.route("/audit")
class Audit(MethodView):
    @requires("viewer")
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query: dict[str, Any]) -> Page[AuditEntry]:
        """List who did what, newest first; page with `before`."""
        limit = query["limit"]
        entries = audit.list_audit(
            current_stageflow(),
            audit.AuditPageRequest(
                app=query.get("app"),
                stage=query.get("stage"),
                actor=query.get("actor"),
                before_id=query.get("before"),
                limit=limit,
            ),
            reader=current_token(),
        )
        return Page.of(entries, limit)
