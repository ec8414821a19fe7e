"""The rest of the lifecycle through real nginx: reset gate, step-up, remembered device, notices."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pyotp
import pytest

from tests.e2e.stacks import NGINX, running
from tests.e2e.steps import BROWSER, Stack, enroll, hidden, login, logout
from tests.ports import free_port

STEP_UP_SECONDS = 2


class Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        Hooks.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def hooks() -> Iterator[int]:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def life(nginx_bin: str, hooks: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {
        "rules": [{"path": "/healthz", "level": "bypass"},
                  {"path": "/account/password", "level": "optional",
                   "step_up": f"{STEP_UP_SECONDS}s"}],
        "remember_device": {"enabled": True, "max_days": 30},
        "notify": {"webhook": {"url": f"http://127.0.0.1:{hooks}/hook", "secret": "s" * 40}},
    }
    with running(NGINX, nginx_bin, tmp_path_factory.mktemp("life"), extra_config=extra) as stack:
        yield stack


def client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False, timeout=10)


def fresh_code(key: str, used: set[str]) -> str:
    """A code of a time step not used yet (the sidecar refuses a step at or before the last)."""
    for offset in (30, 0, -30):
        code = pyotp.TOTP(key).at(time.time() + offset)
        if code not in used:
            used.add(code)
            return code
    raise AssertionError("no fresh code")


def challenge(browser: httpx.Client, url: str, code: str, remember: bool = False) -> httpx.Response:
    page = browser.get(url)
    assert page.status_code == 200, page.text
    data = {"csrf": hidden(page.text, "csrf"), "rd": hidden(page.text, "rd"), "code": code}
    if remember:
        data["remember"] = "1"
    return browser.post("/_2fa/challenge", data=data)


def test_password_reset_gate(life: Stack) -> None:
    with client(life) as alice:
        login(alice, "alice")
        key, first, _ = enroll(alice)
    with client(life) as visitor:
        start = visitor.get("/password/reset")
        assert start.status_code == 303 and start.headers["location"].startswith("/_2fa/reset")
        gate = visitor.get(start.headers["location"])
        csrf = hidden(gate.text, "csrf")
        ask = visitor.post("/_2fa/reset", data={"csrf": csrf, "account": "alice@example.com",
                                                "rd": "/password/reset"})
        assert 'name="code"' in ask.text
        done = visitor.post("/_2fa/reset", data={"csrf": csrf, "account": "alice@example.com",
                                                 "rd": "/password/reset",
                                                 "code": fresh_code(key, {first})})
        assert done.status_code == 303
        form = visitor.get("/password/reset")
        assert form.status_code == 200 and 'name="email"' in form.text
        assert visitor.post("/password/reset", data={"email": "bob@example.com"}).status_code == 403
        sent = visitor.post("/password/reset", data={"email": "alice@example.com"})
        assert sent.status_code == 200 and "we sent it a link" in sent.text


def test_step_up_and_remembered_device(life: Stack) -> None:
    with client(life) as bob:
        login(bob, "bob")
        key, first, codes = enroll(bob)
        used = {first}
        assert bob.get("/account/password").status_code == 200
        time.sleep(STEP_UP_SECONDS + 1)
        asked = bob.get("/account/password")
        assert asked.status_code == 302 and "why=step_up" in asked.headers["location"]
        assert bob.get("/reports").status_code == 200  # the rest of the app still passes
        passed = challenge(bob, asked.headers["location"], fresh_code(key, used))
        assert passed.status_code == 303, passed.text
        assert bob.get("/account/password").status_code == 200
        # remember this device, then a new app login passes without a code
        logout(bob)
        login(bob, "bob")
        url = bob.get("/").headers["location"]
        # (a recovery code: the next TOTP step may be up to 30 s away)
        assert challenge(bob, url, codes[0], remember=True).status_code == 303
        assert bob.cookies.get("totp_sidecar_device")
        logout(bob)
        login(bob, "bob")
        home = bob.get("/")
        assert home.status_code == 200 and "Remote-User = bob" in home.text
        # ... but a step-up page still wants a code typed now
        assert bob.get("/account/password").status_code == 302


def test_notices_reach_the_webhook(life: Stack) -> None:
    with client(life) as carol:
        login(carol, "carol")
        key, first, codes = enroll(carol)
        logout(carol)
        login(carol, "carol")
        assert challenge(carol, carol.get("/").headers["location"], codes[0]).status_code == 303
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [h for h in Hooks.received if h["user"] == "carol"]
        if len(mine) >= 2:
            break
        time.sleep(0.1)
    assert [h["event"] for h in mine] == ["enabled", "recovery_code_used"]
    assert mine[1]["detail"] == {"remaining": 19}
    assert not re.search(r"[a-z2-9]{5}-[a-z2-9]{5}", json.dumps(mine))
