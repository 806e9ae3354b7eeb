"""The composition root: settings -> adapters -> services."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

from sqlalchemy.orm import sessionmaker

from stageflow.adapters.database.unit_of_work import SqlUnitOfWork, make_engine, ping
from stageflow.adapters.database.write_turn import AdvisoryWriteTurn, lock_key
from stageflow.adapters.flagd_evaluator import FlagdEvaluator, trial_evaluate
from stageflow.adapters.flagd_schema import FlagdSchema, validate_flag_document
from stageflow.adapters.flagd_targeting import DEFAULT_FRACTIONAL
from stageflow.adapters.git_history import GitHistory
from stageflow.adapters.git_repo import GitPythonRepo, auth_env, seed_bare_remote
from stageflow.adapters.kustomization import KustomizationFile
from stageflow.adapters.kustomize import KubectlKustomize
from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.adapters.policy_engine import KubernetesPolicyTools
from stageflow.adapters.prometheus import PrometheusHTTP
from stageflow.config import Settings
from stageflow.domain.errors import Unavailable
from stageflow.domain.flags import FlagDocument
from stageflow.logs import configure_logging
from stageflow.services import state, tokens
from stageflow.services.context import Stageflow
from stageflow.services.evaluation import RateLimiter
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


# A readiness probe: called with ``writes`` (True for /readyz/writes, which may look deeper),
# returns what it found, raises what is wrong.
Probe = Callable[[bool], Any]


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
    repo = GitPythonRepo(
        settings.git_url,
        settings.git_branch,
        settings.clones_dir,
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
    )
    renderer = KubectlKustomize.from_setting(settings.kustomize, timeout=settings.render_timeout)
    stageflow = Stageflow(
        repo=repo,
        renderer=renderer,
        codecs=codecs(settings),
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
        try:
            repo.open()
        except Unavailable as exc:
            # No clone to serve from and no remote to clone: start anyway, say so in /readyz
            # (503) and the logs, and clone on the first use once the remote is back.
            log.error("%s; reads and writes answer 503 until it can be cloned", exc.message)

    def state_probe(writes: bool) -> str:
        snap = state.snapshot(stageflow)
        outage = repo.outage()
        if outage is None:
            return f"serving revision {snap.revision}"
        return (
            f"serving revision {snap.revision}, the last head seen: the remote has been "
            f"unreachable for {time.time() - outage.since:.0f} s"
        )

    def remote_probe(writes: bool) -> str:
        head = repo.head(fresh=True)
        outage = repo.outage()
        if outage is not None:
            raise Unavailable(
                f"{outage.message} (since {time.time() - outage.since:.0f} s ago; reads answer "
                f"from {head[:12]}, the last head seen)"
            )
        detail = f"head {head}"
        if writes:
            detail += f"; {repo.check_writable()}"
        return detail

    def disk_probe(writes: bool) -> str:
        free = repo.free_bytes()
        text = f"{free // 2**20} MiB free under {settings.clones_dir}"
        if free < repo.min_free_bytes:
            raise Unavailable(
                f"{text}, less than STAGEFLOW_MIN_FREE_DISK_MB ({settings.min_free_disk_mb}); "
                "writes are refused until there is more: free space there or grow the volume"
            )
        return text

    def files_probe(writes: bool) -> str:
        problems = state.head_problems(stageflow)
        if problems:
            raise Unavailable(
                "; ".join(problem.note() for problem in problems)
                + " — push a corrected version; writes that need these files answer 422"
            )
        return "stageflow.yaml and every stage's flags.json are valid at the head"

    def database_probe(writes: bool) -> str:
        ping(engine)
        return engine.dialect.name

    def kustomize_probe(writes: bool) -> str:
        return renderer.version()

    readiness: dict[str, Probe] = {
        "state": state_probe,
        "remote": remote_probe,
        "files": files_probe,
        "database": database_probe,
        "disk": disk_probe,
        "kustomize": kustomize_probe,
    }
    return stageflow, readiness
