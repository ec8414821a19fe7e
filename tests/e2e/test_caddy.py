"""What Caddy, running deploy/caddy/Caddyfile, sends where: between two small fake servers.

The user journey through Caddy (enrollment, the challenge, the JSON answers, the rules, a
sidecar that is down) is test_journey.py's, the same as for nginx and Traefik. This test puts
the Caddyfile's Caddy (see ``stacks.launch_caddy``: only its environment placeholders are set)
between a fake sidecar and a fake app to pin down exactly which headers it sends to
``/auth/forward`` and to the app, and what it passes back to the client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stacks import CADDY, Stack, new_stack, running_proxy, wait_ready

IDENTITY = ("remote-user", "remote_user", "remote-email", "remote-name", "remote-groups")


class Recorder(BaseHTTPRequestHandler):
    """Records each request; as the sidecar it answers from X-Forwarded-Uri, as the app it
    echoes what it got."""

    role = ""
    seen: list[dict[str, Any]] = []

    def handle_one(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request = {"method": self.command, "path": self.path,
                   "headers": [(k.lower(), v) for k, v in self.headers.items()],
                   "body": self.rfile.read(length).decode() if length else ""}
        self.seen.append({"role": self.role, **request})
        headers: list[tuple[str, str]] = []
        status = 200
        if self.role == "sidecar":
            uri = self.headers.get("x-forwarded-uri", "")
            if uri.startswith(("/user", "/full")):
                headers.append(("Remote-User", "alice"))
            if uri.startswith("/full"):
                headers += [("Remote-Email", "alice@example.com"), ("Remote-Name", "Alice A."),
                            ("Remote-Groups", "staff,admins"),
                            ("Set-Cookie", "totp_sidecar=refreshed; Path=/; HttpOnly")]
            if uri.startswith("/denied"):
                status = 403
                headers.append(("Remote-User", "alice"))  # not copied: not a 2xx
        else:
            headers.append(("Set-Cookie", "app=1; Path=/"))
        body = json.dumps(request).encode()
        self.send_response(status)
        for name, value in headers + [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = handle_one

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


def serve(role: str, seen: list[dict[str, Any]]) -> ThreadingHTTPServer:
    handler = type(f"{role.title()}Recorder", (Recorder,), {"role": role, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server


def header_values(request: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in request["headers"] if k == name]


@pytest.fixture()
def fakes(caddy_bin: str, tmp_path: Path) -> Iterator[tuple[Stack, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    sidecar, app = serve("sidecar", seen), serve("app", seen)
    try:
        stack = new_stack(tmp_path, app_port=app.server_port, sidecar_port=sidecar.server_port)
        with running_proxy(CADDY, caddy_bin, stack, tmp_path):
            wait_ready(stack, "caddy", f"{stack.base}/healthz")  # unprotected: the fake app
            seen.clear()
            yield stack, seen
    finally:
        for server in (sidecar, app):
            server.shutdown()
            server.server_close()


def test_what_caddy_sends(fakes: tuple[Stack, list[dict[str, Any]]]) -> None:
    stack, seen = fakes
    spoof = {"Remote-User": "mallory", "Remote_User": "mallory", "Remote-Email": "m@evil.example",
             "Remote-Name": "M", "Remote-Groups": "admins", "X-Forwarded-For": "203.0.113.9",
             "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
             "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/elsewhere",
             "X-Original-URL": "http://evil.example/"}
    client_headers = {"Accept": "text/html", "Cookie": "demo_session=s1", "X-OTP": "123456",
                      "Authorization": "Basic Zm9vOmJhcg==", **spoof}
    with httpx.Client(base_url=stack.base, follow_redirects=False, timeout=10.0) as client:
        # A POST with a query and a body, from a user with every identity header.
        r = client.post("/full/path?a=1&b=%2F", headers=client_headers, content=b"x=1&y=2")
        assert r.status_code == 200, r.text
        assert sorted(r.headers.get_list("set-cookie")) == [
            "app=1; Path=/", "totp_sidecar=refreshed; Path=/; HttpOnly"]
        auth, app = seen
        assert (auth["role"], app["role"]) == ("sidecar", "app")
        assert auth["method"] == "GET" and auth["body"] == ""
        assert auth["path"].split("?")[0] == "/auth/forward"
        sent = dict(auth["headers"])
        assert len(sent) == len(auth["headers"]), "a header was sent twice"
        assert sent["x-forwarded-method"] == "POST"
        assert sent["x-forwarded-uri"] == "/full/path?a=1&b=%2F"
        assert sent["x-forwarded-proto"] == "http"
        assert sent["x-forwarded-host"] == stack.host == sent["host"]
        assert sent["x-forwarded-for"] == "127.0.0.1"
        for name, value in client_headers.items():  # the client's own headers go as they are
            if name not in spoof:
                assert sent[name.lower()] == value
        assert not set(sent) & {*IDENTITY, "x-original-url", "upgrade", "content-length"}
        assert app["method"] == "POST" and app["body"] == "x=1&y=2"
        assert app["path"] == "/full/path?a=1&b=%2F"
        got = {k: v for k, v in app["headers"] if k in IDENTITY}
        assert got == {"remote-user": "alice", "remote-email": "alice@example.com",
                       "remote-name": "Alice A.", "remote-groups": "staff,admins"}

        # Only Remote-User from the sidecar: nothing else (Caddy 2.6's forward_auth would
        # pass "{http.reverse_proxy.header.Remote-Email}" as text), and no Set-Cookie of ours.
        seen.clear()
        r = client.get("/user", headers=spoof)
        assert r.headers.get_list("set-cookie") == ["app=1; Path=/"]
        assert {k: v for k, v in seen[1]["headers"] if k in IDENTITY} == {"remote-user": "alice"}

        # Anonymous: no identity header at all.
        seen.clear()
        r = client.get("/anonymous", headers=spoof)
        assert [k for k, _ in seen[1]["headers"] if k in IDENTITY] == []

        # A WebSocket handshake is checked as a plain GET (no upgrade to the sidecar); the
        # app's proxy still gets the Upgrade.
        seen.clear()
        client.get("/user/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                        "Sec-WebSocket-Version": "13",
                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert not header_values(seen[0], "upgrade") and not header_values(seen[0], "connection")
        assert header_values(seen[1], "upgrade") == ["websocket"]

        # A non-2xx answer goes to the client as it is; the app is not called.
        seen.clear()
        r = client.get("/denied", headers=spoof)
        assert r.status_code == 403 and r.json()["path"].startswith("/auth/forward")
        assert [s["role"] for s in seen] == ["sidecar"]
        assert r.headers.get_list("set-cookie") == []
