"""Request and response bodies (marshmallow): the OpenAPI document is built from these."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate, validates_schema

from stageflow.domain import events as event_kinds
from stageflow.domain.actors import SYSTEM_ACTORS, is_system_actor
from stageflow.domain.flags import FLAG_KEY_RE, LIFECYCLES, STATES
from stageflow.domain.identity import ROLES
from stageflow.domain.notify import PENDING


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class Boolean(fields.Boolean):
    """JSON ``true`` or ``false`` only: not ``1``, ``"true"`` or ``"yes"`` (marshmallow's default).

    Every boolean of the API is this one, so a client's ``"false"`` can never turn a flag on.
    """

    default_error_messages = {"invalid": "send true or false (JSON booleans, not strings or 0/1)"}

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


class Timestamp(fields.String):
    """A time as ISO 8601 text, documented as the plain string it has always been."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return value.isoformat() if isinstance(value, datetime) else value


# Page cursors are row ids: an INTEGER column holds up to 2**31 - 1.
page_before = {
    "validate": validate.Range(min=1, max=2**31 - 1),
    "metadata": {"description": "page: entries with an id below this one"},
}


class AnyValue(fields.Raw):
    """Any JSON value (flag variants may be booleans, strings, numbers or objects)."""


class PolicyWarningSchema(Schema):
    policy = fields.String()
    object = fields.String(metadata={"description": "kind/namespace/name"})
    message = fields.String()
    action = fields.String()
    stage = fields.String()
    allowed = fields.String(
        metadata={
            "description": "why it was let through: warn, not_worse (already there) or rollback"
        }
    )


class OmittedWhenEmpty:
    """Leaves the field out of the answer when its value is empty (or None), as the flagd file
    leaves out a flag's empty ``targeting``; mixed into a field class."""

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = missing) -> Any:
        value = super().get_value(obj, attr, accessor, default)  # type: ignore[misc]
        return value if value else missing


class OmittedWhenEmptyList(OmittedWhenEmpty, fields.List):
    """A list left out of the answer when it is empty."""


class OmittedWhenEmptyDict(OmittedWhenEmpty, fields.Dict):
    """An object left out of the answer when it is empty."""


def _warnings() -> fields.List:
    return OmittedWhenEmptyList(
        fields.Nested(PolicyWarningSchema),
        metadata={"description": "policy violations reported but not refused (absent: none)"},
    )


class RevisionSchema(Schema):
    """Dumps a ``Written`` (answers.py) whose answer is its revision alone."""

    revision = fields.String(required=True, metadata={"description": "the pushed commit SHA"})
    warnings = _warnings()


# -- app state --------------------------------------------------------------------------------


class ImageSchema(Schema):
    name = fields.String()
    tag = fields.String(allow_none=True)
    digest = fields.String(allow_none=True)


class FlagStateSchema(Schema):
    enabled = Boolean()
    variant = fields.String(allow_none=True)
    lifecycle = fields.String(allow_none=True)


class StageStateSchema(Schema):
    stage = fields.String()
    namespace = fields.String()
    images = fields.List(fields.Nested(ImageSchema))
    flags = fields.Dict(keys=fields.String(), values=fields.Nested(FlagStateSchema))
    overlay_revision = fields.String(allow_none=True)
    deployed = fields.Dict(
        allow_none=True,
        metadata={"description": "{revision, health, at, source, in_sync}: what runs"},
    )
    checks = fields.List(fields.Dict(), metadata={"description": "latest result per kind"})
    hold = fields.Dict(allow_none=True, metadata={"description": "{reason, by} when on hold"})


class AppStateSchema(Schema):
    name = fields.String()
    revision = fields.String()
    stages = fields.List(fields.Nested(StageStateSchema))


# -- flags ------------------------------------------------------------------------------------

flag_key = fields.String(
    required=True,
    validate=validate.Regexp(
        FLAG_KEY_RE,
        error="flag keys start with a letter and hold up to 128 letters, digits, _ . or -",
    ),
)


class FlagSchema(Schema):
    """Dumps a domain ``Flag`` as the flagd file holds it, keyed (no empty targeting or
    metadata)."""

    key = fields.String()
    state = fields.String()
    variants = fields.Dict()
    defaultVariant = fields.String(attribute="default_variant", allow_none=True)
    targeting = OmittedWhenEmptyDict(metadata={"description": "absent: none"})
    metadata = OmittedWhenEmptyDict(metadata={"description": "absent: none"})


class FlagCreateSchema(StrictSchema):
    key = flag_key
    description = fields.String(validate=validate.Length(max=1000))
    lifecycle = fields.String(validate=validate.OneOf(LIFECYCLES))
    variants = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=128)),
        values=AnyValue(allow_none=False),
    )
    defaultVariant = fields.String()


class FlagCreatedSchema(Schema):
    """Dumps a ``Written`` (answers.py) that made a flag."""

    revision = fields.String(metadata={"description": "the pushed commit SHA"})
    flag = fields.Nested(FlagSchema, attribute="made")
    warnings = _warnings()


class FlagEditSchema(StrictSchema):
    lifecycle = fields.String(validate=validate.OneOf(LIFECYCLES))
    description = fields.String(allow_none=True, validate=validate.Length(max=1000))

    @validates_schema
    def not_empty(self, data: dict, **_: object) -> None:
        if not data:
            raise ValidationError("send at least one of lifecycle, description", "_schema")


class StageFlagPatchSchema(StrictSchema):
    enabled = Boolean()
    defaultVariant = fields.String(allow_none=True)
    state = fields.String(validate=validate.OneOf(STATES))
    targeting = fields.Dict(allow_none=True)

    @validates_schema
    def not_empty(self, data: dict, **_: object) -> None:
        if not data:
            raise ValidationError(
                "send at least one of enabled, defaultVariant, state, targeting", "_schema"
            )
        if "enabled" in data and "defaultVariant" in data:
            raise ValidationError("send enabled or defaultVariant, not both", "_schema")


class FlagMatrixCellSchema(Schema):
    enabled = Boolean()
    variant = fields.String(allow_none=True)
    state = fields.String()


class FlagMatrixRowSchema(Schema):
    lifecycle = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    stages = fields.Dict(
        keys=fields.String(), values=fields.Nested(FlagMatrixCellSchema, allow_none=True)
    )


# -- images -----------------------------------------------------------------------------------


class ImageSetSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    tag = fields.String(validate=validate.Length(min=1, max=128))
    digest = fields.String(validate=validate.Length(min=1, max=100))

    @validates_schema
    def tag_or_digest(self, data: dict, **_: object) -> None:
        if "tag" not in data and "digest" not in data:
            raise ValidationError("send a tag, a digest, or both", "_schema")


class ImageSetResultSchema(Schema):
    """Dumps a ``Written`` (answers.py) that set an image."""

    revision = fields.String(metadata={"description": "the pushed commit SHA"})
    image = fields.Nested(ImageSchema, attribute="made")
    warnings = _warnings()


# -- audit ------------------------------------------------------------------------------------


# Names in query strings: as long as a name can be (apps and stages are DNS labels, owners 128).
def query_name(max_length: int = 63) -> fields.String:
    return fields.String(validate=validate.Length(max=max_length))


class AuditQuerySchema(StrictSchema):
    app = query_name()
    stage = query_name()
    actor = query_name(128)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    before = fields.Integer(**page_before)


class AuditEntrySchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = fields.String()
    action = fields.String()
    app = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    target = fields.String(allow_none=True)
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)
    revision = fields.String(allow_none=True)
    change_id = fields.String(allow_none=True)


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema))
    next = fields.Integer(allow_none=True, metadata={"description": "pass as `before` for more"})


# -- tokens -----------------------------------------------------------------------------------


class ScopeSchema(StrictSchema):
    apps = fields.List(fields.String(), load_default=list)
    stages = fields.List(fields.String(), load_default=list)


def not_a_system_actor(owner: str) -> None:
    if is_system_actor(owner):
        raise ValidationError(
            f"{owner!r} is reserved: Stageflow writes {', '.join(SYSTEM_ACTORS)} as its own actor "
            "into audit entries and commit trailers; choose the person's or the job's name"
        )


class TokenCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    owner = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=128), not_a_system_actor],
        metadata={"description": f"who acts; not one of Stageflow's own: {SYSTEM_ACTORS}"},
    )
    roles = fields.List(
        fields.String(validate=validate.OneOf(ROLES)),
        required=True,
        validate=validate.Length(min=1),
    )
    scope = fields.Nested(ScopeSchema)
    expires_at = fields.AwareDateTime(default_timezone=None)


class TokenScopeSchema(Schema):
    apps = fields.List(fields.String(), metadata={"description": "empty: every app"})
    stages = fields.List(fields.String(), metadata={"description": "empty: every stage"})


class TokenSchema(Schema):
    """Dumps a ``ShownToken`` (answers.py): the token's own fields come from ``token``."""

    id = fields.String(attribute="token.id")
    name = fields.String(attribute="token.name")
    owner = fields.String(attribute="token.owner")
    roles = fields.Function(
        lambda shown: sorted(shown.token.roles),
        metadata={"type": "array", "items": {"type": "string", "enum": list(ROLES)}},
    )
    scope = fields.Nested(TokenScopeSchema, attribute="token.scope")
    created_at = fields.DateTime(attribute="token.created_at")
    created_by = fields.String(attribute="token.created_by", allow_none=True)
    expires_at = fields.DateTime(attribute="token.expires_at", allow_none=True)
    revoked_at = fields.DateTime(attribute="token.revoked_at", allow_none=True)
    last_used_at = fields.DateTime(
        attribute="token.last_used_at",
        allow_none=True,
        metadata={"description": "when the token last authenticated (to the minute)"},
    )
    active = Boolean(metadata={"description": "neither revoked nor expired at the answer's time"})


class TokenCreatedSchema(TokenSchema):
    token = fields.String(
        attribute="secret", metadata={"description": "the secret; shown only in this answer"}
    )


# -- events, evidence, DORA ------------------------------------------------------------------


class EventQuerySchema(StrictSchema):
    after = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=2**31 - 1),
        metadata={"description": "page: events with an id above this one (oldest first)"},
    )
    kind = fields.List(fields.String(validate=validate.OneOf(event_kinds.KINDS)))
    app = query_name()
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class EventSchema(Schema):
    """Dumps a domain ``Event``."""

    id = fields.Integer()
    kind = fields.String()
    at = Timestamp()
    actor = fields.String()
    app = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    revision = fields.String(allow_none=True)
    data = fields.Dict()


class EventPageSchema(Schema):
    """Dumps a ``services.events.Page``."""

    items = fields.List(fields.Nested(EventSchema))
    next = fields.Integer(allow_none=True, metadata={"description": "pass as `after` for more"})


class EvidenceSchema(Schema):
    """Dumps a domain ``Evidence``: its stored text as it is and parsed."""

    id = fields.Integer()
    promotion_id = fields.Integer()
    at = Timestamp()
    record = fields.Function(
        lambda found: json.loads(found.record),
        metadata={"type": "object", "description": "what the promotion was based on"},
    )
    record_json = fields.String(
        attribute="record",
        metadata={"description": "the record's exact stored text, which the digest covers"},
    )
    digest = fields.String(
        metadata={"description": 'sha256(previous_digest + "\\n" + record_json)'}
    )
    previous_digest = fields.String()


class EvidenceQuerySchema(StrictSchema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=1000))


class EvidencePageSchema(Schema):
    """Dumps an ``answers.Page`` of ``Evidence``."""

    items = fields.List(fields.Nested(EvidenceSchema))
    next = fields.Integer(allow_none=True, metadata={"description": "pass as `after` for more"})


class DoraQuerySchema(StrictSchema):
    stage = query_name()
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=3650))


class DoraSchema(Schema):
    app = fields.String()
    stage = fields.String()
    days = fields.Integer()
    since = fields.String()
    until = fields.String()
    deployment_frequency = fields.Dict()
    lead_time_seconds = fields.Dict()
    change_failure_rate = fields.Dict()
    time_to_restore_seconds = fields.Dict()


class NotificationQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(("pending", "delivered", "failed")))
    target = query_name()
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    before = fields.Integer(**page_before)


def _next_attempt(delivery: Any) -> str | None:
    return delivery.next_at.isoformat() if delivery.status == PENDING else None


class NotificationSchema(Schema):
    """Dumps a domain ``Delivery``; ``next_at`` only while it is pending."""

    id = fields.Integer()
    event = fields.Function(
        lambda delivery: delivery.event_id,
        metadata={"type": "integer", "description": "the id of the event it tells of"},
    )
    event_id = fields.Integer(metadata={"description": "the same as `event`"})
    target = fields.String()
    kind = fields.String()
    app = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "pending | delivered | failed"})
    attempts = fields.Integer()
    created_at = Timestamp()
    next_attempt_at = fields.Function(
        _next_attempt,
        metadata={"type": "string", "nullable": True, "description": "the next try (pending)"},
    )
    next_at = fields.Function(
        _next_attempt,
        metadata={
            "type": "string",
            "nullable": True,
            "description": "the same as `next_attempt_at`",
        },
    )
    delivered_at = Timestamp(allow_none=True)
    last_error = fields.String(allow_none=True)


class NotificationPageSchema(Schema):
    """Dumps an ``answers.Page`` of ``Delivery``."""

    items = fields.List(fields.Nested(NotificationSchema))
    next = fields.Integer(allow_none=True, metadata={"description": "pass as `before` for more"})
