"""Primary-session resolvers and 2FA cookie attributes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from sidecar.storage.sqlite import MIGRATIONS
from sidecar.web.app import create_app
from tests.conftest import Env, FakeClock, make_config, sqlite_path, start_env

pytestmark = pytest.mark.anyio

HEADER_PRIMARY = {"resolver": "header", "session_cookies": ["upstream_session"]}


async def header_client(tmp_path: Path, clock: FakeClock, peer: str) -> tuple[httpx.AsyncClient, object]:
    config = make_config(tmp_path, primary=HEADER_PRIMARY)
    app = create_app(config, clock=clock)
    await app.parts.storage.open()
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://app.test"), app


async def test_header_resolver_believes_trusted_peers_only(tmp_path: Path, clock: FakeClock) -> None:
    headers = {"x-original-url": "http://app.test/", "x-original-method": "GET", "remote-user": "alice",
               "remote-email": "alice@example.com", "cookie": "upstream_session=s1"}
    client, app = await header_client(tmp_path, clock, "127.0.0.1")
    try:
        response = await client.get("/auth/nginx", headers=headers)
        assert response.status_code == 200
        assert response.headers["remote-user"] == "alice"
        assert response.headers["remote-email"] == "alice@example.com"
        page = await client.get("/_2fa/settings", headers=headers)
        assert page.status_code == 200 and "alice@example.com" in page.text
    finally:
        await client.aclose()
        await app.parts.storage.close()  # type: ignore[attr-defined]
    client, app = await header_client(tmp_path, clock, "198.51.100.7")
    try:
        page = await client.get("/_2fa/settings", headers=headers)
        assert page.status_code == 401  # a Remote-User header from anyone else means nothing
    finally:
        await client.aclose()
        await app.parts.storage.close()  # type: ignore[attr-defined]


async def test_header_resolver_cookie_must_match_the_header_user(tmp_path: Path,
                                                                clock: FakeClock) -> None:
    client, app = await header_client(tmp_path, clock, "127.0.0.1")
    try:
        base = {"remote-user": "alice", "cookie": "upstream_session=s1", "host": "app.test"}
        enroll = await client.get("/_2fa/enroll", headers=base)
        secret = re.search(r'id="secret-key">([A-Z2-7 ]+)<', enroll.text).group(1).replace(" ", "")  # type: ignore[union-attr]
        csrf = re.search(r'name="csrf" value="([^"]+)"', enroll.text).group(1)  # type: ignore[union-attr]
        import pyotp
        done = await client.post("/_2fa/enroll", headers=base,
                                 data={"csrf": csrf, "code": pyotp.TOTP(secret).at(int(clock()))})
        cookie = done.cookies.get("totp_sidecar") or re.search(
            r"totp_sidecar=([^;]+)", done.headers["set-cookie"]).group(1)  # type: ignore[union-attr]
        both = f"upstream_session=s1; totp_sidecar={cookie}"
        ok = await client.get("/auth/nginx", headers={"x-original-url": "http://app.test/",
                                                      "x-original-method": "GET",
                                                      "remote-user": "alice", "cookie": both})
        assert ok.status_code == 200 and ok.headers["remote-user"] == "alice"
        # the same cookies with another upstream user: alice's pass does not serve mallory
        other = await client.get("/auth/nginx", headers={"x-original-url": "http://app.test/",
                                                         "x-original-method": "GET",
                                                         "remote-user": "mallory", "cookie": both})
        assert other.headers.get("remote-user") == "mallory"
    finally:
        await client.aclose()
        await app.parts.storage.close()  # type: ignore[attr-defined]


async def test_cookie_attributes_follow_the_original_scheme(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    csrf, page = await browser.form_token("/_2fa/enroll")
    secret = re.search(r'id="secret-key">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")  # type: ignore[union-attr]
    response = await browser.post("/_2fa/enroll", {"csrf": csrf, "code": env.code(secret)},
                                  **{"x-forwarded-proto": "https"})
    cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith("totp_sidecar="))
    for attribute in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=43200"):
        assert attribute in cookie
    assert "Domain" not in cookie


async def test_http_requests_get_no_secure_flag(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    csrf, _ = await browser.form_token("/_2fa/logout")
    response = await browser.post("/_2fa/logout", {"csrf": csrf})
    assert "Secure" not in response.headers["set-cookie"]


async def test_idle_timeout_refreshes_and_expires(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, cookie={"idle_timeout": "10m"})
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        await browser.enroll()
        clock.advance(120)
        response = await browser.auth()
        assert response.status_code == 200
        refreshed = response.headers["set-cookie"]
        assert refreshed.startswith("totp_sidecar=")
        browser.keep(response)
        clock.advance(9 * 60)  # 11 minutes since enrollment, 9 since the refresh
        assert (await browser.auth()).status_code == 200
        clock.advance(11 * 60)  # idle too long
        assert (await browser.auth()).status_code == 401


async def test_migrations_are_versioned_and_applied_once(env: Env) -> None:
    db = sqlite3.connect(sqlite_path(env.config))
    try:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    await env.sidecar.parts.storage.close()
    await env.sidecar.parts.storage.open()  # a restart applies nothing twice
    assert (await env.sidecar.parts.storage.get_user("nobody")).enrolled is False


async def test_group_rules_use_the_groups_of_the_app(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, rules=[{"groups": ["admins"], "level": "required"}])
    async for env in start_env(config, clock):
        carol = env.browser()
        await carol.login("carol")  # the demo app puts carol in "admins"
        response = await carol.auth("/")
        assert response.status_code == 401 and "/_2fa/enroll" in response.headers["location"]
        await carol.enroll()
        allowed = await carol.auth("/")
        assert allowed.status_code == 200 and allowed.headers["remote-groups"] == "admins"
        alice = env.browser()
        await alice.login("alice")
        assert (await alice.auth("/")).headers["remote-groups"] == "staff"
