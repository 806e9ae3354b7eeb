"""The settler records from the trailers what a failed ledger write or a dead request left."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest
from sqlalchemy.orm import sessionmaker

from stageflow import bootstrap
from stageflow.adapters.database.unit_of_work import SqlUnitOfWork, make_engine
from stageflow.config import Settings
from stageflow.domain.errors import Conflict, Unavailable
from stageflow.services import idempotency
from stageflow.services.changes import Actor, Outcome, commit_change
from stageflow.services.ports import Change, Workspace
from stageflow.services.settler import Settler
from tests.builders import remote_head
from tests.integration.conftest import free_port


@pytest.fixture
def sf(settings: Settings):
    bootstrap.prepare(settings)
    built, _ = bootstrap.build(settings)
    built.record_grace = 0.0  # no writer is still on its way here
    yield built
    built.close()


def test_a_push_whose_ledger_write_fails_is_done_and_audited_later(sf, gitops_remote):
    live = sf.uow
    dead = make_engine(f"postgresql+psycopg://x:y@127.0.0.1:{free_port()}/none", timeout=2)
    sf.closers.append(dead.dispose)

    def operation(ws: Workspace) -> Change[Outcome]:
        factory = sessionmaker(dead)
        sf.uow = lambda: SqlUnitOfWork(factory)  # the ledger goes away during the push
        ws.write("notes/n.txt", "n\n")
        return Change("add a note", Outcome("note.add", "demo", "development", "n", None, None))

    with pytest.raises(Unavailable) as answered:
        commit_change(sf, Actor("alice", "change-1"), operation)

    assert answered.value.code == "database_unavailable"
    assert answered.value.details == {"committed": True, "revision": remote_head(gitops_remote)}
    sf.uow = live
    done = Settler(sf).round()

    assert done.audited == [remote_head(gitops_remote)]
    with sf.uow() as uow:
        (entry,) = uow.audit.list(actor="alice")
    assert (entry.action, entry.app, entry.stage, entry.target, entry.change_id) == (
        "note.add",
        "demo",
        "development",
        "n",
        "change-1",
    )
    assert entry.revision == remote_head(gitops_remote)
    assert Settler(sf).round().audited == []  # once


def test_a_key_whose_request_died_is_taken_over_at_once(sf):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = f"{socket.gethostname()}:{gone.stdout.strip()}"
    with sf.uow() as uow:
        uow.idempotency.begin("owner", "key-1", "fp", sf.clock(), claimed_by=dead)
        uow.commit()

    assert Settler(sf).round().keys_freed == 1
    with sf.in_flight(idempotency.working_on("owner", "key-1")):  # as the API serves a request
        claim = idempotency.claim(sf, "owner", "key-1", "fp")

        assert isinstance(claim, idempotency.Claim) and claim.taken_over
        assert idempotency.committed_before(sf, claim) is None  # it never pushed anything
        with pytest.raises(Conflict) as busy:  # and now it is this live request's
            idempotency.claim(sf, "owner", "key-1", "fp")
        assert busy.value.code == "idempotency_in_progress"
        assert Settler(sf).round().keys_freed == 0


def test_workers_sweeping_at_once_record_a_commit_once(sf, settings: Settings, gitops_remote):
    other, _ = bootstrap.build(settings)  # another worker: its own clone, the same ledger
    other.record_grace = 0.0
    try:
        live = sf.uow
        dead = make_engine(f"postgresql+psycopg://x:y@127.0.0.1:{free_port()}/none", timeout=2)
        sf.closers.append(dead.dispose)

        def operation(ws: Workspace) -> Change[Outcome]:
            factory = sessionmaker(dead)
            sf.uow = lambda: SqlUnitOfWork(factory)
            ws.write("notes/m.txt", "m\n")
            return Change("note", Outcome("note.add", "demo", None, "m", None, None))

        with pytest.raises(Unavailable):
            commit_change(sf, Actor("bob", "change-2"), operation)
        sf.uow = live
        settlers = [Settler(sf), Settler(other)]
        errors: list[BaseException] = []

        def sweep(settler: Settler) -> None:
            try:
                settler.round()
            except Unavailable as exc:  # SQLite: the later writer's snapshot is stale; next round
                errors.append(exc)

        threads = [threading.Thread(target=sweep, args=(s,)) for s in settlers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for settler in settlers:
            settler.round()

        with sf.uow() as uow:
            entries = uow.audit.list(actor="bob")
        assert [e.revision for e in entries] == [remote_head(gitops_remote)]
    finally:
        other.close()
