"""Commands that act on this machine's settings: serve, migrate, seed, settings, tokens, login."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli.connection import Config, Connection, config_path
from stageflow.cli.options import connection_options, output_option, report
from stageflow.cli.output import (
    FORBIDDEN,
    OK,
    REFUSED,
    UNAVAILABLE,
    USAGE,
    Failure,
    emit,
    rows,
    table,
)
from stageflow.config import SETTINGS_DOC, Settings, SettingsError, settings_markdown
from stageflow.domain import actors


def load_settings() -> Settings:
    """The server's settings from STAGEFLOW_* (local commands share them with `serve`)."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise Failure(USAGE, str(exc), code="invalid_setting") from exc


def local_failure(exc: Exception) -> Failure:
    """A StageflowError raised by a local command, with the exit status its kind means."""
    from stageflow.domain.errors import Unavailable

    status = UNAVAILABLE if isinstance(exc, Unavailable) else REFUSED
    return Failure(status, getattr(exc, "message", str(exc)), code=getattr(exc, "code", None))


@click.command()
@click.option("--dev", is_flag=True, help="Flask's single-process server (for debugging).")
def serve(dev: bool) -> int:
    """Seed, migrate and serve the API with gunicorn (STAGEFLOW_HOST:STAGEFLOW_PORT).

    \b
    Example:
      STAGEFLOW_DATA_DIR=/srv/stageflow STAGEFLOW_PORT=9000 stageflow serve
    """
    from stageflow.cli.server import serve as run
    from stageflow.domain.errors import StageflowError

    try:
        return run(load_settings(), dev=dev)
    except StageflowError as exc:
        raise local_failure(exc) from exc


@click.command()
@output_option
def migrate() -> int:
    """Apply the database migrations (start-up runs them too).

    \b
    Example:
      STAGEFLOW_DATABASE_URL=postgresql+psycopg://sf@db/stageflow stageflow migrate
    """
    from stageflow.adapters.database.migrate import upgrade
    from stageflow.domain.errors import StageflowError

    settings = load_settings()
    try:
        upgrade(settings.database_url)
    except StageflowError as exc:
        raise local_failure(exc) from exc
    report({"migrated": True}, "database is at the latest migration")
    return OK


@click.command()
@output_option
def seed() -> int:
    """Seed the embedded Git remote and the database; print a new admin token.

    \b
    Example:
      STAGEFLOW_DATA_DIR=./var stageflow seed
    """
    from stageflow import bootstrap
    from stageflow.domain.errors import StageflowError

    try:
        secret = bootstrap.prepare(load_settings())
    except StageflowError as exc:
        raise local_failure(exc) from exc
    report({"admin_token": secret}, secret or "already seeded; no new admin token")
    return OK


@click.command("settings")
@output_option
def settings_table() -> int:
    """Print every STAGEFLOW_* setting with its default (a Markdown table for people).

    \b
    Example:
      stageflow settings
    """
    data = [
        {"variable": name, "default": default, "meaning": meaning}
        for _, name, default, meaning in SETTINGS_DOC
    ]
    report(data, settings_markdown())
    return OK


# -- tokens: over the API when a server is named, else on this machine's database -----------


def _local_stageflow() -> Any:
    from stageflow import bootstrap

    settings = load_settings()
    admin = bootstrap.prepare(settings)
    if admin:  # a first start from this command: the admin token must not be lost
        click.echo(f"Stageflow admin token (shown once; keep it): {admin}", err=True)
    sf, _ = bootstrap.build(settings, open_repo=False)
    return sf


def _tokens_table(console: Console, data: list[dict[str, Any]]) -> None:
    made = table("ID", "NAME", "OWNER", "ROLES", "SCOPE", "ACTIVE", "LAST USED")
    for t in data:
        scope = t.get("scope") or {}
        where = "/".join(",".join(scope.get(k) or ["*"]) for k in ("apps", "stages"))
        rows(
            made,
            [
                (
                    t["id"],
                    t["name"],
                    t["owner"],
                    ",".join(t["roles"]),
                    where,
                    "yes" if t.get("active") else "no",
                    str(t.get("last_used_at") or "-")[:16],
                )
            ],
        )
    console.print(made)


def _connection() -> Connection:
    return click.get_current_context().ensure_object(Connection)


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (over the API with --server, else locally)."""


@tokens.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. gitlab-ci.")
@click.option("--owner", required=True, help="Who acts with it (the actor in the audit log).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["viewer", "client", "reporter", "editor", "promoter", "approver", "admin"]),
    help="Repeatable.",
)
@click.option("--app", "apps", multiple=True, help="Scope to an app (repeatable).")
@click.option("--stage", "stages", multiple=True, help="Scope to a stage (repeatable).")
@click.option("--expires-at", metavar="TIME", help="ISO 8601 time with a zone.")
@connection_options
@output_option
def tokens_create(
    name: str,
    owner: str,
    roles: tuple[str, ...],
    apps: tuple[str, ...],
    stages: tuple[str, ...],
    expires_at: str | None,
) -> int:
    """Create a token and print its secret (shown only this once).

    \b
    Example:
      stageflow tokens create --name ci --owner ci --role reporter --role promoter
    """
    if actors.is_system_actor(owner):
        raise Failure(
            USAGE,
            f"--owner {owner!r} is reserved: Stageflow writes {', '.join(actors.SYSTEM_ACTORS)} "
            "as its own actor; choose the person's or the job's name",
        )
    connection = _connection()
    fmt = connection.output if connection.output != "table" else "text"
    if connection.remote():
        api = connection.api()
        try:
            body: dict[str, Any] = {"name": name, "owner": owner, "roles": list(roles)}
            if apps or stages:
                body["scope"] = {"apps": list(apps), "stages": list(stages)}
            if expires_at:
                body["expires_at"] = expires_at
            made = api.post("/tokens", body)
        finally:
            api.close()
    else:
        from datetime import datetime

        from stageflow.domain.errors import StageflowError
        from stageflow.services import tokens as service

        sf = _local_stageflow()
        try:
            new = service.NewToken(
                name=name,
                owner=owner,
                roles=list(roles),
                apps=apps,
                stages=stages,
                expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
            )
            token, secret = service.create_token(sf, new, created_by=actors.CLI)
            made = {**token.to_json(sf.clock()), "token": secret}
        except StageflowError as exc:
            raise local_failure(exc) from exc
        except ValueError as exc:
            raise Failure(USAGE, f"--expires-at: {exc}") from exc
        finally:
            sf.close()
    # table: the secret alone, so that TOKEN=$(stageflow tokens create ...) works
    emit(fmt, made, lambda c, d: click.echo(d["token"]))
    return OK


@tokens.command("list")
@connection_options
@output_option
def tokens_list() -> int:
    """List tokens (never their secrets).

    \b
    Example:
      stageflow tokens list --server https://stageflow.example
    """
    connection = _connection()
    if connection.remote():
        api = connection.api()
        try:
            found = api.get("/tokens")
        finally:
            api.close()
    else:
        from stageflow.services import tokens as service

        sf = _local_stageflow()
        try:
            now = sf.clock()
            found = [t.to_json(now) for t in service.list_tokens(sf)]
        finally:
            sf.close()
    emit(connection.output, found, _tokens_table)
    return OK


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@connection_options
@output_option
def tokens_revoke(token_id: str) -> int:
    """Revoke a token: it stops working within a second everywhere.

    \b
    Example:
      stageflow tokens revoke 5b0c1d2e
    """
    connection = _connection()
    if connection.remote():
        api = connection.api()
        try:
            done = api.call("DELETE", f"/tokens/{token_id}")
        finally:
            api.close()
    else:
        from stageflow.domain.errors import StageflowError
        from stageflow.services import tokens as service

        sf = _local_stageflow()
        try:
            done = service.revoke_token(sf, token_id, actor=actors.CLI).to_json(sf.clock())
            done["active"] = False
        except StageflowError as exc:
            raise local_failure(exc) from exc
        finally:
            sf.close()
    emit(
        connection.output,
        done,
        lambda c, d: c.print(Text(f"revoked token {d['id']} ({d['name']})")),
    )
    return OK


# -- login and contexts -----------------------------------------------------------------------


@click.command()
@click.option("--server", required=True, metavar="URL", help="The API base URL.")
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="STAGEFLOW_TOKEN",
    help="The API token [env STAGEFLOW_TOKEN; asked for when missing].",
)
@click.option("--context", "name", default="default", show_default=True, help="Save as this name.")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=30.0)
@output_option
def login(server: str, token: str | None, name: str, request_timeout: float) -> int:
    """Check a token against a server and save both as a context (mode 0600), made current.

    \b
    Example:
      stageflow login --server https://stageflow.example --token "$TOKEN" --context prod
    """
    from stageflow.cli.connection import Api

    if not token:
        token = click.prompt("Token", hide_input=True)
    assert token is not None
    api = Api(server.rstrip("/"), token, timeout=request_timeout)
    try:
        api.get("/pipeline")
    except Failure as exc:
        # a token without the viewer role (an OFREP client) is still a valid token
        if exc.status != FORBIDDEN or exc.code not in ("missing_role", "out_of_scope"):
            raise
    finally:
        api.close()
    config = Config.load()
    config.contexts[name] = {"server": server.rstrip("/"), "token": token}
    config.current = name
    path = config.save()
    report(
        {"context": name, "server": server.rstrip("/"), "config": str(path)},
        f"logged in to {server} as context {name!r} (saved in {path})",
    )
    return OK


@click.group()
def context() -> None:
    """Show and switch the saved contexts (server + token) `stageflow login` wrote."""


@context.command("list")
@output_option
def context_list() -> int:
    """List the contexts; the current one is marked.

    \b
    Example:
      stageflow context list
    """
    config = Config.load()
    data = {
        "current": config.current,
        "contexts": [
            {"name": n, "server": c.get("server")} for n, c in sorted(config.contexts.items())
        ],
    }

    def render(console: Console, d: dict[str, Any]) -> None:
        made = table("CURRENT", "NAME", "SERVER")
        for c in d["contexts"]:
            rows(made, [("*" if c["name"] == d["current"] else "", c["name"], c["server"])])
        console.print(made)

    emit(_connection().output, data, render)
    return OK


@context.command("use")
@click.argument("name")
@output_option
def context_use(name: str) -> int:
    """Make a saved context the current one.

    \b
    Example:
      stageflow context use staging-cluster
    """
    config = Config.load()
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none; run `stageflow login` first"
        raise Failure(USAGE, f"no context {name!r} in {config_path()} (known: {known})")
    config.current = name
    config.save()
    server = config.contexts[name].get("server")
    report({"current": name, "server": server}, f"using context {name!r} ({server})")
    return OK


@context.command("delete")
@click.argument("name")
@output_option
def context_delete(name: str) -> int:
    """Forget a saved context and its token.

    \b
    Example:
      stageflow context delete old
    """
    config = Config.load()
    if config.contexts.pop(name, None) is None:
        raise Failure(USAGE, f"no context {name!r} in {config_path()}")
    if config.current == name:
        config.current = None
    config.save()
    report({"deleted": name, "current": config.current}, f"deleted context {name!r}")
    return OK


COMMANDS = (serve, migrate, seed, settings_table, tokens, login, context)
