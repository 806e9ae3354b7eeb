"""Request and response bodies of promotions and the reports that gate them (marshmallow).

Responses are dumped from the domain's objects (``Promotion``, ``GateResult``, ``Approval``,
``Freeze``, ``Hold``, ``Rejection``) and the typed answers of ``answers.py``; ``attribute=``
says where a field that is named otherwise in the API comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from stageflow.api.schemas import Boolean, StrictSchema, Timestamp, page_before, query_name
from stageflow.domain.flags import FLAG_KEY_RE
from stageflow.domain.promotions import STATUSES

# -- promotions -------------------------------------------------------------------------------


class ImagesSelection(fields.Field):
    """`true`, `false`, or a list of image names."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise ValidationError("images is true, false, or a list of image names")


class FlagsSelection(fields.Field):
    """`"eligible"`, `"none"`, or a list of flag keys."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if value in ("eligible", "none"):
            return value
        if isinstance(value, list) and all(
            isinstance(v, str) and FLAG_KEY_RE.match(v) for v in value
        ):
            return tuple(value)
        raise ValidationError('flags is "eligible", "none", or a list of flag keys')


class PromotionCreateSchema(StrictSchema):
    to = fields.String(required=True, validate=validate.Length(min=1, max=63))
    from_ = fields.String(data_key="from", validate=validate.Length(min=1, max=63))
    images = ImagesSelection(load_default=True, metadata={"description": "true | false | [names]"})
    flags = FlagsSelection(
        load_default="eligible", metadata={"description": '"eligible" | "none" | [keys]'}
    )
    dry_run = Boolean(load_default=False)
    reason = fields.String(validate=validate.Length(max=2000))


class GateSchema(Schema):
    name = fields.String()
    kind = fields.String()
    status = fields.String(metadata={"description": "passed | failed | pending | inconclusive"})
    message = fields.String()
    evidence = fields.Dict()


class PlanSchema(Schema):
    images = fields.List(fields.Dict())
    flags = fields.List(fields.Dict())


class ApprovalSchema(Schema):
    approver = fields.String()
    at = Timestamp()
    comment = fields.String(allow_none=True)


class RestoreSchema(Schema):
    revision = fields.String(metadata={"description": "the revert's commit"})
    pushed_at = fields.DateTime()
    controller_told_at = fields.DateTime(
        allow_none=True, metadata={"description": "first controller hook delivered"}
    )
    healthy_at = fields.DateTime(
        allow_none=True, metadata={"description": "the stage reported the restored state healthy"}
    )
    seconds = fields.Float(allow_none=True, metadata={"description": "pushed_at to healthy_at"})


class PromotionSchema(Schema):
    id = fields.Integer(allow_none=True)
    app = fields.String()
    from_ = fields.String(data_key="from", attribute="source")
    to = fields.String(attribute="target")
    status = fields.String()
    verdict = fields.String(
        metadata={"description": "dry runs: apply | pending_approval | blocked"}
    )
    dry_run = Boolean()
    message = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    plan = fields.Nested(PlanSchema, attribute="plan_json")
    gates = fields.List(fields.Nested(GateSchema))
    diff = fields.String()
    revision = fields.String(allow_none=True)
    source_revision = fields.String(allow_none=True)
    requested_by = fields.String()
    automatic = Boolean(
        metadata={"description": "opened by Stageflow itself (the target stage's auto_promote)"}
    )
    approvals = fields.List(fields.Nested(ApprovalSchema))
    restore = fields.Nested(
        RestoreSchema,
        allow_none=True,
        metadata={"description": "a rolled-back promotion: the rollback's time to restore"},
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class PromotionQuerySchema(StrictSchema):
    app = query_name()
    to = query_name()
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    before = fields.Integer(**page_before)


class PromotionPageSchema(Schema):
    items = fields.List(fields.Nested(PromotionSchema))
    next = fields.Integer(allow_none=True)


class ApprovalCreateSchema(StrictSchema):
    comment = fields.String(validate=validate.Length(max=2000))


# -- reports ----------------------------------------------------------------------------------

revision_field = fields.String(
    required=True,
    validate=validate.Regexp(r"^[0-9a-fA-F]{4,40}$", error="a full or short commit SHA (hex)"),
)


class CheckCreateSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_-]{0,62}$"))
    revision = revision_field
    status = fields.String(required=True, validate=validate.OneOf(["passed", "failed"]))
    summary = fields.String(validate=validate.Length(max=4000))
    url = fields.Url(require_tld=False, validate=validate.Length(max=2048))
    details = fields.Dict()


class CheckSchema(Schema):
    """Dumps a ``ReportedCheck`` (answers.py): the check's own fields come from ``check``."""

    id = fields.Integer(attribute="check.id")
    app = fields.String()
    stage = fields.String()
    kind = fields.String(attribute="check.kind")
    revision = fields.String(attribute="check.revision")
    status = fields.String(attribute="check.status")
    summary = fields.String(allow_none=True, attribute="check.summary")
    url = fields.String(allow_none=True, attribute="check.url")
    details = fields.Raw(allow_none=True)
    reported_by = fields.String()
    at = fields.DateTime(attribute="check.at")
    rollback = fields.Dict(allow_none=True)


class CheckQuerySchema(StrictSchema):
    revision = fields.String(validate=validate.Regexp(r"^[0-9a-fA-F]{4,40}$"))
    kind = query_name()
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    before = fields.Integer(**page_before)


class DeploymentCreateSchema(StrictSchema):
    revision = revision_field
    health = fields.String(
        required=True, validate=validate.OneOf(["healthy", "progressing", "degraded"])
    )


class DeploymentSchema(Schema):
    """Dumps a ``StageDeployment`` (answers.py): the report's fields come from ``deployment``."""

    app = fields.String()
    stage = fields.String()
    revision = fields.String(attribute="deployment.revision")
    health = fields.String(attribute="deployment.health")
    source = fields.String(attribute="deployment.source")
    at = fields.DateTime(attribute="deployment.at")


class HoldCreateSchema(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class FreezeCreateSchema(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    until = fields.AwareDateTime()


class FrozenSchema(Schema):
    """Dumps the ``Freeze`` a stage was just put under (the answer to freezing it)."""

    stage = fields.String()
    reason = fields.String()
    by = fields.String(metadata={"description": "who froze it"})
    until = fields.DateTime(allow_none=True, metadata={"description": "null: until thawed"})


class FreezeSchema(FrozenSchema):
    """Dumps a ``Freeze`` in force, with when it began."""

    at = fields.DateTime(allow_none=True)


class HeldSchema(Schema):
    """Dumps the ``Hold`` a stage was put on."""

    app = fields.String()
    stage = fields.String()
    reason = fields.String()
    by = fields.String(metadata={"description": "who put it on hold"})


class HoldReleasedSchema(Schema):
    app = fields.String()
    stage = fields.String()
    released = Boolean()


class ThawedSchema(Schema):
    stage = fields.String()
    frozen = Boolean()


class RejectionSchema(Schema):
    """Dumps a domain ``Rejection``: an image version rolled back, refused by promotions."""

    id = fields.Integer()
    app = fields.String()
    image = fields.String()
    tag = fields.String(allow_none=True)
    digest = fields.String(allow_none=True)
    reason = fields.String()
    by = fields.String()
    at = fields.DateTime()
    promotion = fields.Integer(
        attribute="promotion_id",
        allow_none=True,
        metadata={"description": "the promotion rolled back"},
    )


class RejectionReleasedSchema(Schema):
    released = fields.Integer(metadata={"description": "the released rejection's id"})


class RollbackSchema(StrictSchema):
    reason = fields.String(validate=validate.Length(max=2000))
