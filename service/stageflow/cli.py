"""The `stageflow` command: serve, migrate, seed, and token administration."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stageflow.config import SETTINGS_DOC, Settings, SettingsError


def _prepare_and_settle(settings: Settings) -> str | None:
    """Seed, migrate, ensure the admin token and settle promotions; return a new admin secret."""
    from stageflow import bootstrap

    bootstrap.configure_logging(settings.log_level)
    secret = bootstrap.prepare(settings)
    _settle(settings)
    return secret


def _prepare_in_child(settings: Settings) -> str | None:
    """Run ``_prepare_and_settle`` in a short-lived process and return what it returns.

    The gunicorn master lives as long as the server and only forks and watches workers. Doing
    the preparation itself would leave Alembic, SQLAlchemy, GitPython and jsonschema in its
    memory for good (~70 MiB instead of ~25); a child takes them away when it exits. A plain
    subprocess rather than ``multiprocessing``: its spawn start method leaves a resource-tracker
    process (~12 MiB) running beside the master. The child's errors are raised here.
    """
    import os
    import pickle
    import subprocess

    read, write = os.pipe()
    try:
        # -P: the working directory is not put on sys.path (it could shadow a module).
        child = subprocess.Popen(
            [sys.executable, "-P", "-c", _CHILD, str(write)],
            stdin=subprocess.PIPE,
            pass_fds=(write,),
        )
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as result:
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(pickle.dumps(settings))
        answer = result.read()
    child.wait()
    if not answer:
        raise RuntimeError(f"preparing the server failed (exit status {child.returncode})")
    ok, value = pickle.loads(answer)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


_CHILD = "import sys; from stageflow.cli import _prepare_child; _prepare_child(int(sys.argv[1]))"


def _prepare_child(fd: int) -> None:
    """The child of ``_prepare_in_child``: settings in on stdin, the outcome out on ``fd``."""
    import os
    import pickle
    import traceback

    from stageflow.domain.errors import StageflowError

    settings = pickle.load(sys.stdin.buffer)
    outcome: tuple[bool, Any]
    try:
        outcome = (True, _prepare_and_settle(settings))
    except Exception as exc:
        if not isinstance(exc, StageflowError):
            traceback.print_exc()  # the parent gets the error, but not where it came from
        outcome = (False, exc)
    with os.fdopen(fd, "wb") as out:
        pickle.dump(outcome, out)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from stageflow.logs import configure_logging

    configure_logging(settings.log_level)
    secret = _prepare_in_child(settings)
    if secret:
        print(
            "\n  Stageflow admin token (shown once; keep it):\n\n"
            f"    {secret}\n\n"
            "  export STAGEFLOW_TOKEN=" + secret + "\n",
            flush=True,
        )
    if args.dev:
        from stageflow.api import create_app

        create_app(settings).run(settings.host, settings.port, threaded=True)
        return 0

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("threads", settings.threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", settings.log_level.lower())
            # gunicorn 25+ opens a control socket at $HOME/.gunicorn/gunicorn.ctl by default: one
            # path for every `stageflow serve` on the host, each start taking it from the last.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):  # type: ignore[no-untyped-def]
            import gc

            from stageflow.api import create_app

            configure_logging(settings.log_level)
            app = create_app(settings)
            _start_reevaluator(app.extensions["stageflow"], settings.reevaluate_interval)
            _start_settler(app.extensions["stageflow"], settings.settle_interval)
            # What start-up built lives as long as the worker: move it out of the collector's
            # reach, or every full collection walks it again (76-199 ms pauses measured with
            # ~120k objects; after the freeze, under 1 ms).
            gc.collect()
            gc.freeze()
            return app

    print(f"Stageflow serving on http://{settings.host}:{settings.port}  (docs: /docs)", flush=True)
    Server().run()
    return 0


def _settle(settings: Settings) -> None:
    """Settle promotions that a crashed process left `applying` (DESIGN.md section 4)."""
    from stageflow import bootstrap
    from stageflow.services import promotions

    sf, _ = bootstrap.build(settings)
    try:
        for promotion in promotions.settle_all(sf):
            print(f"settled promotion {promotion.id}: {promotion.status}", flush=True)
    finally:
        sf.close()


def _start_reevaluator(sf: Any, interval: float) -> None:
    """Re-run waiting promotions' gates now and then: soak time passes without any report."""
    if interval <= 0:
        return
    import logging
    import threading
    import time

    from stageflow.services import promotions

    log = logging.getLogger("stageflow.reevaluate")

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                promotions.reevaluate_waiting(sf)
            except Exception:  # the loop must outlive one bad round
                log.exception("re-evaluating waiting promotions failed")

    threading.Thread(target=loop, name="stageflow-reevaluate", daemon=True).start()


def _start_settler(sf: Any, interval: float) -> None:
    """Settle what crashes and outages left half-done, in every worker of every replica."""
    if interval <= 0:
        return
    import logging
    import threading
    import time

    from stageflow.services.settler import Settler

    log = logging.getLogger("stageflow.settle")
    settler = Settler(sf)

    def loop() -> None:
        failing = False
        while True:
            if sf.ledger_outage.known:
                # Requests skip the ledger meanwhile; noticing soon that it is back makes it
                # the truth again (revocations) and lets writes through.
                if settler.probe():
                    continue
                time.sleep(min(interval, 0.25))
                continue
            try:
                settler.round()
                failing = False
            except Exception as exc:  # the loop must outlive one bad round (an outage)
                if not failing:  # once per outage, not every round
                    log.warning("settling failed (retrying every %g s): %s", interval, exc)
                failing = True
            # Woken early by an outage: the probe above then runs four times a second.
            until = time.monotonic() + interval
            while not sf.ledger_outage.known and time.monotonic() < until:
                time.sleep(min(0.25, interval))

    threading.Thread(target=loop, name="stageflow-settle", daemon=True).start()


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    from stageflow import bootstrap
    from stageflow.domain import actors
    from stageflow.services import tokens

    if actors.is_system_actor(args.owner):
        print(
            f"--owner {args.owner!r} is reserved: Stageflow writes "
            f"{', '.join(actors.SYSTEM_ACTORS)} as its own actor; choose the person's or the "
            "job's name",
            file=sys.stderr,
        )
        return 2

    admin = bootstrap.prepare(settings)
    if admin:  # a first start from this command: the admin token must not be lost
        print(f"Stageflow admin token (shown once; keep it): {admin}", file=sys.stderr)
    sf, _ = bootstrap.build(settings, open_repo=False)
    try:
        token, secret = tokens.create_token(
            sf,
            name=args.name,
            owner=args.owner,
            roles=args.role,
            apps=args.app or (),
            stages=args.stage or (),
            created_by=actors.CLI,
        )
    finally:
        sf.close()
    _emit(
        args,
        {
            "id": token.id,
            "name": token.name,
            "owner": token.owner,
            "roles": sorted(token.roles),
            "token": secret,
        },
        secret,
    )
    return 0


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "output", "text") == "json":
        print(json.dumps(data, default=str, indent=2))
    else:
        print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stageflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="seed, migrate and serve the API (gunicorn)")
    serve.add_argument("--dev", action="store_true", help="Flask's single-process server")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("seed", help="seed the embedded remote and database; print a new admin token")
    sub.add_parser("settings", help="list every STAGEFLOW_* setting (Markdown table)")
    token = sub.add_parser("token", help="administer API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print its secret")
    create.add_argument("--name", required=True)
    create.add_argument("--owner", required=True)
    create.add_argument("--role", action="append", required=True, help="repeatable")
    create.add_argument("--app", action="append", help="scope to an app (repeatable)")
    create.add_argument("--stage", action="append", help="scope to a stage (repeatable)")
    create.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)

    if args.command == "settings":
        print("| variable | default | meaning |\n| --- | --- | --- |")
        for _, name, default, meaning in SETTINGS_DOC:
            print(f"| `{name}` | `{default}` | {meaning} |")
        return 0
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"stageflow: {exc}", file=sys.stderr)
        return 2
    from stageflow.domain.errors import StageflowError

    try:
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "migrate":
            from stageflow.adapters.database.migrate import upgrade

            upgrade(settings.database_url)
            print("database is at the latest migration")
            return 0
        if args.command == "seed":
            from stageflow import bootstrap

            secret = bootstrap.prepare(settings)
            print(secret or "already seeded; no new admin token")
            return 0
        if args.command == "token":
            return _token_create(settings, args)
    except StageflowError as exc:
        print(f"stageflow: {exc.message}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
