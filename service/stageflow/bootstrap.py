"""The composition root: settings -> adapters -> services."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy.orm import sessionmaker

from stageflow.adapters.database.unit_of_work import SqlUnitOfWork, make_engine, ping
from stageflow.adapters.database.write_turn import AdvisoryWriteTurn, lock_key
from stageflow.adapters.flagd_evaluator import FlagdEvaluator, trial_evaluate
from stageflow.adapters.flagd_schema import FlagdSchema, validate_flag_document
from stageflow.adapters.git_history import GitHistory
from stageflow.adapters.git_repo import GitPythonRepo, seed_bare_remote
from stageflow.adapters.kustomization import KustomizationFile
from stageflow.adapters.kustomize import KubectlKustomize
from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.adapters.prometheus import PrometheusHTTP
from stageflow.config import Settings
from stageflow.domain.flags import FlagDocument
from stageflow.logs import configure_logging
from stageflow.services import tokens
from stageflow.services.context import Stageflow
from stageflow.services.evaluation import RateLimiter
from stageflow.services.ports import Codecs

__all__ = ["Settings", "build", "configure_logging", "prepare"]

log = logging.getLogger(__name__)


def codecs() -> Codecs:
    schema = FlagdSchema()

    def validate(doc: FlagDocument, only: Collection[str] | None = None) -> None:
        validate_flag_document(doc, schema, only=only)

    return Codecs(
        load_pipeline=load_pipeline,
        parse_kustomization=lambda text, path: KustomizationFile.parse(text, path=path),
        validate_flags=validate,
        flag_evaluator=FlagdEvaluator,
        trial_evaluate=trial_evaluate,
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


def build(
    settings: Settings, *, open_repo: bool = True
) -> tuple[Stageflow, dict[str, Callable[[], Any]]]:
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
    repo = GitPythonRepo(
        settings.git_url,
        settings.git_branch,
        settings.clones_dir,
        head_ttl=settings.git_head_ttl,
        push_attempts=settings.git_push_attempts,
        write_turn=write_turn,
    )
    renderer = KubectlKustomize.from_setting(settings.kustomize, timeout=settings.render_timeout)
    stageflow = Stageflow(
        repo=repo,
        renderer=renderer,
        codecs=codecs(),
        uow=lambda: SqlUnitOfWork(session_factory),
        metrics=PrometheusHTTP(settings.prometheus_url),
        closers=[engine.dispose, repo.close, *([write_turn.close] if write_turn else [])],
        auth_failures=RateLimiter(
            settings.auth_failures_per_minute / 60, burst=settings.auth_failures_per_minute
        )
        if settings.auth_failures_per_minute
        else None,
        token_outage_grace=settings.token_outage_grace,
        history=GitHistory(repo),
        heartbeat_lease=max(15.0, 5 * settings.settle_interval),
        record_grace=settings.database_timeout + 1,
    )
    if open_repo:
        repo.open()

    def git_probe() -> str:
        return repo.head(fresh=True)

    def database_probe() -> str:
        ping(engine)
        return engine.dialect.name

    readiness: dict[str, Callable[[], Any]] = {
        "database": database_probe,
        "git": git_probe,
        "kustomize": renderer.version,
    }
    return stageflow, readiness
