"""API scripts that log in with a password: a current code in X-OTP, as the contract says."""

from __future__ import annotations

import base64
import sqlite3

import httpx
import pytest

from sidecar.primary import IntrospectResolver
from sidecar.web.app import create_app
from tests.conftest import Env, sqlite_path

pytestmark = pytest.mark.anyio


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def api(env: Env, auth: str, otp: str | None = None, path: str = "/api/data"):  # type: ignore[no-untyped-def]
    headers = {"accept": "application/json", "authorization": auth,
               "x-original-url": f"http://app.test{path}", "x-original-method": "GET"}
    if otp is not None:
        headers["x-otp"] = otp
    return await env.client.get("/auth/nginx", headers=headers)


async def test_password_client_needs_a_code(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    auth = basic("alice", "alice-password")

    missing = await api(env, auth)
    assert missing.status_code == 401
    assert missing.json()["error"] == "otp_required"
    assert missing.headers["x-otp"] == "required; app"
    assert missing.headers["x-totp-error"] == "otp_required"
    assert "location" not in missing.headers

    wrong = await api(env, auth, "000000")
    assert wrong.status_code == 401 and wrong.json()["error"] == "otp_invalid"

    env.clock.advance(30)
    code = env.code(secret)
    ok = await api(env, auth, code)
    assert ok.status_code == 200 and ok.headers["remote-user"] == "alice"
    # a burst of calls with the same credential and code, within api.burst_seconds
    for _ in range(3):
        assert (await api(env, auth, code)).status_code == 200
    # after the burst window the code is spent
    env.clock.advance(env.config.api.burst_seconds + 1)
    assert (await api(env, auth, code)).json()["error"] == "otp_invalid"


async def test_a_code_does_not_serve_another_credential(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    env.clock.advance(30)
    code = env.code(secret)
    assert (await api(env, basic("alice", "alice-password"), code)).status_code == 200
    # same user, the same code, but a different Authorization value: a fresh check → replay
    other = await api(env, basic("alice", "alice-password") + " ", code)
    assert other.status_code == 401


async def test_password_client_without_2fa_passes(env: Env) -> None:
    response = await api(env, basic("bob", "bob-password"))
    assert response.status_code == 200 and response.headers["remote-user"] == "bob"


async def test_wrong_password_is_anonymous_for_the_app_to_refuse(env: Env) -> None:
    response = await api(env, basic("alice", "nope"))
    assert response.status_code == 200 and "remote-user" not in response.headers


async def test_recovery_codes_are_not_accepted_in_x_otp(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, codes = await browser.enroll()
    response = await api(env, basic("alice", "alice-password"), codes[0])
    assert response.json()["error"] == "otp_invalid"
    assert (await env.sidecar.parts.storage.get_user("alice")).recovery_left == 20


async def test_the_burst_window_is_shared_by_every_instance(env: Env) -> None:
    """A code accepted on instance A serves the credential's further calls on instance B
    within ``api.burst_seconds`` (B checking it would find it used: 401), and storage holds
    neither the credential nor the code."""
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    env.clock.advance(30)
    code, auth = env.code(secret), basic("alice", "alice-password")
    other = create_app(env.config, clock=env.clock,
                       resolver=IntrospectResolver(env.config, client=env.app_client))
    await other.parts.storage.open()
    on_b = httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://app.test")
    try:
        headers = {"accept": "application/json", "authorization": auth, "x-otp": code,
                   "x-original-url": "http://app.test/api/data", "x-original-method": "GET"}
        assert (await api(env, auth, code)).status_code == 200  # A checks the code
        on_other = await on_b.get("/auth/nginx", headers=headers)
        assert on_other.status_code == 200 and on_other.headers["remote-user"] == "alice"
        with sqlite3.connect(sqlite_path(env.config)) as db:
            stored = repr(db.execute("SELECT * FROM bursts").fetchall())
        assert "burst" not in stored and code not in stored and "alice-password" not in stored
        assert auth.split()[1] not in stored
        env.clock.advance(env.config.api.burst_seconds + 1)
        spent = await on_b.get("/auth/nginx", headers=headers)
        assert spent.status_code == 401 and spent.json()["error"] == "otp_invalid"
    finally:
        await on_b.aclose()
        await other.parts.storage.close()
