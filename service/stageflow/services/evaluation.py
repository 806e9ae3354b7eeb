"""Use cases of flag evaluation (OFREP): pick the flag set a token reads, and evaluate it.

Answers come from the flags file at the head revision, loaded once per blob into the reference
flagd evaluator and kept in ``sf.cache.evaluators``: a request costs the (TTL-cached) head lookup
and an in-memory evaluation, never a Git read or a database query beyond token authentication.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

from stageflow.domain.errors import FlagDocumentError, Forbidden, Unavailable
from stageflow.domain.evaluation import (
    FLAG_NOT_FOUND,
    GENERAL,
    PARSE_ERROR,
    TARGETING_KEY_MISSING,
    Evaluation,
    EvaluationRequest,
    EvaluationRequestError,
)
from stageflow.domain.flags import render_flag_document
from stageflow.domain.identity import ApiToken
from stageflow.domain.pipeline import App
from stageflow.services import stream_tickets
from stageflow.services.context import Stageflow
from stageflow.services.ports import FlagEvaluator
from stageflow.services.state import (
    empty_flag_document,
    file_notes,
    flags_path,
    outage_notes,
    snapshot,
)

__all__ = [
    "APP_HEADER",
    "READ_ROLE",
    "STAGE_HEADER",
    "BulkEvaluation",
    "FlagSet",
    "StreamEntries",
    "evaluate_flag",
    "evaluate_flags",
    "flag_set",
    "flag_set_notes",
]

# Headers that pick the app and stage when a token's scope leaves more than one.
APP_HEADER: Final = "X-Stageflow-App"
STAGE_HEADER: Final = "X-Stageflow-Stage"
READ_ROLE: Final = "client"


@dataclass(frozen=True)
class FlagSet:
    """The flags one app has in one stage at one revision, ready to evaluate."""

    app: str
    stage: str
    revision: str
    path: str
    evaluator: FlagEvaluator
    # files this flag set reads as their last valid version (a function of the revision)
    file_notes: list[str] = field(default_factory=list)

    @cached_property
    def static_answers(self) -> Mapping[str, Evaluation]:
        """The answers no context can change (disabled flags, flags without targeting), by key.

        A flag set lives as long as its revision, so these are evaluated once, not per request.
        """
        anyone = EvaluationRequest()
        return {
            key: self.evaluator.evaluate(key, anyone)
            for key in self.evaluator.flag_keys()
            if self.evaluator.is_static(key)
        }

    @cached_property
    def static_bulk(self) -> BulkEvaluation | None:
        """The bulk answer when every flag is static: the same bytes for every context."""
        keys = self.evaluator.flag_keys()
        if len(self.static_answers) != len(keys):
            return None
        return BulkEvaluation([self.static_answers[key] for key in keys], self.evaluator.metadata())


@dataclass(frozen=True)
class BulkEvaluation:
    """Every flag of a flag set evaluated for one context, with the ETag of that answer."""

    flags: Sequence[Evaluation]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the OFREP ``bulkEvaluationSuccess`` object (without ``eventStreams``)."""
        return {
            "flags": [answer.to_json() for answer in self.flags],
            "metadata": dict(self.metadata),
        }

    @cached_property
    def body(self) -> bytes:
        """Return the answer as compact JSON (``with_streams`` adds a token's streams)."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode("utf-8")

    @cached_property
    def etag(self) -> str:
        """Return a strong ETag of the answer itself: a hash of ``body``.

        It covers the flags and the context alike (the same context against the same flags
        gives the same answer), and also time-based rules, which a tag of the revision would miss.
        Hashing the bytes that are sent (rather than a second, key-sorted dump) serializes each
        answer once; the order of its keys is fixed by the flag set, so equal answers are equal
        bytes.
        """
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def with_streams(self, streams: StreamEntries | None) -> tuple[str, Callable[[], bytes]]:
        """The ETag and (made when sent) body of the answer a token receives.

        Its ``eventStreams`` carry the token's ticket, so they are not part of the cached body
        that every token of the app stage shares: they are spliced in as the last member, and
        the ETag takes a tag of them (one token's 304 never hands it another's URL).
        """
        if streams is None:
            return self.etag, lambda: self.body
        body = self.body

        def spliced() -> bytes:
            return b"".join((body[:-1], b',"eventStreams":', streams.json, b"}"))

        return f'{self.etag[:-1]}.{streams.tag}"', spliced


@dataclass(frozen=True)
class StreamEntries:
    """A token's ``eventStreams`` for one app stage: their JSON, and a tag of it for ETags."""

    json: bytes
    tag: str

    @classmethod
    def of(cls, entries: Sequence[Mapping[str, Any]]) -> StreamEntries:
        data = json.dumps(list(entries), separators=(",", ":")).encode("utf-8")
        return cls(data, hashlib.sha256(data).hexdigest()[:12])


def _choose(
    token: ApiToken,
    kind: str,
    asked: str | None,
    scoped: Sequence[str],
    known: Sequence[str],
    header: str,
) -> str:
    if asked is not None:
        if asked not in known:
            raise EvaluationRequestError(
                f"{header}: there is no {kind} {asked!r} in stageflow.yaml; the {kind}s are "
                f"{', '.join(known)}",
                error_code=GENERAL,
                details={kind: asked, "known": list(known)},
            )
        return asked
    candidates = [name for name in known if not scoped or name in scoped]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise Forbidden(
            f"token {token.name!r} is scoped to the {kind}s {', '.join(scoped)}, none of which "
            f"stageflow.yaml has (it has {', '.join(known)}); ask an admin for a token scoped to "
            f"one of those",
            code="out_of_scope",
        )
    raise EvaluationRequestError(
        f"token {token.name!r} may read the {kind}s {', '.join(candidates)}; say which one with "
        f"the header `{header}: <{kind}>`, or use a token scoped to exactly one {kind}",
        error_code=GENERAL,
        details={"header": header, "choices": candidates},
    )


def flag_set(
    sf: Stageflow,
    token: ApiToken,
    *,
    app: str | None = None,
    stage: str | None = None,
    config_etag: str | None = None,
) -> FlagSet:
    """Return the flag set a token evaluates: its scope (or the headers) pick app and stage.

    The token needs the ``client`` role (admins have every role). When its scope, read against
    stageflow.yaml, leaves exactly one app and one stage, those are used; otherwise ``app`` and
    ``stage`` (the ``X-Stageflow-App`` / ``X-Stageflow-Stage`` headers) must say which.
    ``config_etag`` (an event stream's ``etag``: a revision) makes the head be read afresh when
    it is not the cached one.
    """
    token.require(READ_ROLE)
    revision = sf.repo.head()
    if config_etag is not None and _refresh_for(config_etag.strip('"'), revision):
        # An event stream named a newer configuration than this process's cached head: look
        # at the remote now rather than answer with what the client was told is replaced.
        revision = sf.repo.head(fresh=True)
    # Keyed by revision: while the head stays put, a request reads nothing from the clone.
    pipeline = sf.cache.ofrep_pipelines.get(revision, lambda: snapshot(sf, revision).pipeline)
    app_name = _choose(token, "app", app, token.scope.apps, list(pipeline.apps), APP_HEADER)
    stage_name = _choose(
        token, "stage", stage, token.scope.stages, pipeline.stage_names, STAGE_HEADER
    )
    token.require(READ_ROLE, app=app_name, stage=stage_name)
    chosen = pipeline.app(app_name)
    return sf.cache.flag_sets.get(
        (revision, app_name, stage_name),
        lambda: FlagSet(
            app_name,
            stage_name,
            revision,
            flags_path(chosen, stage_name),
            _evaluator(sf, revision, chosen, stage_name),
            file_notes(sf, revision, app_name, stage_name),
        ),
    )


# What the event-stream server serves (stageflow.streams), and how long an idle client keeps
# its connection (ADR-0008's default).
STREAM_PATH: Final = "/ofrep/v1/event-stream"
INACTIVITY_SECONDS: Final = 120


def event_streams(sf: Stageflow, token: ApiToken, flags: FlagSet) -> StreamEntries | None:
    """The ``eventStreams`` a token's bulk answer names: its app stage's SSE endpoint, with a
    ticket (``services.stream_tickets``: what a browser's EventSource can carry), or None when
    streams are off (or, for now, when the ticket key cannot be read: clients poll meanwhile)."""
    origin = sf.event_streams
    if origin is None:
        return None
    return sf.cache.stream_entries.get_if_built(
        (token.id, flags.app, flags.stage),
        lambda: _stream_entries(sf, origin, token.id, flags.app, flags.stage),
    )


def _stream_entries(
    sf: Stageflow, origin: str, token_id: str, app: str, stage: str
) -> StreamEntries | None:
    ticket = stream_tickets.issue(sf, token_id, app, stage)
    if ticket is None:
        return None
    query = urllib.parse.urlencode({"app": app, "stage": stage, "ticket": ticket})
    return StreamEntries.of(
        [
            {
                "type": "sse",
                "endpoint": {"origin": origin, "requestUri": f"{STREAM_PATH}?{query}"},
                "inactivityDelaySec": INACTIVITY_SECONDS,
            }
        ]
    )


# A client chooses ``flagConfigEtag``: one whose re-fetches named other revisions each time could
# make every read ask the remote. Every client told of one change re-fetches within moments, so
# one fresh look a second per process serves them all.
_FRESH_EVERY: Final = 1.0
_last_fresh = [0.0]


def _refresh_for(etag: str, revision: str) -> bool:
    """Whether an event stream's ``etag`` calls for a fresh look at the remote's head."""
    if etag == revision or len(etag) != len(revision) or not _is_hex(etag):
        return False
    now = time.monotonic()
    if now - _last_fresh[0] < _FRESH_EVERY:
        return False
    _last_fresh[0] = now
    return True


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _evaluator(sf: Stageflow, revision: str, app: App, stage: str) -> FlagEvaluator:
    load = sf.codecs.flag_evaluator
    if load is None:
        raise Unavailable("flag evaluation is not configured in this Stageflow (no evaluator)")
    path = flags_path(app, stage)
    # A flags.json pushed broken is evaluated as its last valid version (file_notes says so).
    blob, _ = snapshot(sf, revision).flags_blob(app, stage)
    if blob is None:
        empty = render_flag_document(empty_flag_document(app.name)).encode("utf-8")
        return sf.cache.empty_evaluators.get(app.name, lambda: load(empty))
    try:
        return sf.cache.evaluators.get(blob, lambda: load(sf.repo.read_blob(blob)))
    except FlagDocumentError as exc:
        raise EvaluationRequestError(
            f"{path} at revision {revision[:12]}: {exc.message}; fix the file in the GitOps repo "
            f"(GET /api/v1/apps/{app.name}/stages/{stage}/flags shows it as committed)",
            error_code=PARSE_ERROR,
        ) from None


def flag_set_notes(sf: Stageflow, flags: FlagSet) -> list[str]:
    """Why answers from this flag set may not be the remote head's current state (usually [])."""
    return outage_notes(sf, flags.revision) + flags.file_notes


def evaluate_flag(flags: FlagSet, key: str, request: EvaluationRequest) -> Evaluation:
    """Evaluate one flag for one context, as flagd would from the committed file."""
    answer = flags.evaluator.evaluate(key, request)
    if answer.error_code == FLAG_NOT_FOUND:
        return Evaluation.failure(
            key,
            FLAG_NOT_FOUND,
            f"flag {key!r} is not defined in {flags.app}/{flags.stage} ({flags.path} at "
            f"{flags.revision[:12]}); POST /ofrep/v1/evaluate/flags lists the flags there",
        )
    if (
        not answer.failed
        and request.targeting_key is None
        and answer.reason == "DEFAULT"
        and flags.evaluator.needs_targeting_key(key)
    ):
        # flagd would quietly serve the default variant to everyone; say why instead.
        return Evaluation.failure(
            key,
            TARGETING_KEY_MISSING,
            f"flag {key!r} splits users by targetingKey (a fractional rollout) and the context "
            "has none; send context.targetingKey (a stable user or session id)",
        )
    return answer


def evaluate_flags(flags: FlagSet, request: EvaluationRequest) -> BulkEvaluation:
    """Evaluate every flag of the flag set for one context.

    Only flags with targeting rules are evaluated per request; the others' answers (and, when
    all are static, the whole answer with its bytes and ETag) were made once for the flag set.
    """
    if flags.static_bulk is not None:
        return flags.static_bulk
    static = flags.static_answers
    return BulkEvaluation(
        [
            static.get(key) or evaluate_flag(flags, key, request)
            for key in flags.evaluator.flag_keys()
        ],
        flags.evaluator.metadata(),
    )
