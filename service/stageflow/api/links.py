"""OpenAPI links: which answer's ids the next operation takes.

Clients and schemathesis's stateful phase follow them: create a promotion, then read, approve,
evaluate, cancel or roll it back; create a token, then revoke it.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

PROMOTION = "/api/v1/promotions/{promotion_id}"


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _promotion(path: str, method: str) -> dict[str, Any]:
    return {
        "operationRef": _ref(path, method),
        "parameters": {"promotion_id": "$response.body#/id"},
    }


# (path, method, status) -> {link name: link}
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/api/v1/apps/{app}/promotions", "post", "201"): {
        "GetPromotion": _promotion(PROMOTION, "get"),
        "ApprovePromotion": _promotion(f"{PROMOTION}/approvals", "post"),
        "EvaluatePromotion": _promotion(f"{PROMOTION}/evaluate", "post"),
        "CancelPromotion": _promotion(f"{PROMOTION}/cancel", "post"),
        "RollBackPromotion": _promotion(f"{PROMOTION}/rollback", "post"),
    },
    ("/api/v1/tokens", "post", "201"): {
        "RevokeNewToken": {
            "operationRef": _ref("/api/v1/tokens/{token_id}", "delete"),
            "parameters": {"token_id": "$response.body#/id"},
        },
    },
}


class Links(BasePlugin):
    """Add the links above to the answers they start from."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            for status, response in operation.get("responses", {}).items():
                links = LINKS.get((path or "", method, str(status)))
                if links and isinstance(response, dict):
                    response.setdefault("links", {}).update(links)
