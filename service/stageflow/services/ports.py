"""Ports: what the use cases need from the outside world, as Protocols named for their role."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypedDict, TypeVar, Unpack

from stageflow.domain.evaluation import Evaluation, EvaluationRequest
from stageflow.domain.events import Event
from stageflow.domain.evidence import Evidence
from stageflow.domain.flags import FlagDocument
from stageflow.domain.gates import (
    CheckResult,
    Deployment,
    Freeze,
    Hold,
    MetricReading,
    MetricSeries,
)
from stageflow.domain.hooks import Restore
from stageflow.domain.identity import ApiToken, Scope
from stageflow.domain.images import ImageRef
from stageflow.domain.ledger import AuditEntry, IdempotentAnswer
from stageflow.domain.notify import Delivery, NotifyTarget
from stageflow.domain.pipeline import Pipeline
from stageflow.domain.policies.admission import Program
from stageflow.domain.promotions import Approval, Promotion, Rejection

T = TypeVar("T")


@dataclass(frozen=True)
class Change(Generic[T]):
    """What an operation did to the working tree: the commit message and the use case's result."""

    message: str
    result: T
    # Trailers the operation adds to the caller's (what it did: action, app, stage), so that
    # the ledger can be rebuilt from the commit should the process die before recording it.
    trailers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Committed(Generic[T]):
    """A pushed (or empty) change: ``revision`` is the new head, or the unchanged base."""

    revision: str
    result: T
    committed: bool
    # When the push landed, as the service's clock saw it (set by services.changes).
    pushed_at: datetime | None = None


@dataclass(frozen=True)
class Outage:
    """The Git remote could not be reached: since when (Unix time) and what went wrong."""

    since: float
    message: str


class Workspace(Protocol):
    """The files of the GitOps repo at one base revision, for an operation to read and write."""

    revision: str

    def read(self, path: str) -> str | None: ...

    def unwritten_blob(self, path: str) -> str | None:
        """The blob id of ``path`` at ``revision`` while the operation has not written it.

        None once it has, or when the revision has no such file: then ``read`` it.
        """
        ...

    def write(self, path: str, text: str) -> None: ...

    def delete(self, path: str) -> None: ...

    def directory(self, path: str) -> Path: ...


class GitRepo(Protocol):
    display_url: str
    branch: str

    def head(self, *, fresh: bool = False) -> str:
        """The remote's head; while the remote is unreachable, the last head this process saw."""
        ...

    def outage(self) -> Outage | None:
        """Why and since when ``head`` answers from memory; None while the remote answers."""
        ...

    def resolve(self, revision: str) -> str: ...

    def blob_id(self, revision: str, path: str) -> str | None: ...

    def read_blob(self, blob_id: str) -> bytes: ...

    def read(self, revision: str, path: str) -> str | None: ...

    def last_change(self, revision: str, paths: Iterable[str]) -> str | None: ...

    def tree_id(self, revision: str, path: str) -> str | None: ...

    def tree_entries(self, revision: str, path: str) -> dict[str, str]: ...

    def find_trailer(self, key: str, value: str, *, limit: int = 2000) -> str | None: ...

    def parent_of(self, revision: str) -> str | None: ...

    def change(
        self,
        operation: Callable[[Any], Change[T]],
        *,
        actor: str,
        trailers: Mapping[str, str],
    ) -> Committed[T]: ...


@dataclass(frozen=True)
class CommitFacts:
    """A commit of the tracked branch as the settler reads it: its trailers and time."""

    revision: str
    at: datetime
    trailers: Mapping[str, str]


class History(Protocol):
    """The tracked branch's commits that carry Stageflow trailers (the ledger's truth)."""

    def stageflow_commits(self, since: str | None, head: str, *, limit: int) -> list[CommitFacts]:
        """Return commits after ``since`` up to ``head``, oldest first (the last ``limit``)."""
        ...

    def trailers_of(self, revision: str) -> Mapping[str, str]: ...

    def message_of(self, revision: str) -> str:
        """The whole commit message of ``revision`` (subject, body and trailers)."""
        ...


class Renderer(Protocol):
    def render(self, directory: Path) -> str: ...


class KustomizationDoc(Protocol):
    def images(self) -> list[ImageRef]: ...

    def set_image(self, ref: ImageRef, *, clear_other: bool = False) -> bool: ...

    def generated_only(self, filename: str, overlay: str, base: str) -> frozenset[str] | None: ...

    def render(self) -> str: ...


class FlagEvaluator(Protocol):
    """The flags of one committed flagd document, loaded into the reference flagd evaluator."""

    def flag_keys(self) -> Sequence[str]: ...

    def metadata(self) -> Mapping[str, Any]: ...

    def needs_targeting_key(self, key: str) -> bool: ...

    # True when no context can change the flag's answer (disabled, or no targeting rules)
    def is_static(self, key: str) -> bool: ...

    def evaluate(self, key: str, request: EvaluationRequest) -> Evaluation: ...


class PolicyTools(Protocol):
    """The libraries behind manifest policies: YAML streams, Kubernetes schemas, CEL."""

    def parse_manifests(self, text: str) -> list[dict[str, Any]]: ...

    def compile_cel(self, expression: str) -> Program:
        """Compile a CEL expression; ValueError says what does not parse."""
        ...

    def schema_findings(
        self, objects: Sequence[Mapping[str, Any]], version: str, strict: bool
    ) -> tuple[list[tuple[int, str]], list[str]]:
        """Check objects against the schemas: (index, problem) pairs, and unknown kinds."""
        ...


@dataclass(frozen=True)
class Codecs:
    """Parsers and validators that need third-party libraries (YAML, JSON Schema)."""

    load_pipeline: Callable[[str], Pipeline]
    parse_kustomization: Callable[[str, str], KustomizationDoc]
    # validate_flags(doc, only): check the named flags (None: all) and the document-level parts
    validate_flags: Callable[[FlagDocument, Collection[str] | None], None]
    # flag_evaluator(flags.json bytes): the document loaded into the reference flagd evaluator
    flag_evaluator: Callable[[bytes], FlagEvaluator] | None = None
    # trial_evaluate(doc, key): evaluate the flag's targeting as flagd would with a few contexts;
    # raises FlagDocumentError when flagd fails or answers something that is not a variant
    trial_evaluate: Callable[[FlagDocument, str], None] | None = None
    # manifest policies (issue #17); None: a pipeline that switches policies on cannot write
    policy_tools: PolicyTools | None = None


class AuditLog(Protocol):
    def add(self, entry: AuditEntry) -> None: ...

    def recorded_changes(self, change_ids: Sequence[str]) -> set[str]: ...

    def list(self, **query: Unpack[AuditFilter]) -> Sequence[AuditEntry]:
        """The entries the query names, newest first."""
        ...


class TokenStore(Protocol):
    def add(self, token: ApiToken, secret_hash: str) -> None: ...

    def by_hash(self, secret_hash: str) -> ApiToken | None: ...

    def used_since(self, since: datetime, limit: int) -> Sequence[tuple[str, ApiToken]]: ...

    def get(self, token_id: str) -> ApiToken | None: ...

    def list(self) -> Sequence[ApiToken]: ...

    def revoke(self, token_id: str, at: datetime) -> bool: ...

    def touch(self, token_id: str, at: datetime) -> None: ...

    def count_admins(self) -> int: ...


class IdempotencyStore(Protocol):
    def get(self, owner: str, key: str) -> IdempotentAnswer | None: ...

    def in_progress(self, limit: int = 500) -> Sequence[IdempotentAnswer]: ...

    def begin(
        self, owner: str, key: str, fingerprint: str, at: datetime, claimed_by: str | None = None
    ) -> bool: ...

    def finish(self, owner: str, key: str, status: int, body: Any, at: datetime) -> None: ...

    def forget(self, owner: str, key: str) -> None: ...

    def free_claim(self, owner: str, key: str, claimed_by: str | None) -> bool: ...


class Replicas(Protocol):
    def beat(self, name: str, at: datetime) -> None: ...

    def seen(self, name: str) -> datetime | None: ...

    def forget_older(self, than: datetime) -> int: ...


class EventLog(Protocol):
    """The outbox. Events are added by the audit log itself (``domain.events.events_of``)."""

    def add(self, event: Event) -> None: ...

    def after(
        self,
        after_id: int = 0,
        *,
        limit: int = 100,
        kinds: Sequence[str] = (),
        apps: Sequence[str] = (),
    ) -> Sequence[Event]: ...

    def last_id(self) -> int: ...

    def get_many(self, ids: Sequence[int]) -> Sequence[Event]: ...

    def since(
        self, at: datetime, *, kinds: Sequence[str], app: str, stage: str | None = None
    ) -> Sequence[Event]: ...

    def first_with_revision(self, kind: str, revisions: Sequence[str]) -> dict[str, datetime]: ...


class EvidenceChain(Protocol):
    def tail(self) -> str | None: ...

    def add(self, evidence: Evidence) -> None: ...

    def get(self, promotion_id: int) -> Evidence | None: ...

    def chain(self, after_id: int = 0, limit: int = 500) -> Sequence[Evidence]: ...

    def recorded(self, promotion_ids: Sequence[int]) -> set[int]: ...


class Notifications(Protocol):
    """Deliveries of events to notification targets, and how far the event log was read."""

    def cursor(self, name: str) -> int: ...

    def move_cursor(self, name: str, event_id: int) -> None: ...

    def add(self, delivery: Delivery) -> None: ...

    def made(self, event_ids: Sequence[int]) -> set[tuple[int, str]]:
        """The (event id, target) pairs of ``event_ids`` that have a delivery already."""
        ...

    def heads(self, now: datetime, *, limit: int = 500) -> Sequence[Delivery]: ...

    def claim(self, delivery_id: int, holder: str, now: datetime, until: datetime) -> bool: ...

    def settle(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_at: datetime,
        delivered_at: datetime | None,
        error: str | None,
    ) -> None: ...

    def list(
        self,
        *,
        status: str | None = None,
        target: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[Delivery]: ...


class NotificationSender(Protocol):
    """Sends one event to one target; raises ``DeliveryFailed`` saying why it did not arrive."""

    def send(self, target: NotifyTarget, event: Event, link: str) -> None: ...


class MetricsSource(Protocol):
    configured: bool

    def query(self, promql: str) -> MetricReading: ...

    def query_range(self, promql: str, start: float, end: float, step: float) -> MetricSeries:
        """The first series of a range query over ``[start, end]`` (unix seconds)."""
        ...


class PromotionQuery(TypedDict, total=False):
    """Which promotions ``Promotions.list`` answers, newest first (each key given narrows it)."""

    app: str | None
    target: str | None
    source: str | None
    statuses: Sequence[str]
    before_id: int | None
    limit: int  # default 100
    apps: Sequence[str]  # a scope's apps (empty: every app)
    targets: Sequence[str]  # a scope's stages (empty: every stage)


class AuditFilter(TypedDict, total=False):
    """Which entries ``AuditLog.list`` answers, newest first (each key given narrows it)."""

    app: str | None
    stage: str | None
    actor: str | None
    before_id: int | None
    limit: int  # default 100
    scope: Scope | None
    own_actor: str | None  # with a limited scope: the entries of this actor are inside it too


class Promotions(Protocol):
    def add(self, promotion: Promotion) -> Promotion: ...

    def get(self, promotion_id: int, *, for_update: bool = False) -> Promotion | None: ...

    def save(self, promotion: Promotion, *, expected_status: str | None = None) -> bool: ...

    def list(self, **query: Unpack[PromotionQuery]) -> Sequence[Promotion]:
        """The promotions the query names, newest first."""
        ...

    def add_approval(self, promotion_id: int, approval: Approval) -> bool: ...


class Checks(Protocol):
    def add(
        self, app: str, stage: str, check: CheckResult, details: Any, reported_by: str
    ) -> CheckResult: ...

    def for_content(self, app: str, stage: str, content: str) -> Sequence[CheckResult]: ...

    def for_contents(
        self, app: str, contents: Mapping[str, str]
    ) -> Mapping[str, Sequence[CheckResult]]: ...

    def list(
        self,
        app: str,
        stage: str,
        *,
        revision: str | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[CheckResult, Any, str]]: ...


class Deployments(Protocol):
    def add(self, app: str, stage: str, deployment: Deployment, reported_by: str) -> int: ...

    def recent(self, app: str, stage: str, limit: int = 200) -> Sequence[Deployment]: ...

    def latest(self, app: str, stages: Iterable[str]) -> Mapping[str, Deployment]: ...


class Freezes(Protocol):
    def active(self, stage: str) -> Sequence[Freeze]: ...

    def add(self, freeze: Freeze) -> None: ...

    def release(self, stage: str, by: str, at: datetime) -> int: ...


class Holds(Protocol):
    def active(self, app: str, stage: str) -> Hold | None: ...

    def active_in(self, app: str) -> Mapping[str, Hold]: ...

    def add(self, hold: Hold) -> None: ...

    def release(self, app: str, stage: str, by: str, at: datetime) -> int: ...


class Rejections(Protocol):
    def add(self, rejection: Rejection) -> None: ...

    def active(self, app: str) -> Sequence[Rejection]: ...

    def release(self, rejection_id: int, app: str, by: str, at: datetime) -> int: ...


class Restores(Protocol):
    """When each rollback's revert was pushed, its controller told, its stage healthy again."""

    def add(self, restore: Restore) -> None: ...

    def get(self, promotion_id: int) -> Restore | None: ...

    def told(self, revision: str, at: datetime) -> int:
        """Note the first delivered controller hook for a revert ``revision``; rows moved."""
        ...

    def healthy(self, app: str, stage: str, content: str, at: datetime) -> int:
        """Note a healthy report of a restored state (reports from before the push are not)."""
        ...


class ControllerNotifier(Protocol):
    """Tells the GitOps controllers (Argo CD, Flux) of the stages a commit changed, at once.

    ``pushed`` only queues: the delivery runs off the request path, and a controller that is
    down or slow neither delays nor fails the write that pushed.
    """

    def pushed(self, revision: str, at: datetime) -> None: ...


class ServerKeys(Protocol):
    def claim(self, name: str, secret: str, at: datetime) -> str: ...


class UnitOfWork(Protocol):
    audit: AuditLog
    tokens: TokenStore
    idempotency: IdempotencyStore
    promotions: Promotions
    checks: Checks
    deployments: Deployments
    freezes: Freezes
    holds: Holds
    rejections: Rejections
    replicas: Replicas
    server_keys: ServerKeys
    events: EventLog
    evidence: EvidenceChain
    notifications: Notifications
    restores: Restores

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    # changes whenever deployment reports, checks or holds change (the ledger part of app_view)
    def serialize(self, name: str) -> None:
        """Hold ``name`` until the transaction ends (other processes doing the same wait)."""
        ...

    def state_version(self) -> Hashable: ...
