"""Domain errors: what went wrong, said so that a person can fix it.

Each error carries a stable snake_case ``code`` and a ``message`` that names the problem and how
to fix it. ``api/errors.py`` is the one place that maps these classes to HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class StageflowError(Exception):
    """Base of every error the domain and services raise on purpose."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})


class NotFound(StageflowError):
    """An app, stage, flag, promotion or token that does not exist."""

    code = "not_found"


class Malformed(StageflowError):
    """Input that cannot be read as what it claims to be: bad Unicode, too deep (HTTP 400)."""

    code = "malformed"


class Invalid(StageflowError):
    """Well-formed input that breaks a rule (HTTP 422)."""

    code = "invalid"


class PipelineError(Invalid):
    """``stageflow.yaml`` cannot be used; the message names the key (and line when known)."""

    code = "invalid_pipeline"


class FlagDocumentError(Invalid):
    """A flagd document that flagd would reject or misread; ``details['problems']`` lists all."""

    code = "invalid_flag_document"


class RenderFailed(Invalid):
    """``kustomize build`` refused the overlay; the message carries kustomize's own words."""

    code = "render_failed"


class Conflict(StageflowError):
    """The request clashes with the current state (HTTP 409)."""

    code = "conflict"


class FlagNotAllowed(Conflict):
    """Turning a flag ON in a stage whose ``flags.allow`` excludes the flag's lifecycle."""

    code = "flag_not_allowed"


class StageSkipped(Conflict):
    """A change that would skip a stage (images go directly only into the first stage)."""

    code = "stage_skipped"


class AlreadyExists(Conflict):
    """Creating something that is already there."""

    code = "already_exists"


class WriteConflict(Conflict):
    """Concurrent writers kept winning the push race; the operation was not applied."""

    code = "write_conflict"


class IdempotencyMismatch(Conflict):
    """An ``Idempotency-Key`` reused with a different request."""

    code = "idempotency_key_reused"


class Unauthenticated(StageflowError):
    """No token, or a token that is unknown, revoked or expired (HTTP 401)."""

    code = "unauthenticated"


class Forbidden(StageflowError):
    """A valid token that may not do this (HTTP 403)."""

    code = "forbidden"


class TooManyRequests(StageflowError):
    """A client over a rate limit (HTTP 429); ``retry_after`` says how many seconds to wait."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": retry_after})
        self.retry_after = retry_after


class Unavailable(StageflowError):
    """A dependency (Git remote, database, kustomize, Prometheus) cannot be reached (HTTP 503)."""

    code = "unavailable"
