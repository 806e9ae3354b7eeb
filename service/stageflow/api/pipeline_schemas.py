"""The pipeline's answer (marshmallow): dumped from ``services.state.PipelineOverview``, whose
stages are the domain's ``Stage`` objects as ``stageflow.yaml`` declares them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from stageflow.api.schemas import Boolean
from stageflow.domain.flags import LIFECYCLES
from stageflow.domain.pipeline import Stage, format_duration


class Duration(fields.String):
    """A duration as ``stageflow.yaml`` spells it (``30m``, ``1h30m``), or null."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return format_duration(value) if value else None


class MetricGateSchema(Schema):
    name = fields.String()
    query = fields.String()
    min = fields.Float(allow_none=True)
    max = fields.Float(allow_none=True)


class GatesSchema(Schema):
    checks = fields.List(fields.String())
    metrics = fields.List(fields.Nested(MetricGateSchema))
    soak = Duration(allow_none=True)


def _allowed(stage: Stage) -> dict[str, list[str]]:
    return {"allow": [lifecycle for lifecycle in LIFECYCLES if stage.allows(lifecycle)]}


class StageSchema(Schema):
    name = fields.String()
    namespace = fields.String()
    flags = fields.Function(
        _allowed,
        metadata={
            "type": "object",
            "description": "the lifecycles whose flags the stage lets be ON, in their order",
            "properties": {
                "allow": {"type": "array", "items": {"type": "string", "enum": list(LIFECYCLES)}}
            },
        },
    )
    gates = fields.Nested(GatesSchema)
    approvals = fields.Integer()
    auto_rollback = Boolean()
    auto_promote = Boolean(
        metadata={"description": "promoted into by itself when the stage before runs a new state"}
    )


class RepositorySchema(Schema):
    url = fields.String(metadata={"description": "the remote URL, without credentials"})
    branch = fields.String()


class AppSummarySchema(Schema):
    name = fields.String()
    path = fields.String()
    stages = fields.List(fields.String())


class FileProblemSchema(Schema):
    file = fields.String(metadata={"description": "path in the GitOps repo"})
    revision = fields.String(metadata={"description": "the head where the file is invalid"})
    line = fields.Integer(allow_none=True)
    problem = fields.String(metadata={"description": "what is wrong and how to fix it"})
    serving_revision = fields.String(
        attribute="serving",
        allow_none=True,
        metadata={"description": "the revision whose version of the file reads answer from"},
    )
    app = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)


class PipelineSchema(Schema):
    revision = fields.String()
    stale_since = fields.String(
        allow_none=True,
        metadata={
            "description": "while the Git remote is unreachable: since when (the revision is "
            "the last head seen)"
        },
    )
    problems = fields.List(
        fields.Nested(FileProblemSchema),
        metadata={"description": "files at the head that reads answer from an earlier version of"},
    )
    repository = fields.Nested(RepositorySchema)
    stages = fields.List(fields.Nested(StageSchema))
    apps = fields.List(fields.Nested(AppSummarySchema))
