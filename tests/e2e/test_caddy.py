"""End to end through a real Caddy running deploy/caddy/Caddyfile: demo app + sidecar.

The Caddyfile runs unchanged; only its environment placeholders (ports, ``admin off``) are
set, see ``caddy_stack.py``. One browser-like client (cookie jar, no automatic redirects)
goes through enrollment and the challenge; an API client through the JSON answers; every
answer is Caddy's, as a user would get it. A last test puts Caddy between two small fake
servers to pin down exactly which headers it sends to ``/auth/forward`` and to the app.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyotp
import pytest

from tests.e2e.caddy_stack import find_caddy, running_caddy, running_caddy_stack
from tests.e2e.conftest import Stack, wait_ready
from tests.e2e.steps import (
    API,
    BROWSER,
    assert_allowed,
    assert_challenged,
    challenge_form,
    enroll,
    fresh_wrong_code,
    login,
    logout,
    pass_cookie_set,
    password_client_needs_x_otp,
    remote_users,
)

IDENTITY = ("remote-user", "remote_user", "remote-email", "remote-name", "remote-groups")


@pytest.fixture(scope="session")
def caddy_bin() -> str:
    found = find_caddy()
    if found is None:
        message = "caddy not found (set CADDY, or install it: apt-get install caddy)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def caddy(caddy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Caddy + sidecar + demo app, shared by the module's tests (each uses its own user)."""
    with running_caddy_stack(caddy_bin, tmp_path_factory.mktemp("caddy")) as running:
        yield running


@pytest.fixture()
def browser(caddy: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=caddy.base, headers=BROWSER, follow_redirects=False,
                      timeout=10.0) as client:
        yield client


def test_enroll_challenge_and_codes(caddy: Stack, browser: httpx.Client) -> None:
    # Signed in, not enrolled: 2FA is optional, the app is reached and sees Remote-User.
    login(browser, "alice")  # a POST through the check: its body still reaches the app
    assert_allowed(browser, "alice")
    key, enroll_code, _ = enroll(browser)
    assert_allowed(browser, "alice")

    # A new app session: Caddy passes the sidecar's 302 to the challenge as it is, whatever
    # X-Forwarded-* the client sends (Caddy trusts no client's X-Forwarded-* by default).
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(caddy, browser)
    assert challenge == f"{caddy.base}/_2fa/challenge?rd={quote(caddy.base + '/', safe='')}"
    r = browser.get("/", headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
                                  "X-Forwarded-Uri": "/elsewhere", "X-Forwarded-Method": "PUT",
                                  "X-Original-URL": "http://evil.example/"})
    assert r.status_code == 302 and r.headers["location"] == challenge
    # The original URL, query included, travels in rd.
    r = browser.get("/reports?q=1&x=%2F")
    assert r.status_code == 302
    original = quote(f"{caddy.base}/reports?q=1&x=%2F", safe="")
    assert r.headers["location"] == f"{caddy.base}/_2fa/challenge?rd={original}"

    # API clients: the sidecar's 401 with its JSON body and headers, no Location.
    for path in ("/", "/api/data"):
        r = browser.get(path, headers=API)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == "2fa_required" and set(r.json()) == {"error", "detail"}
        assert r.headers["x-totp-error"] == "2fa_required"
        assert "no-store" in r.headers["cache-control"]
        assert "location" not in r.headers and "x-otp" not in r.headers

    # A wrong code: refused, no 2FA cookie, still challenged.
    csrf, rd = challenge_form(browser, challenge)
    assert rd == f"{caddy.base}/"
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": fresh_wrong_code(key)})
    assert r.status_code == 400
    assert not pass_cookie_set(r)
    assert_challenged(caddy, browser)

    # The next step's code (enrollment used the current one): accepted, back to rd.
    next_code = pyotp.TOTP(key).at(time.time() + 30)
    assert next_code != enroll_code
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{caddy.base}/"
    assert pass_cookie_set(r)
    assert_allowed(browser, "alice")
    r = browser.get("/api/data", headers=API)
    assert r.json() == {"ok": True, "user": "alice", "remote_user": "alice"}

    # The same code in a new app session: a replay, refused.
    logout(browser)
    login(browser, "alice")
    csrf, rd = challenge_form(browser, assert_challenged(caddy, browser))
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 400, "a used TOTP code was accepted again"
    assert_challenged(caddy, browser)


def test_spoofed_identity_never_reaches_the_app(caddy: Stack, browser: httpx.Client) -> None:
    spoof = {"Remote-User": "mallory", "Remote_User": "mallory", "Remote-Email": "m@evil.example",
             "Remote-Groups": "admins"}
    # Anonymous: the sidecar lets the request pass with no identity; the app must see none.
    r = browser.get("/", headers=spoof)
    assert r.status_code == 200
    assert "You are not signed in." in r.text
    assert remote_users(r.text) == []
    # Signed in as bob (no 2FA): the app sees bob, only bob.
    login(browser, "bob")
    r = browser.get("/", headers=spoof)
    assert r.status_code == 200
    assert remote_users(r.text) == ["bob"]
    r = browser.get("/api/data", headers={**spoof, **API})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "user": "bob", "remote_user": "bob"}
    # The pages are not protected by the check, but get no client identity either.
    r = browser.get("/_2fa/settings", headers=spoof)
    assert r.status_code == 200


def test_password_api_client_needs_x_otp(caddy: Stack, browser: httpx.Client) -> None:
    password_client_needs_x_otp(caddy.base, browser)


def test_app_answers_deny_rule_and_pages(caddy: Stack, browser: httpx.Client) -> None:
    # The app's own 401 comes through as the app wrote it.
    r = browser.get("/api/data", headers=API)
    assert r.status_code == 401
    assert r.json() == {"error": "unauthorized"}
    assert r.headers["www-authenticate"].startswith("Basic")
    # A deny rule in the sidecar's config (/denied): the sidecar's 403, body and all.
    for headers in (API, BROWSER):
        r = browser.get("/denied", headers=headers)
        assert r.status_code == 403
        assert r.json() == {"error": "forbidden", "detail": "access to this resource is denied"}
        assert r.headers["x-totp-error"] == "forbidden"
    # /_2fa without the slash is the settings page; the pages come from the sidecar.
    r = browser.get("/_2fa")
    assert r.status_code == 302 and r.headers["location"] == "/_2fa/settings"
    r = browser.get("/_2fa/challenge?rd=/")  # not signed in: the sidecar's "Sign in first"
    assert r.status_code == 401 and "Sign in first" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_sidecar_down_fails_closed(caddy_bin: str, tmp_path: Path) -> None:
    """No sidecar: Caddy answers 502 and the app is never called."""
    with running_caddy_stack(caddy_bin, tmp_path, with_sidecar=False) as down, \
            httpx.Client(base_url=down.base, headers=BROWSER, follow_redirects=False,
                         timeout=10.0) as client:
        assert client.get("/").status_code == 502
        assert client.get("/api/data", headers=API).status_code == 502
        r = client.post("/login", data={"username": "alice", "password": "alice-password"})
        assert r.status_code == 502
        assert "set-cookie" not in r.headers, "the app was reached without the 2FA check"
        assert client.get("/_2fa/settings").status_code == 502
        assert client.get("/healthz").text == "ok"  # unprotected paths keep working


# --- Caddy between two fake servers: exactly what it sends where. ---

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
        with running_caddy(caddy_bin, tmp_path, f"127.0.0.1:{sidecar.server_port}",
                           f"127.0.0.1:{app.server_port}") as stack:
            wait_ready(stack, "caddy", f"{stack.base}/healthz")
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
