"""Network Git remotes for tests, as users run them: HTTP with a token, and SSH with a key.

Both serve the real thing on a free loopback port: `git http-backend` (the CGI program that
GitLab, Gitea and cgit-style hosts put behind a web server) behind HTTP basic auth, and OpenSSH's
`sshd` running `git-receive-pack` / `git-upload-pack` for a key in its authorized_keys. Each can
be stopped and started again on the same port, to make the remote unreachable and bring it back.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

SSHD = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once something accepts connections on ``port`` (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after 10 s")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class GitHttpServer:
    """`git http-backend` for the bare repositories under ``root``, behind basic auth.

    ``token`` may fetch and push, ``read_token`` may only fetch (its pushes are 403, as a
    token without write scope gets from a Git host); anything else is 401.
    """

    def __init__(self, root: Path, *, user: str, token: str, read_token: str) -> None:
        self.root = root
        self.user = user
        self.token = token
        self.read_token = read_token
        self.port = _free_port()
        self.requests = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, name: str, *, credentials: str | None = None) -> str:
        auth = f"{credentials}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._server = make_server(
            "127.0.0.1",
            self.port,
            self._app,
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.requests += 1
        who = self._who(environ.get("HTTP_AUTHORIZATION", ""))
        if who is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        pushing = "git-receive-pack" in environ.get("PATH_INFO", "") + environ.get(
            "QUERY_STRING", ""
        )
        if pushing and who != "writer":
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"this token may not push\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": self.user,
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": unquote(environ.get("PATH_INFO", "")),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    def _who(self, header: str) -> str | None:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            _, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return None
        return {self.token: "writer", self.read_token: "reader"}.get(secret)


class SshServer:
    """OpenSSH's sshd on a free loopback port that lets one generated key in (as this user)."""

    def __init__(self, home: Path) -> None:
        assert SSHD is not None
        self.home = home
        self.port = _free_port()
        self.user = os.environ.get("USER") or _user_name()
        home.mkdir(parents=True, exist_ok=True)
        self.host_key = home / "host_ed25519"
        self.key = home / "client_ed25519"
        for key in (self.host_key, self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        (home / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        self.known_hosts = home / "known_hosts"
        host_public = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_public[0]} {host_public[1]}\n")
        self.config = home / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {home / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "PidFile none",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, repository: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repository}"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self._process)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
