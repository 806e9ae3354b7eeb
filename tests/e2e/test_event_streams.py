"""OFREP event streams (ADR-0008) over a real SSE server: commit and live modes, replay."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from stageflow import bootstrap
from stageflow.streams.app import PATH, create_streams_app
from tests.builders import bearer, make_token, third_party_commit
from tests.conftest import SEED

BULK = "/ofrep/v1/evaluate/flags"


class StreamServer:
    def __init__(self, sf: Any, *, port: int = 0, **options: Any) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", port))  # 0: any; a port: the one the pages already name
        self.base = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        app = create_streams_app(sf, **{"poll": 0.02, "keepalive": 1, **options})
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Listener:
    """An SSE client: each `message` event's id and JSON data lands in ``events``."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any], float]] = queue.Queue()
        self.comments = 0
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self.response = self.client.send(
            self.client.build_request("GET", url, headers=headers), stream=True
        )
        self.status = self.response.status_code
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        block: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "data" in block:
                        self.events.put(
                            (block.get("id", ""), json.loads(block["data"]), time.perf_counter())
                        )
                    block = {}
                else:
                    field, _, value = line.partition(":")
                    block[field] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass

    def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any], float]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.response.close()
        self.client.close()


@pytest.fixture
def streams(settings) -> Iterator[StreamServer]:
    sf, _ = bootstrap.build(settings)  # the streams process: its own Stageflow, same ledger
    server = StreamServer(sf)
    yield server
    server.stop()
    sf.close()


def _url(client, token: str, streams: StreamServer) -> str:
    answer = client.post(BULK, json={"context": {}}, headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    (stream,) = answer.get_json()["eventStreams"]
    return streams.base + stream["endpoint"]["requestUri"]


def _toggle(client, enabled: bool) -> tuple[str, float]:
    done = client.patch(
        "/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": enabled}
    )
    assert done.status_code == 200
    return done.get_json()["revision"], time.perf_counter()


def test_a_toggle_is_announced_on_commit_and_the_refetch_sees_it(client, streams):
    dev = make_token(client, "app-dev", ["client"], apps=["demo"], stages=["development"])
    listener = Listener(_url(client, dev, streams), bearer(dev))
    try:
        assert listener.status == 200
        time.sleep(0.2)  # connected and subscribed
        revision, answered = _toggle(client, False)
        event_id, data, arrived = listener.next()
        assert data["type"] == "refetchEvaluation"
        assert data["etag"] == revision and isinstance(data["lastModified"], int)
        assert event_id.isdigit()
        print(f"refetchEvaluation {1000 * (arrived - answered):.1f} ms after the toggle's 200")
        refetched = client.post(
            f"{BULK}?flagConfigEtag={data['etag']}&flagConfigLastModified={data['lastModified']}",
            json={"context": {}},
            headers=bearer(dev),
        ).get_json()
        new_ui = next(f for f in refetched["flags"] if f["key"] == "new_ui")
        assert new_ui["value"] is False

        # a reconnect with Last-Event-ID gets what it missed, in order
        listener.close()
        second, _ = _toggle(client, True)
        third, _ = _toggle(client, False)
        again = Listener(_url(client, dev, streams), {**bearer(dev), "Last-Event-ID": event_id})
        try:
            missed = [again.next(), again.next()]
            assert [d["etag"] for _, d, _ in missed] == [second, third]
            assert int(missed[0][0]) > int(event_id)
        finally:
            again.close()
    finally:
        listener.close()


def test_live_mode_waits_for_the_deployment_report(client, streams, gitops_remote: Path):
    text = (
        (SEED / "stageflow.yaml")
        .read_text()
        .replace(
            "    namespace: development\n",
            "    namespace: development\n    flag_events: {on: live}\n",
            1,
        )
    )
    third_party_commit(gitops_remote, "stageflow.yaml", text, "live flag events")
    dev = make_token(client, "app-dev", ["client"], apps=["demo"], stages=["development"])
    listener = Listener(_url(client, dev, streams), bearer(dev))
    try:
        time.sleep(0.2)
        revision, _ = _toggle(client, False)
        with pytest.raises(queue.Empty):
            listener.next(timeout=0.5)  # committed, not yet running: nobody is told
        reported = client.post(
            "/api/v1/apps/demo/stages/development/deployments",
            json={"revision": revision, "health": "healthy"},
        )
        assert reported.status_code == 201
        _, data, _ = listener.next()
        assert data == {**data, "type": "refetchEvaluation", "etag": revision}
        # the same flags reported again (an image-only change, a second report): no notice
        client.post(
            "/api/v1/apps/demo/stages/development/deployments",
            json={"revision": revision, "health": "healthy"},
        )
        with pytest.raises(queue.Empty):
            listener.next(timeout=0.5)
        # a stream idle for a second (the keep-alive period here) gets a keep-alive comment
        deadline = time.monotonic() + 5
        while listener.comments < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.comments >= 1
    finally:
        listener.close()


def test_streams_authenticate_like_ofrep(client, anonymous, streams):
    url = streams.base + PATH + "?app=demo&stage=development"
    assert httpx.get(url, timeout=5).status_code == 401
    prod = make_token(client, "app-prod", ["client"], apps=["demo"], stages=["production"])
    refused = httpx.get(url, headers=bearer(prod), timeout=5)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "out_of_scope"
    viewer = make_token(client, "viewer", ["viewer"])
    assert httpx.get(url, headers=bearer(viewer), timeout=5).status_code == 403


def test_the_answer_s_url_is_the_credential_a_browser_s_event_source_needs(
    client, anonymous, streams
):
    """A browser's EventSource sends no header: the URL's ticket opens the stream alone."""
    dev = make_token(client, "app-dev", ["client"], apps=["demo"], stages=["development"])
    url = _url(anonymous, dev, streams)
    assert dev not in url and "ticket=" in url  # a ticket, never the token itself
    assert url == _url(anonymous, dev, streams)  # one URL per token and stage: kept open
    other = make_token(client, "app-dev-2", ["client"], apps=["demo"], stages=["development"])
    assert _url(anonymous, other, streams) != url  # each token its own ticket

    listener = Listener(url, {"Origin": "http://localhost:3000"})
    try:
        assert listener.status == 200
        assert listener.response.headers["Access-Control-Allow-Origin"] == "*"
        time.sleep(0.2)
        revision, _ = _toggle(client, False)
        _, data, _ = listener.next()
        assert data["type"] == "refetchEvaluation" and data["etag"] == revision
    finally:
        listener.close()
    preflight = httpx.options(
        url,
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,last-event-id",
        },
        timeout=5,
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_ticket_opens_its_own_stage_only_and_only_while_its_token_is_active(
    client, anonymous, settings
):
    sf, _ = bootstrap.build(settings)
    streams = StreamServer(sf, recheck=0)  # an open stream asks about its token at each notice
    try:
        created = client.post(
            "/api/v1/tokens",
            json={
                "name": "app-dev",
                "owner": "app-dev",
                "roles": ["client"],
                "scope": {"apps": ["demo"], "stages": ["development"]},
            },
        ).get_json()
        url = _url(anonymous, created["token"], streams)
        ticket = url.split("ticket=", 1)[1]

        def refused(changed: str) -> dict[str, Any]:
            answer = httpx.get(changed, timeout=5)
            assert answer.status_code == 401, (changed, answer.text)
            assert answer.headers["Access-Control-Allow-Origin"] == "*"
            return dict(answer.json()["error"])

        # another stage, another app, a changed or cut ticket, no app: all refused, and say so
        assert refused(url.replace("stage=development", "stage=production"))["code"] == (
            "ticket_invalid"
        )
        assert refused(url.replace("app=demo", "app=other"))["code"] == "ticket_invalid"
        flipped = ticket[:-1] + ("A" if ticket[-1] != "A" else "B")
        assert refused(url.replace(ticket, flipped))["code"] == "ticket_invalid"
        assert refused(url.replace(ticket, ticket[:20]))["code"] == "ticket_invalid"
        error = refused(url.replace("app=demo&", ""))
        assert "eventStreams" in error["message"]

        listener = Listener(url, {})
        try:
            assert listener.status == 200
            time.sleep(0.2)
            assert client.delete(f"/api/v1/tokens/{created['id']}").status_code == 200
            _toggle(client, False)
            with pytest.raises(queue.Empty):  # the revoked token's stream hears nothing more
                listener.next(timeout=1.0)
        finally:
            listener.close()
        time.sleep(0.6)  # the token cache's second (tokens.CACHE_TTL)
        assert refused(url)["code"] == "token_inactive"
    finally:
        streams.stop()
        sf.close()


def test_a_client_that_goes_frees_its_connection(client, anonymous, streams):
    dev = make_token(client, "app-dev", ["client"], apps=["demo"], stages=["development"])
    url = _url(anonymous, dev, streams)

    def open_now() -> int:
        return int(httpx.get(streams.base + "/healthz", timeout=5).json()["connections"])

    listeners = [Listener(url, {}) for _ in range(3)]
    try:
        assert [listener.status for listener in listeners] == [200, 200, 200]
        assert open_now() == 3
    finally:
        for listener in listeners:
            listener.close()
    deadline = time.monotonic() + 5
    while open_now() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_now() == 0  # the server noticed each disconnect and unsubscribed it


OFREP = "/ofrep/v1/event-stream"
DASHBOARD = "/dashboard/v1/event-stream"
ODD = [
    "",
    "x" * 5000,
    "é☃\u0000",
    "%00",
    "../../etc/passwd",
    "1" * 400,
    "-1",
    "²",
    " demo ",
]


def test_no_request_a_client_can_send_to_the_streams_is_a_500(client, anonymous, streams):
    """Odd query values, headers and credentials on both stream endpoints: each a 4xx (or a
    stream), never a 5xx, and each 4xx names the problem."""
    dev = make_token(client, "app-dev", ["client"], apps=["demo"], stages=["development"])
    good = _url(anonymous, dev, streams)
    ticket = good.split("ticket=", 1)[1]
    asked = 0
    with httpx.Client(timeout=httpx.Timeout(5, read=2)) as http:
        for odd in ODD:
            text = odd.encode("utf-8").hex() or "0"  # what a header can carry of it
            for path, params, headers in [
                (OFREP, {"app": odd, "stage": "development", "ticket": ticket}, {}),
                (OFREP, {"app": "demo", "stage": odd, "ticket": ticket}, {}),
                (OFREP, {"app": "demo", "stage": "development", "ticket": odd}, {}),
                (OFREP, {"app": odd}, {"Authorization": f"Bearer {text}"}),
                (OFREP, {}, {"Authorization": text}),
                (OFREP, {}, {**bearer(dev), "Last-Event-ID": text}),
                (OFREP, {}, {**bearer(dev), "X-Stageflow-App": text}),
                (DASHBOARD, {"app": odd, "stage": odd, "after": odd}, {}),
                (DASHBOARD, {}, {"Origin": text, "Last-Event-ID": text}),
            ]:
                with http.stream("GET", streams.base + path, params=params, headers=headers) as got:
                    asked += 1
                    assert got.status_code < 500, (path, params, headers, got.status_code)
                    if got.status_code >= 400:
                        message = json.loads(got.read())["error"]["message"]
                        assert len(message) > 20, (path, params, message)
    assert asked == len(ODD) * 9
