"""`stageflow serve`: prepare (seed, migrate, settle) in a child process, then run gunicorn."""

from __future__ import annotations

import sys
from typing import Any

from stageflow.config import Settings


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


_CHILD = (
    "import sys; from stageflow.cli.server import _prepare_child; _prepare_child(int(sys.argv[1]))"
)


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


def serve(settings: Settings, *, dev: bool = False) -> int:
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
    if dev:
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
            _start_notifier(app.extensions["stageflow"], settings)
            # What start-up built lives as long as the worker: move it out of the collector's
            # reach, or every full collection walks it again (76-199 ms pauses measured with
            # ~120k objects; after the freeze, under 1 ms).
            gc.collect()
            gc.freeze()
            return app

    print(f"Stageflow serving on http://{settings.host}:{settings.port}  (docs: /docs)", flush=True)
    streams = _start_streams(settings)
    try:
        Server().run()
    finally:
        _stop(streams)
    return 0


def _start_streams(settings: Settings) -> Any:
    """Run the OFREP event-stream server (stageflow.streams) as a process of its own."""
    if settings.stream_origin is None:
        return None
    import os
    import subprocess

    from stageflow.config import SETTINGS_DOC

    env = dict(os.environ)
    for attr, name, *_ in SETTINGS_DOC:
        value = getattr(settings, attr, None)
        if value is not None:
            env[name] = ",".join(value) if isinstance(value, tuple) else str(value)
    env["STAGEFLOW_STREAM_PORT"] = str(settings.stream_port or settings.port + 1)
    print(f"OFREP event streams on {settings.stream_origin}", flush=True)
    return subprocess.Popen([sys.executable, "-m", "stageflow.streams"], env=env)


def _stop(process: Any) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except Exception:
        process.kill()


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


def _start_notifier(sf: Any, settings: Settings) -> None:
    """Send the event log to the `notify:` targets, in every worker (deliveries are claimed)."""
    if settings.notify_interval <= 0:
        return
    import logging
    import threading
    import time

    from stageflow.adapters.notifications import HttpSender
    from stageflow.services.notifier import Notifier, Options

    log = logging.getLogger("stageflow.notify")
    notifier = Notifier(
        sf,
        HttpSender(),
        Options(
            base_url=settings.public_url or f"http://{settings.host}:{settings.port}",
            backoff=settings.notify_backoff,
            max_attempts=settings.notify_max_attempts,
        ),
    )

    def loop() -> None:
        failing = False
        while True:
            time.sleep(settings.notify_interval)
            try:
                notifier.round()
                failing = False
            except Exception as exc:  # the loop must outlive one bad round (an outage)
                if not failing:
                    log.warning("notifying failed (retrying): %s", exc)
                failing = True

    threading.Thread(target=loop, name="stageflow-notify", daemon=True).start()
