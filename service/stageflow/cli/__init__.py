"""The `stageflow` command: the server's local commands and a client of its REST API.

Exit statuses (the README lists them): 0 ok; 1 refused (a gate blocked, a policy or a conflict
said no, a waited-for promotion ended other than applied); 2 usage error; 3 the server is
unreachable, timed out or answered 5xx; 4 not authenticated or not allowed.
"""

from __future__ import annotations

import copy
import sys

import click

from stageflow.cli import events, evidence, local, promotions, setup, workflow
from stageflow.cli.connection import Connection
from stageflow.cli.options import connection_options, output_option
from stageflow.cli.output import Failure

INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@connection_options
@output_option
@click.version_option(package_name="stageflow", prog_name="stageflow")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Promote image tags and feature flags through GitOps stages, from a terminal or CI.

    Client commands talk to the API at --server / STAGEFLOW_URL with --token / STAGEFLOW_TOKEN
    (or a context saved by `stageflow login`); local commands (serve, migrate, seed, init,
    doctor, settings) read the same STAGEFLOW_* settings as the server.

    \b
    Example:
      stageflow status demo
      stageflow promote demo --to staging --wait -o json
    """
    ctx.ensure_object(Connection)


for command in (
    *local.COMMANDS,
    *setup.COMMANDS,
    *workflow.COMMANDS,
    *promotions.COMMANDS,
    *evidence.COMMANDS,
    *events.COMMANDS,
):
    cli.add_command(command)
# `stageflow token create` from before the client commands: the same group under its old name,
# kept working but out of the help
_legacy = copy.copy(local.tokens)
_legacy.hidden = True
cli.add_command(_legacy, name="token")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (the entry point exits with it)."""
    try:
        result = cli.main(args=argv, prog_name="stageflow", standalone_mode=False)
    except Failure as failure:
        click.echo(failure.line(), err=True)
        return failure.status
    except click.exceptions.Exit as done:
        return done.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("stageflow: interrupted", err=True)
        return INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
