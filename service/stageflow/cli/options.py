"""The options every client command shares, accepted before or after the subcommand."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from stageflow.cli.connection import Api, Connection
from stageflow.cli.output import FORMATS, emit

F = TypeVar("F", bound=Callable[..., Any])


def _store(attribute: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(Connection), attribute, value)

    return callback


def connection_options(f: F) -> F:
    """--server, --token, --context, --request-timeout: where and as whom to call the API."""
    for decorator in reversed(
        [
            click.option(
                "--server",
                metavar="URL",
                expose_value=False,
                callback=_store("server"),
                help="API base URL [env STAGEFLOW_URL; default http://127.0.0.1:8080].",
            ),
            click.option(
                "--token",
                metavar="TOKEN",
                expose_value=False,
                callback=_store("token"),
                help="API token [env STAGEFLOW_TOKEN]; never printed.",
            ),
            click.option(
                "--context",
                metavar="NAME",
                expose_value=False,
                callback=_store("context"),
                help="A context saved by `stageflow login` (default: the current one).",
            ),
            click.option(
                "--request-timeout",
                type=click.FloatRange(min=0.1),
                metavar="SECONDS",
                expose_value=False,
                callback=_store("timeout"),
                help="How long one HTTP request may take [30].",
            ),
        ]
    ):
        f = decorator(f)
    return f


def output_option(f: F) -> F:
    """-o table|json|yaml."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        expose_value=False,
        callback=_store("output"),
        help="table for people; json (the API's own answer) or yaml for scripts.",
    )(f)


def client_command(f: F) -> F:
    """A command that calls the API: gets ``api`` and ``fmt`` arguments, closes the client."""

    @connection_options
    @output_option
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        connection = click.get_current_context().ensure_object(Connection)
        api = connection.api()
        try:
            return f(api, connection.output, *args, **kwargs)
        finally:
            api.close()

    return wrapper  # type: ignore[return-value]


def gathered(into: str, kind: type[Any]) -> Callable[[F], F]:
    """Pass the options named like the fields of dataclass ``kind`` as one ``kind`` called ``into``.

    A click command takes one parameter per option; a command with many options reads better,
    and its body stays small, when the options that describe one thing arrive as one value.
    """
    names = tuple(field.name for field in dataclasses.fields(kind))

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return f(*args, **kwargs, **{into: kind(**values)})

        return wrapper  # type: ignore[return-value]  # functools.wraps loses the type of F

    return decorate


def report(data: Any, text: str) -> None:
    """Print ``text`` for people, or ``data`` with -o json / yaml."""
    fmt = click.get_current_context().ensure_object(Connection).output
    emit(fmt, data, lambda _console, _data: click.echo(text))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h``, ``500ms`` -> seconds."""
    found = _DURATION.match(text)
    if not found:
        raise click.BadParameter(f"{text!r} is not a duration; write 90s, 5m or 1h")
    value = float(found.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[found.group(2)]


# The longest wait or follow a duration option takes (30 days): well inside what time.sleep
# and monotonic deadlines hold, and beyond any wait a person or a script means.
MAX_DURATION = 30 * 86400
# The shortest poll period (--interval): shorter only asks the server again for nothing.
MIN_INTERVAL = 0.1


# ParamType is generic from click 8.2 on only; 8.1 (the lowest we allow) cannot subscript it
class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration option within bounds: a wait longer than ``maximum`` overflows ``time.sleep``
    (a traceback, not an answer), and a poll period under ``minimum`` asks the server in a busy
    loop; both are refused as a usage error that names the range."""

    name = "DURATION"

    def __init__(self, minimum: float = 0.0, maximum: float = MAX_DURATION) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(str(exc.message), param, ctx)
        if not self.minimum <= seconds <= self.maximum:
            self.fail(
                f"{value!r} is outside {self.minimum:g}s to {self.maximum / 86400:g} days",
                param,
                ctx,
            )
        return seconds


__all__ = [
    "MAX_DURATION",
    "MIN_INTERVAL",
    "Api",
    "Duration",
    "client_command",
    "connection_options",
    "gathered",
    "output_option",
]
