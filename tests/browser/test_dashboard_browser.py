"""The dashboard in a real browser: sign in, toggle a flag, promote, and watch it apply.

One journey against a running server with a real Git remote, as a person would take it; the
screenshots of the README (docs/*.png) are taken on the way, and axe-core checks each main page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.browser.conftest import ADMIN, LiveServer
from tests.builders import remote_head
from tests.conftest import ROOT, git

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
DOCS = ROOT / "docs"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 15_000  # a bound for slow machines; nothing waits for it when things work


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/")
    assert "/login" in page.url  # no session: the pages send you to sign in
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")


def critical_violations(page: Any) -> list[str]:
    """Run axe-core in the page; the critical violations it finds, described."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes, e.g. {v['nodes'][0]['html'][:120]})"
        for v in found
        if v.get("impact") == "critical"
    ]


def flag_at(remote: Path, stage: str, key: str) -> str:
    text = git("--git-dir", str(remote), "show", f"main:apps/demo/overlays/{stage}/flags.json")
    return str(json.loads(text)["flags"][key]["defaultVariant"])


def test_sign_in_toggle_promote_and_watch_it_apply(browser: Any, live_server: LiveServer) -> None:
    from playwright.sync_api import expect

    base, remote = live_server.base, live_server.remote
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    # Script errors and Content-Security-Policy refusals show up as console errors.
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    sign_in(page, base, ADMIN)

    # The pipeline: the app as a section, its stages left to right as stageflow.yaml orders them.
    demo = page.get_by_role("region", name="demo")
    expect(demo.get_by_role("heading", level=3)).to_have_text(
        ["development", "staging", "production"]
    )
    staging = demo.get_by_role("article", name="staging")
    expect(staging).to_contain_text("demo:1.4.0")
    assert not critical_violations(page), critical_violations(page)

    # The flag matrix: switch experimental_cache off in development; it is committed at once.
    page.get_by_role("link", name="Flags: demo").click()
    switch = page.get_by_role("switch", name="experimental_cache in development")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(page.get_by_role("switch", name="experimental_cache in staging")).to_be_disabled()
    expect(page.get_by_text("experimental flags may not be ON in staging")).to_be_visible()
    before = remote_head(remote)
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "false")
    head = remote_head(remote)
    assert head != before
    cell = page.locator("#cell-experimental_cache-development")
    expect(cell).to_contain_text(f"committed {head[:7]}")
    assert flag_at(remote, "development", "experimental_cache") == "off"
    assert not critical_violations(page), critical_violations(page)

    # Open a promotion to staging from the pipeline: development's new state has no reports yet,
    # so it waits (blocked) on its page ...
    page.get_by_role("link", name="Pipeline").click()
    page.get_by_role("button", name="Promote to staging").click()
    page.wait_for_url(re.compile(r"/promotions/\d+$"))
    status = page.locator("#promotion-status")
    expect(status).to_have_text("blocked")
    page.evaluate("window.notReloaded = true")
    # ... until the cluster reports development runs it and a smoke test passes for it: the page
    # shows the promotion applied by itself, without a reload.
    live_server.api(
        "POST",
        "/api/v1/apps/demo/stages/development/deployments",
        {"revision": head, "health": "healthy"},
    )
    live_server.api(
        "POST",
        "/api/v1/apps/demo/stages/development/checks",
        {"kind": "smoke", "revision": head, "status": "passed", "summary": "42 passed"},
    )
    expect(status).to_have_text("applied")
    assert page.evaluate("window.notReloaded === true")
    applied = remote_head(remote)
    expect(page.get_by_text(f"applied as {applied[:12]}")).to_be_visible()
    expect(page.get_by_role("button", name="Roll back")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    assert not critical_violations(page), critical_violations(page)
    page.screenshot(path=str(DOCS / "promotion.png"))

    # The staging column now shows what was promoted.
    page.get_by_role("link", name="Pipeline").click()
    expect(staging).to_contain_text("demo:1.4.1")
    page.screenshot(path=str(DOCS / "dashboard.png"))

    # A stage's own page: metric charts ("no data" without a Prometheus), checks, deployments
    # and the promotions into it.
    live_server.api(
        "POST",
        "/api/v1/apps/demo/stages/staging/deployments",
        {"revision": applied, "health": "progressing"},
    )
    live_server.api(
        "POST",
        "/api/v1/apps/demo/stages/staging/checks",
        {"kind": "smoke", "revision": applied, "status": "passed", "summary": "40 passed"},
    )
    page.get_by_role("link", name="staging", exact=True).click()
    expect(page.get_by_role("heading", name="demo in staging")).to_be_visible()
    expect(page.get_by_role("img", name="error-rate in staging: no data")).to_be_visible()
    expect(page.get_by_role("cell", name="40 passed")).to_be_visible()
    expect(page.get_by_role("link", name="#1")).to_be_visible()
    assert not critical_violations(page), critical_violations(page)
    # Development serves traffic in the test Prometheus: its charts have lines.
    page.goto(base + "/apps/demo/stages/development?hours=1")
    expect(page.get_by_role("heading", name="demo in development")).to_be_visible()
    if live_server.metrics:
        expect(
            page.get_by_role("img", name=re.compile(r"error-rate in development: last value 0\.00"))
        ).to_be_visible()
    expect(page.get_by_role("cell", name="42 passed")).to_be_visible()
    page.screenshot(path=str(DOCS / "stage.png"))

    # A form post without the CSRF token is refused, and nothing is committed.
    refused = page.request.post(
        base + "/apps/demo/stages/development/flags/new_ui", form={"enabled": "false"}
    )
    assert refused.status == 403
    assert remote_head(remote) == applied
    assert not console_errors, console_errors
    context.close()


def test_a_viewer_sees_no_button_that_would_fail(browser: Any, live_server: LiveServer) -> None:
    from playwright.sync_api import expect

    made = live_server.api(
        "POST", "/api/v1/tokens", {"name": "watcher", "owner": "wendy", "roles": ["viewer"]}
    )
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    sign_in(page, live_server.base, made["token"])
    expect(page.get_by_role("heading", name="demo")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Promote"))).to_have_count(0)
    page.get_by_role("link", name="Flags: demo").click()
    switches = page.get_by_role("switch")
    expect(switches.first).to_be_visible()
    for index in range(switches.count()):
        expect(switches.nth(index)).to_be_disabled()
    expect(page.get_by_text("your token may not edit flags in development").first).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(live_server.base + "/apps/demo/flags")
    assert "/login" in page.url  # signed out: the session is gone
    context.close()
