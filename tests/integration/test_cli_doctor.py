"""``totp-sidecar doctor``: a real process asks a real who-am-I URL (issue 12, item 13)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli import run, write_config
from tests.ports import free_port


class WhoAmI(BaseHTTPRequestHandler):
    """An app's who-am-I endpoints, one per way of answering."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def answer(self, status: int, body: bytes = b"", kind: str = "application/json",
               **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        cookie = self.headers.get("Cookie", "")
        bearer = self.headers.get("Authorization", "") == "Bearer t0ken"
        if self.path == "/api/me":
            if "demo_session=good" in cookie or bearer:
                user = {"user": "bob" if bearer else "alice", "email": "alice@example.com",
                        "groups": ["dev", "admins"]}
                self.answer(200, json.dumps(user).encode())
            else:
                self.answer(401, b'{"error": "not logged in"}')
        elif self.path == "/api/null":
            self.answer(200, b'{"user": null}')
        elif self.path == "/api/wrong-key":
            self.answer(200, b'{"username": "alice", "id": 3}')
        elif self.path == "/profile":
            self.answer(302, b"", "text/html", Location="/login?next=/profile")
        elif self.path == "/page":
            self.answer(200, b"<html>hello</html>", "text/html; charset=utf-8")
        else:
            self.answer(404, b"{}")


@contextlib.contextmanager
def serving() -> Iterator[str]:
    """The WhoAmI endpoints on a free port, in a thread: their base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), WhoAmI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def app() -> Iterator[str]:
    with serving() as url:
        yield url


def doctor(tmp_path: Path, url: str, *args: str, **overrides: Any) -> tuple[int, str]:
    primary = {"resolver": "introspect", "session_cookies": ["demo_session"],
               "introspect": {"url": url, "cache_seconds": 0, "timeout_seconds": 2}}
    path = write_config(tmp_path, **{"primary": primary, **overrides})
    result = run("doctor", "--config", str(path), *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def test_a_user_is_read_with_email_and_groups(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/api/me", "--cookie", "demo_session=good; theme=dark")
    assert code == 0, out
    for line in (f"url: {app}/api/me", "status: 200", "content type: application/json",
                 "user: alice", "email: alice@example.com", "groups: admins, dev"):
        assert line in out.splitlines(), out
    assert any(line.startswith("time: ") and line.endswith(" ms") for line in out.splitlines())


def test_a_bearer_token_in_a_header(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/api/me", "--header", "Authorization: Bearer t0ken")
    assert code == 0 and "user: bob" in out.splitlines(), out


@pytest.mark.parametrize("path", ["/api/me", "/api/null"])
def test_nobody_logged_in_is_explicit_anonymous(tmp_path: Path, app: str, path: str) -> None:
    code, out = doctor(tmp_path, f"{app}{path}", "--cookie", "demo_session=expired")
    assert code == 0, out
    assert "nobody is logged in" in out


def test_a_200_without_the_user_key_names_the_keys_seen(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/api/wrong-key", "--cookie", "demo_session=good")
    assert code == 1
    assert "problem: 200 but no 'user' key; keys seen: id, username" in out


def test_a_redirect_to_the_login_page(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/profile", "--cookie", "demo_session=good")
    assert code == 1
    assert "status: 302" in out and "redirect: /login?next=/profile" in out
    assert ("problem: 302 to /login?next=/profile: the URL needs the session cookie or is not an "
            "API endpoint") in out


def test_a_page_instead_of_json(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/page", "--cookie", "demo_session=good")
    assert code == 1 and "200 but not JSON (content type text/html; charset=utf-8)" in out


def test_other_statuses_and_an_unreachable_app(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/nothing-here", "--cookie", "demo_session=good")
    assert code == 1 and "status: 404" in out and "problem: 404" in out
    code, out = doctor(tmp_path, f"http://127.0.0.1:{free_port()}/api/me",
                       "--cookie", "demo_session=good")
    assert code == 1 and "cannot be reached (ConnectError" in out


def test_ambiguous_or_missing_cookies(tmp_path: Path, app: str) -> None:
    code, out = doctor(tmp_path, f"{app}/api/me", "--cookie", "demo_session=good",
                       "--cookie", "demo_session=evil")
    assert code == 1 and "ambiguous" in out
    code, out = doctor(tmp_path, f"{app}/api/me", "--cookie", "sessionid=good")
    assert code == 1 and "none of primary.session_cookies (demo_session)" in out
    assert "names seen: sessionid" in out
    code, out = doctor(tmp_path, f"{app}/api/me")
    assert code == 1 and "no credential" in out


def test_the_header_resolver_reads_trusted_identity_headers(tmp_path: Path, app: str) -> None:
    path = write_config(tmp_path, primary={"resolver": "header"},
                        server={"trusted_proxies": ["127.0.0.1/32"]})
    result = run("doctor", "--config", str(path), "--header", "Remote-User: carol",
                 "--header", "Remote-Groups: ops")
    assert result.returncode == 0 and "user: carol" in result.stdout, result.stdout
    result = run("doctor", "--config", str(path), "--header", "Remote-User: carol",
                 "--peer", "192.0.2.9")
    assert result.returncode == 1 and "not in server.trusted_proxies" in result.stdout
