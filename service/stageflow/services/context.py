"""What every use case is handed: the ports, built once by bootstrap, plus the typed memos."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from stageflow.domain.errors import Invalid
from stageflow.domain.flags import FlagDocument, RenderedDocument
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import Pipeline
from stageflow.services.limits import RateLimiter
from stageflow.services.memos import SMALL_ENTRY, Memo, MemoBudget
from stageflow.services.ports import (
    Codecs,
    ControllerNotifier,
    FlagEvaluator,
    GitRepo,
    History,
    MetricsSource,
    Renderer,
    UnitOfWork,
)

if TYPE_CHECKING:  # the modules that use these memos import this one
    from stageflow.services.evaluation import FlagSet, StreamEntries
    from stageflow.services.state import FileProblem

__all__ = [
    "PARSED_BYTES_PER_SOURCE_BYTE",
    "SMALL_ENTRY",
    "InFlight",
    "Outage",
    "ParseCache",
    "Stageflow",
    "utcnow",
]

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


# What one byte of JSON source takes once parsed into Python objects (dicts, strings, frozen
# dataclasses): measured about 4x for a 5,000-flag flagd document, and 4.7x for flagd's evaluator.
PARSED_BYTES_PER_SOURCE_BYTE = 5

BlobId = str  # a Git blob SHA: what a parse is keyed by, since the bytes behind it never change
Revision = str  # a commit SHA: what a view of the desired state is keyed by
# A file pushed broken, read as its last valid version: (that revision, its blob, the parse).
LastValid = tuple[Revision, BlobId | None, T]
# What an app looks like in each stage at a revision: (the stage's part of the view, its content).
AppDesired = tuple[tuple[dict[str, Any], str], ...]
# What a flags-only render of an overlay depends on: the overlay, its other files (name, blob id)
# as committed, and the base's tree.
RenderInputs = tuple[str, tuple[tuple[str, str], ...], str | None]


class ParseCache(MemoBudget):
    """Every memo of one Stageflow: parsed blobs, views per revision, and what writes reuse.

    One family per kind of value, each typed; they share the budget's bounds and LRU order (see
    ``MemoBudget``), so a large flag document pushes out old views as it would old documents.
    """

    def __init__(self, size: int = 512, max_weight: int = 64 * 1024 * 1024) -> None:
        super().__init__(size, max_weight)
        # Files parsed by blob id, and the error of a blob that does not parse (services.state).
        self.flags: Memo[BlobId, FlagDocument] = Memo("flags", self)
        self.invalid_flags: Memo[BlobId, Invalid] = Memo("flags-invalid", self)
        self.pipelines: Memo[BlobId, Pipeline] = Memo("pipeline", self)
        self.invalid_pipelines: Memo[BlobId, Invalid] = Memo("pipeline-invalid", self)
        self.images: Memo[BlobId, list[ImageRef]] = Memo("images", self)
        # The last valid version of a file that is broken at a revision (services.state).
        self.last_valid_flags: Memo[tuple[Revision, str], LastValid[FlagDocument] | None] = Memo(
            "last-valid-flags", self
        )
        self.last_valid_pipeline: Memo[Revision, LastValid[Pipeline] | None] = Memo(
            "last-valid-pipeline", self
        )
        # Views, each a function of the revision (services.state): (revision, app[, stage]).
        self.file_notes: Memo[tuple[Revision, str, str | None], list[str]] = Memo(
            "stale-notes", self
        )
        self.head_problems: Memo[Revision, list[FileProblem]] = Memo("head-problems", self)
        self.app_desired: Memo[tuple[Revision, str], AppDesired] = Memo("app-view", self)
        # ... and of the ledger's state version too: (revision, app, version).
        self.app_states: Memo[tuple[Revision, str, Hashable], dict[str, Any]] = Memo(
            "app-state", self
        )
        self.matrices: Memo[tuple[Revision, str], dict[str, Any]] = Memo("matrix", self)
        # Their JSON bodies by (ETag, app) (api.reads).
        self.app_state_json: Memo[tuple[str, str], bytes] = Memo("app-state-json", self)
        self.matrix_json: Memo[tuple[str, str], bytes] = Memo("matrix-json", self)
        # What writes reuse (services.flags): the last document written to a path with its
        # text, the overlay files a flags-only render reads, and the inputs proven to render.
        self.flags_texts: Memo[str, RenderedDocument] = Memo("flags-text", self)
        self.generated_only: Memo[tuple[BlobId, str], frozenset[str] | None] = Memo(
            "generated-only", self
        )
        self.render_proofs: Memo[RenderInputs, bool] = Memo("rendered", self)
        # Flag evaluation (services.evaluation): per head revision, and evaluators per blob.
        self.ofrep_pipelines: Memo[Revision, Pipeline] = Memo("ofrep-pipeline", self)
        self.flag_sets: Memo[tuple[Revision, str, str], FlagSet] = Memo("ofrep-flag-set", self)
        # A token's `eventStreams` in an app stage: (token id, app, stage).
        self.stream_entries: Memo[tuple[str, str, str], StreamEntries] = Memo(
            "ofrep-event-streams", self
        )
        self.evaluators: Memo[BlobId, FlagEvaluator] = Memo("flagd", self)
        self.empty_evaluators: Memo[str, FlagEvaluator] = Memo("flagd-empty", self)


class Outage:
    """Whether the ledger just failed: callers that can do without it skip it meanwhile.

    After a failure, ``skip`` answers True for ``retry_after`` seconds; then it lets one caller
    try again (the others keep skipping). The settler probes the ledger far more often in the
    background and calls ``recovered`` as soon as it answers, so requests do not wait for a
    frozen database's timeout again and again, and the ledger is the truth again at once.
    """

    def __init__(self, retry_after: float = 30.0) -> None:
        self.retry_after = retry_after
        self._until = 0.0
        self._lock = threading.Lock()

    def skip(self) -> bool:
        if not self._until:
            return False
        with self._lock:
            now = time.monotonic()
            if now < self._until:
                return True
            self._until = now + self.retry_after  # this caller probes; the others skip
            return False

    @property
    def known(self) -> bool:
        """True while the last failure has not been followed by a success."""
        return bool(self._until)

    def failed(self) -> None:
        with self._lock:
            self._until = time.monotonic() + self.retry_after

    def recovered(self) -> None:
        self._until = 0.0


class InFlight:
    """What this process is working on now: promotions being applied, requests being served.

    The settler of this process leaves these alone; anything of this process that is *not*
    here (a request that died, a ledger write that failed after the push) it settles.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        with self._lock:
            self._counts[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[key] -= 1
                if not self._counts[key]:
                    del self._counts[key]

    def __contains__(self, key: object) -> bool:
        return key in self._counts


@dataclass
class Stageflow:
    """The composition the use cases run against (see ``bootstrap.build``)."""

    repo: GitRepo
    renderer: Renderer
    codecs: Codecs
    uow: Callable[[], UnitOfWork]
    metrics: MetricsSource | None = None
    clock: Callable[[], datetime] = utcnow
    cache: ParseCache = field(default_factory=ParseCache)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # Authenticated tokens by secret hash (services.tokens); per instance, because a token's
    # secret means a different token in another database.
    token_cache: dict[str, Any] = field(default_factory=dict)
    # Failed authentications per client address (services.tokens); None: not limited.
    auth_failures: RateLimiter | None = None
    # While the ledger is unreachable, tokens verified within this many seconds still
    # authenticate (services.tokens); the outage state says when to ask the ledger again.
    token_outage_grace: float = 0.0
    ledger_outage: Outage = field(default_factory=Outage)
    # Tokens any process used lately, by secret hash, with when this process read them: what
    # it may serve during an outage even if it never saw them itself (services.tokens).
    token_fallback: dict[str, Any] = field(default_factory=dict)
    # Stageflow's commits with their trailers (the settler's truth); None: nothing to settle.
    history: History | None = None
    in_flight: InFlight = field(default_factory=InFlight)
    # Seconds after its last heartbeat that another host's process counts as gone.
    heartbeat_lease: float = 15.0
    # Seconds the settler leaves a new commit to its writer, whose ledger write follows the
    # push (bounded by the database timeout) before recording it from the trailers itself.
    record_grace: float = 6.0
    # Where OFREP clients open event streams (the origin of the streams server); None: off,
    # and bulk answers carry no `eventStreams`.
    event_streams: str | None = None
    # Where the promotion previews keep their scratch folders between plays (the data dir's
    # `scratch/`, services.scratch_folders); None: the system's temporary folder.
    scratch_dir: Path | None = None
    # Secrets every process shares, by name, as read from the ledger (``ServerKeys``): read
    # once per process (services.stream_tickets).
    server_keys: dict[str, str] = field(default_factory=dict)
    # Tells the stages' Argo CD / Flux of each pushed commit (services.hooks); None: nobody.
    controller_hooks: ControllerNotifier | None = None

    def close(self) -> None:
        """Release what the adapters hold (database pool, clone slot)."""
        for close in reversed(self.closers):
            close()
        self.closers.clear()
