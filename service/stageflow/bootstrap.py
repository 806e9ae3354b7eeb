"""The composition root: settings -> adapters -> services."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from stageflow.adapters.controller_hooks import HookDelivery, HookOptions
from stageflow.adapters.database.unit_of_work import SqlUnitOfWork, make_engine, ping
from stageflow.adapters.database.write_turn import AdvisoryWriteTurn, lock_key
from stageflow.adapters.flagd_evaluator import FlagdEvaluator, trial_evaluate
from stageflow.adapters.flagd_schema import FlagdSchema, validate_flag_document
from stageflow.adapters.flagd_targeting import DEFAULT_FRACTIONAL
from stageflow.adapters.git import GitOptions, GitPythonRepo, auth_env, seed_bare_remote
from stageflow.adapters.git_history import GitHistory
from stageflow.adapters.kustomization import KustomizationFile
from stageflow.adapters.kustomize import KubectlKustomize
from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.adapters.policy_engine import KubernetesPolicyTools
from stageflow.adapters.prometheus import PrometheusHTTP
from stageflow.config import Settings
from stageflow.domain.errors import Unavailable
from stageflow.domain.flags import FlagDocument
from stageflow.logs import configure_logging
from stageflow.services import hooks, state, tokens
from stageflow.services.context import Stageflow
from stageflow.services.limits import RateLimiter
from stageflow.services.ports import Codecs

__all__ = ["Settings", "build", "configure_logging", "prepare"]

log = logging.getLogger(__name__)


def codecs(settings: Settings | None = None) -> Codecs:
    schema = FlagdSchema()
    fractional = settings.flagd_fractional if settings is not None else DEFAULT_FRACTIONAL

    def validate(doc: FlagDocument, only: Collection[str] | None = None) -> None:
        validate_flag_document(doc, schema, only=only)

    return Codecs(
        load_pipeline=load_pipeline,
        parse_kustomization=lambda text, path: KustomizationFile.parse(text, path=path),
        validate_flags=validate,
        flag_evaluator=partial(FlagdEvaluator, fractional=fractional),
        trial_evaluate=trial_evaluate,
        policy_tools=KubernetesPolicyTools(),
    )


def prepare(settings: Settings) -> str | None:
    """Seed the embedded remote, migrate the database, ensure an admin token.

    Returns a newly generated admin secret (to print once), or None.
    """
    # Imported here: Alembic is needed once, by whichever process prepares, not by every worker.
    from stageflow.adapters.database.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.embedded_remote and seed_bare_remote(
        settings.seed_dir, settings.data_dir / "gitops.git", settings.git_branch
    ):
        log.info("seeded the embedded GitOps remote at %s", settings.git_url)
    upgrade(settings.database_url)
    stageflow, _ = build(settings, open_repo=False)
    try:
        return tokens.ensure_admin_token(stageflow, settings.admin_token)
    finally:
        stageflow.close()


def _controller_hooks(stageflow: Stageflow, settings: Settings) -> HookDelivery:
    """Tell the stages' Argo CD / Flux of each push from a background thread (services.hooks)."""
    return HookDelivery(
        plan=partial(hooks.plan, stageflow),
        record=partial(hooks.record, stageflow),
        options=HookOptions(
            attempts=settings.controller_hook_attempts,
            backoff=settings.controller_hook_backoff,
        ),
    )


# A readiness probe: called with ``writes`` (True for /readyz/writes, which may look deeper),
# returns what it found, raises what is wrong.
Probe = Callable[[bool], Any]


def _hooks_probe(stageflow: Stageflow) -> Probe:
    """Name the variables the head's controller hooks need that this process lacks.

    Never a failure: writes go on without hooks (the controllers poll), but it says so; a head
    that cannot be read is the state and files probes' to report.
    """

    def probe(writes: bool) -> str:
        try:
            unset = hooks.unset_variables(stageflow, os.environ)
        except Exception as exc:
            return f"controller hooks not checked: {type(exc).__name__}"
        if unset:
            return f"controller hooks not sent: {', '.join(unset)} unset in the environment"
        return "every controller hook's variables are set"

    return probe


def build(settings: Settings, *, open_repo: bool = True) -> tuple[Stageflow, dict[str, Probe]]:
    """Compose the adapters; return the Stageflow context and the readiness probes."""
    engine = make_engine(settings.database_url, timeout=settings.database_timeout)
    session_factory = sessionmaker(engine, expire_on_commit=False)
    # Replicas share PostgreSQL: they take one write turn between them. SQLite is one host's
    # file, whose writers the clone's host lock already lines up.
    write_turn = (
        AdvisoryWriteTurn(engine, lock_key(settings.git_url, settings.git_branch))
        if engine.dialect.name == "postgresql"
        else None
    )
    repo = _repo(settings, write_turn)
    renderer = KubectlKustomize.from_setting(settings.kustomize, timeout=settings.render_timeout)
    stageflow = Stageflow(
        repo=repo,
        renderer=renderer,
        codecs=codecs(settings),
        uow=lambda: SqlUnitOfWork(session_factory),
        metrics=PrometheusHTTP(settings.prometheus_url),
        closers=[engine.dispose, repo.close, *([write_turn.close] if write_turn else [])],
        auth_failures=_auth_failures(settings.auth_failures_per_minute),
        token_outage_grace=settings.token_outage_grace,
        history=GitHistory(repo),
        heartbeat_lease=max(15.0, 5 * settings.settle_interval),
        record_grace=settings.database_timeout + 1,
        event_streams=settings.stream_origin,
        scratch_dir=settings.data_dir / "scratch",
    )
    stageflow.controller_hooks = _controller_hooks(stageflow, settings)
    stageflow.closers.append(stageflow.controller_hooks.close)
    if open_repo:
        try:
            repo.open()
        except Unavailable as exc:
            # No clone to serve from and no remote to clone: start anyway, say so in /readyz
            # (503) and the logs, and clone on the first use once the remote is back.
            log.error("%s; reads and writes answer 503 until it can be cloned", exc.message)
    probes = _Probes(stageflow, repo, engine, renderer, settings)
    return stageflow, probes.readiness()


def _repo(settings: Settings, write_turn: AdvisoryWriteTurn | None) -> GitPythonRepo:
    return GitPythonRepo(
        settings.git_url,
        settings.git_branch,
        settings.clones_dir,
        GitOptions(
            head_ttl=settings.git_head_ttl,
            push_attempts=settings.git_push_attempts,
            env=auth_env(
                ssh_key=settings.git_ssh_key,
                ssh_known_hosts=settings.git_ssh_known_hosts,
                token=settings.git_token,
                username=settings.git_username,
            ),
            min_free_bytes=settings.min_free_disk_mb * 2**20,
            write_turn=write_turn,
        ),
    )


def _auth_failures(per_minute: int) -> RateLimiter | None:
    """The limiter of unknown tokens per client address; 0 per minute means none."""
    return RateLimiter(per_minute / 60, burst=per_minute) if per_minute else None


@dataclass(frozen=True)
class _Probes:
    """The readiness probes of one composed Stageflow: each part of /readyz and /readyz/writes."""

    stageflow: Stageflow
    repo: GitPythonRepo
    engine: Engine
    renderer: KubectlKustomize
    settings: Settings

    def readiness(self) -> dict[str, Probe]:
        return {
            "state": self.state,
            "remote": self.remote,
            "files": self.files,
            "database": self.database,
            "disk": self.disk,
            "kustomize": self.kustomize,
            "controller_hooks": _hooks_probe(self.stageflow),
        }

    def state(self, writes: bool) -> str:
        snap = state.snapshot(self.stageflow)
        outage = self.repo.outage()
        if outage is None:
            return f"serving revision {snap.revision}"
        return (
            f"serving revision {snap.revision}, the last head seen: the remote has been "
            f"unreachable for {time.time() - outage.since:.0f} s"
        )

    def remote(self, writes: bool) -> str:
        head = self.repo.head(fresh=True)
        outage = self.repo.outage()
        if outage is not None:
            raise Unavailable(
                f"{outage.message} (since {time.time() - outage.since:.0f} s ago; reads answer "
                f"from {head[:12]}, the last head seen)"
            )
        detail = f"head {head}"
        if writes:
            detail += f"; {self.repo.check_writable()}"
        return detail

    def disk(self, writes: bool) -> str:
        free = self.repo.free_bytes()
        text = f"{free // 2**20} MiB free under {self.settings.clones_dir}"
        if free < self.repo.min_free_bytes:
            raise Unavailable(
                f"{text}, less than STAGEFLOW_MIN_FREE_DISK_MB ({self.settings.min_free_disk_mb}); "
                "writes are refused until there is more: free space there or grow the volume"
            )
        return text

    def files(self, writes: bool) -> str:
        problems = state.head_problems(self.stageflow)
        if problems:
            raise Unavailable(
                "; ".join(problem.note() for problem in problems)
                + " — push a corrected version; writes that need these files answer 422"
            )
        return "stageflow.yaml and every stage's flags.json are valid at the head"

    def database(self, writes: bool) -> str:
        ping(self.engine)
        return self.engine.dialect.name

    def kustomize(self, writes: bool) -> str:
        return self.renderer.version()
