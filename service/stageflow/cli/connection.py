"""Where the client commands connect: flags, environment, or a named context in the config file."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stageflow.cli.output import FORBIDDEN, REFUSED, UNAVAILABLE, USAGE, Failure

DEFAULT_SERVER = "http://127.0.0.1:8080"


def config_path() -> Path:
    """``$STAGEFLOW_CONFIG``, else ``$XDG_CONFIG_HOME/stageflow/config.toml`` (~/.config)."""
    if explicit := os.environ.get("STAGEFLOW_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stageflow" / "config.toml"


@dataclass
class Config:
    """The config file: named contexts (server + token) and the one in use, as kubectl keeps."""

    current: str | None = None
    contexts: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        path = path or config_path()
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise Failure(USAGE, f"cannot read {path}: {exc}; fix or delete it") from exc
        contexts = {
            str(name): {k: str(v) for k, v in values.items() if k in ("server", "token")}
            for name, values in dict(data.get("contexts", {})).items()
            if isinstance(values, dict)
        }
        current = data.get("current")
        return cls(current=str(current) if current else None, contexts=contexts)

    def save(self, path: Path | None = None) -> Path:
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # TOML basic strings take JSON's escapes for every character we may meet here.
        lines = []
        if self.current:
            lines.append(f"current = {json.dumps(self.current)}")
        for name, values in sorted(self.contexts.items()):
            lines.append("")
            lines.append(f"[contexts.{json.dumps(name)}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in sorted(values.items()))
        text = "\n".join(lines) + "\n"
        # The file holds tokens: created 0600 (never readable by others, not even for an
        # instant), and tightened if it existed with a looser mode.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(path, 0o600)
        return path


@dataclass
class Connection:
    """The options every client command takes; the last one given wins."""

    server: str | None = None
    token: str | None = None
    context: str | None = None
    output: str = "table"
    timeout: float = 30.0
    server_given: bool = False

    def resolve(self) -> tuple[str, str | None]:
        """The server URL and token: flags, then STAGEFLOW_URL / STAGEFLOW_TOKEN, then context."""
        config = Config.load()
        name = self.context or config.current
        context: dict[str, str] = {}
        if name is not None:
            if name not in config.contexts and self.context:
                known = ", ".join(sorted(config.contexts)) or "none"
                raise Failure(
                    USAGE,
                    f"no context {name!r} in {config_path()} (known: {known}); "
                    "add it with `stageflow login --context NAME --server URL --token T`",
                )
            context = config.contexts.get(name, {})
        server = self.server or os.environ.get("STAGEFLOW_URL") or context.get("server")
        token = self.token or os.environ.get("STAGEFLOW_TOKEN") or context.get("token")
        url = (server or DEFAULT_SERVER).rstrip("/")
        if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
            raise Failure(
                USAGE,
                f"{url!r} is not a server URL; give one like https://stageflow.example:8080 "
                "(--server, STAGEFLOW_URL or the context)",
                code="invalid_server",
            )
        return url, token or None

    def remote(self) -> bool:
        """True when a server was named (flag, environment or context), not just defaulted."""
        if self.server or os.environ.get("STAGEFLOW_URL") or self.context:
            return True
        config = Config.load()
        return bool(config.current and config.contexts.get(config.current, {}).get("server"))

    def api(self) -> Api:
        server, token = self.resolve()
        return Api(server, token, timeout=self.timeout)


class Api:
    """The REST API over HTTP; every failure becomes a ``Failure`` with its exit status."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.server = server
        self.token = token
        headers = {"Accept": "application/json", "User-Agent": "stageflow-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.call("GET", path, params=clean)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body=body if body is not None else {})

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        if not self.token:
            raise Failure(
                FORBIDDEN,
                f"no token for {self.server}: pass --token, set STAGEFLOW_TOKEN, or run "
                "`stageflow login --server URL --token T`",
                code="token_missing",
            )
        try:
            response = self._http.request(method, "/api/v1" + path, json=body, params=params)
        except httpx.TimeoutException as exc:
            raise Failure(
                UNAVAILABLE,
                f"{self.server} did not answer {method} {path} in time; retry, or raise "
                "--request-timeout",
                code="timeout",
            ) from exc
        except httpx.HTTPError as exc:
            raise Failure(
                UNAVAILABLE,
                f"cannot reach {self.server} ({exc}); start it (`stageflow serve`) or point "
                "--server / STAGEFLOW_URL at it",
                code="unreachable",
            ) from exc
        if response.status_code < 400:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                return response.text
        raise failure_from(response, self.server)


def failure_from(response: httpx.Response, server: str) -> Failure:
    """The one line the server's error body says, with the exit status its class means."""
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or response.reason_phrase or "no message")
    violations = (error.get("details") or {}).get("violations") or []
    if violations:
        message += " — " + "; ".join(
            f"{v.get('policy')}: {v.get('message')}" for v in violations[:5] if isinstance(v, dict)
        )
    if status == 401:
        return Failure(
            FORBIDDEN,
            f"{message} (HTTP 401); check the token: --token, STAGEFLOW_TOKEN or `stageflow login`",
            code=code,
        )
    if status == 403:
        return Failure(FORBIDDEN, f"{message} (HTTP 403)", code=code)
    if status == 429:
        wait = response.headers.get("Retry-After")
        hint = f"; retry after {wait} s" if wait else "; retry later"
        return Failure(UNAVAILABLE, f"{message} (HTTP 429){hint}", code=code)
    if status >= 500:
        return Failure(
            UNAVAILABLE, f"{server} answered {status}: {message}; retry later", code=code
        )
    return Failure(REFUSED, f"{message} (HTTP {status})", code=code)
