"""The seed's whole flow through the `stageflow` executable, JSON parsed at every step."""

from __future__ import annotations

import select
import stat
import time

from tests.cli.conftest import ADMIN, Cli, Server, free_port


def stage_of(state: dict, name: str) -> dict:
    return next(s for s in state["stages"] if s["stage"] == name)


def test_the_seed_flow_from_a_flag_to_a_rollback(cli: Cli, server: Server):
    # a new flag enters development and is turned on there
    made = cli("flags", "create", "demo", "new_checkout", "--lifecycle", "beta", "-o", "json")
    assert made.status == 0, made.err
    assert made.json()["flag"]["key"] == "new_checkout"
    on = cli("flags", "enable", "demo", "new_checkout", "--stage", "development", "-o", "json")
    assert on.status == 0, on.err
    flags = cli("flags", "list", "demo", "--stage", "development", "-o", "json").json()
    assert flags["new_checkout"]["stages"] == {
        "development": {"enabled": True, "variant": "on", "state": "ENABLED"}
    }
    # a lifecycle the stage does not allow: refused by policy, with the server's code
    refused = cli("flags", "enable", "demo", "experimental_cache", "--stage", "staging")
    assert refused.status == 1
    assert refused.out == ""
    assert refused.err.count("\n") == 1 and "flag_not_allowed" in refused.err

    # the build deploys an image; the cluster reports it; the smoke job passes
    image = cli("images", "set", "demo", "ghcr.io/acme/demo:1.5.0", "-o", "json")
    assert image.status == 0, image.err
    revision = image.json()["revision"]
    deployed = cli(
        "deployments", "record", "demo", "--stage", "development",
        "--revision", revision, "--health", "healthy", "-o", "json",
    )  # fmt: skip
    assert deployed.status == 0, deployed.err
    assert deployed.json()["revision"] == revision
    smoke = cli(
        "checks", "record", "demo", "--stage", "development", "--kind", "smoke",
        "--status", "passed", "--summary", "12 passed", "-o", "json",
        env={"STAGEFLOW_REVISION": revision},
    )  # fmt: skip
    assert smoke.status == 0, smoke.err
    assert smoke.json()["revision"] == revision and smoke.json()["kind"] == "smoke"

    # development -> staging: the gates hold, --wait ends with the applied promotion
    staged = cli("promote", "demo", "--to", "staging", "--wait", "--timeout", "30s", "-o", "json")
    assert staged.status == 0, staged.err
    promotion = staged.json()
    assert promotion["status"] == "applied" and promotion["revision"]
    assert {m["key"] for m in promotion["plan"]["flags"]} >= {"new_checkout"}
    assert [m["to"] for m in promotion["plan"]["images"]] == ["1.5.0"]
    assert all(g["status"] == "passed" for g in promotion["gates"])
    assert "applied" in staged.err  # the progress line off a terminal
    again = cli("promote", "demo", "--to", "staging")
    assert again.status == 1 and "nothing_to_promote" in again.err

    # staging -> production before staging proved itself: a gate blocks (dry run and real)
    dry = cli("promote", "demo", "--to", "production", "--dry-run", "-o", "json")
    assert dry.status == 1, dry.err
    assert dry.json()["verdict"] == "blocked"
    blocked = cli("promote", "demo", "--to", "production", "-o", "json")
    assert blocked.status == 1 and blocked.json()["status"] == "blocked"
    cancelled = cli("cancel", str(blocked.json()["id"]), "-o", "json")
    assert cancelled.status == 0 and cancelled.json()["status"] == "cancelled"
    waited = cli("promotions", "wait", str(blocked.json()["id"]), "-o", "json")
    assert waited.status == 1 and waited.json()["status"] == "cancelled"

    # staging runs it, healthy; smoke and load pass for the revision it wants (the default)
    status = cli("status", "demo", "-o", "json").json()
    staging_revision = stage_of(status["apps"][0], "staging")["overlay_revision"]
    assert staging_revision == promotion["revision"]
    reported = cli(
        "deployments", "record", "demo", "--stage", "staging",
        "--revision", staging_revision, "--health", "healthy",
    )  # fmt: skip
    assert reported.status == 0, reported.err
    for kind in ("smoke", "load"):
        recorded = cli(
            "checks", "record", "demo", "--stage", "staging", "--kind", kind,
            "--status", "passed", "-o", "json",
        )  # fmt: skip
        assert recorded.status == 0, recorded.err
        assert recorded.json()["revision"] == staging_revision
    time.sleep(1.2)  # staging's soak in this pipeline: 1s

    # production waits for an approval; following it runs out of time (exit 3)
    asked = cli("promote", "demo", "--to", "production", "-o", "json")
    assert asked.status == 0, asked.err
    prod = asked.json()
    assert prod["status"] == "pending_approval", prod["gates"]
    ident = str(prod["id"])
    late = cli("promotions", "wait", ident, "--timeout", "1s", "--interval", "0.3s")
    assert late.status == 3 and "wait_timeout" in late.err
    listed = cli("promotions", "list", "demo", "--status", "pending_approval", "-o", "json")
    assert [p["id"] for p in listed.json()["items"]] == [prod["id"]]
    shown = cli("status", "-o", "json").json()
    assert [p["id"] for p in shown["waiting_promotions"]] == [prod["id"]]

    # the requester may not approve (exit 4); a second person does, and it applies
    own = cli("approve", ident)
    assert own.status == 4 and "self_approval" in own.err
    bob = cli("tokens", "create", "--name", "bob", "--owner", "bob", "--role", "approver")
    assert bob.status == 0, bob.err
    secret = bob.out.strip()
    assert secret.startswith("sf_")
    # a pipeline step follows it while the approver decides
    follower = cli.start("promotions", "wait", ident, "--interval", "0.2s", "-o", "json")
    assert follower.stderr is not None
    assert select.select([follower.stderr], [], [], 30)[0], "the follower said nothing"
    first = follower.stderr.readline()
    assert first.startswith(f"promotion #{ident}: pending_approval"), first
    approved = cli(
        "approve", ident, "--comment", "release notes checked", "-o", "json", token=secret
    )
    assert approved.status == 0, approved.err
    assert approved.json()["status"] == "applied"
    followed = cli.finish(follower)
    assert followed.status == 0, followed.err
    assert followed.json()["status"] == "applied" and followed.json()["revision"]
    assert followed.err.splitlines()[-1].startswith(f"promotion #{ident}: applied (")
    assert [a["approver"] for a in approved.json()["approvals"]] == ["bob"]
    prod_state = stage_of(cli("status", "demo", "-o", "json").json()["apps"][0], "production")
    assert {i["tag"] for i in prod_state["images"]} == {"1.5.0"}

    # and back
    back = cli("rollback", ident, "--reason", "error rate up", "-o", "json")
    assert back.status == 0, back.err
    assert back.json()["status"] == "rolled_back"
    got = cli("promotions", "get", ident, "-o", "json").json()
    assert got["status"] == "rolled_back"
    prod_state = stage_of(cli("status", "demo", "-o", "json").json()["apps"][0], "production")
    assert {i["tag"] for i in prod_state["images"]} == {"1.3.2"}
    audit = cli("history", "demo", "--stage", "production", "-o", "json").json()["items"]
    actions = [e["action"] for e in audit]
    assert "promotion.rollback" in actions and "promotion.approve" in actions, actions
    assert ADMIN not in "".join(
        r.out + r.err for r in (made, staged, asked, approved, back)
    )  # the token is never printed


def test_tables_and_yaml_for_people_and_scripts(cli: Cli):
    table = cli("status", "demo")
    assert table.status == 0, table.err
    lines = table.out.splitlines()
    assert lines[1].split()[:3] == ["STAGE", "IMAGES", "FLAGS"]
    assert not set("│┃━─") & set(table.out)  # no box lines off a terminal
    assert any(line.startswith("production ") for line in lines)
    yaml = cli("flags", "list", "demo", "-o", "yaml")
    assert yaml.status == 0 and "lifecycle: stable" in yaml.out
    for command in (["promote"], ["flags", "set"], ["checks", "record"], ["doctor"]):
        helped = cli(*command, "--help")
        assert helped.status == 0 and "Example:" in helped.out, command


def test_holds_and_freezes_show_in_status(cli: Cli):
    assert cli("freeze", "production", "--reason", "year end").status == 0
    assert cli("hold", "demo", "--stage", "staging", "--reason", "incident 4711").status == 0
    state = cli("status", "demo", "-o", "json").json()
    assert [f["stage"] for f in state["freezes"]] == ["production"]
    assert stage_of(state["apps"][0], "staging")["hold"]["reason"] == "incident 4711"
    table = cli("status", "demo").out
    assert "frozen by admin" in table and "held by admin: incident 4711" in table
    assert cli("unfreeze", "production").status == 0
    assert cli("release", "demo", "--stage", "staging").status == 0
    assert cli("status", "-o", "json").json()["freezes"] == []
    again = cli("release", "demo", "--stage", "staging")
    assert again.status == 1 and "not_held" in again.err


def test_exit_statuses_for_usage_network_and_auth(cli: Cli, server: Server):
    missing = cli("promote", "demo")
    assert missing.status == 2 and "--to" in missing.err
    unknown = cli("frobnicate")
    assert unknown.status == 2
    closed = f"http://127.0.0.1:{free_port()}"
    down = cli("status", "--server", closed)
    assert down.status == 3
    assert down.err.startswith("stageflow: error [unreachable]:") and closed in down.err
    wrong = cli("status", token="sf_not-a-token")
    assert wrong.status == 4 and "token_invalid" in wrong.err
    nobody = Cli(cli.home, server.url, token="")
    assert nobody("status").status == 4
    viewer = cli(
        "tokens", "create", "--name", "v", "--owner", "vera", "--role", "viewer", "-o", "json"
    )
    assert viewer.status == 0, viewer.err
    denied = cli(
        "hold", "demo", "--stage", "staging", "--reason", "x", token=viewer.json()["token"]
    )
    assert denied.status == 4 and "missing_role" in denied.err
    listed = cli("tokens", "list", "-o", "json").json()
    assert "token" not in listed[0] and {t["owner"] for t in listed} >= {"admin", "vera"}
    revoked = cli("tokens", "revoke", viewer.json()["id"], "-o", "json")
    assert revoked.status == 0 and revoked.json()["active"] is False


def test_login_saves_a_private_context_and_commands_use_it(cli: Cli, server: Server):
    anonymous = Cli(cli.home, url=None, token="")
    bad = anonymous("login", "--server", server.url, "--token", "sf_wrong")
    assert bad.status == 4 and not (cli.home / "config.toml").exists()
    done = anonymous("login", "--server", server.url, "--token", ADMIN, "--context", "local")
    assert done.status == 0, done.err
    config = cli.home / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert ADMIN not in done.out + done.err
    assert anonymous("status", "demo", "-o", "json").status == 0  # server and token from it
    contexts = anonymous("context", "list", "-o", "json").json()
    assert contexts == {"current": "local", "contexts": [{"name": "local", "server": server.url}]}
    assert ADMIN not in str(contexts)
    assert anonymous("context", "use", "nope").status == 2
    assert anonymous("context", "use", "local").status == 0
