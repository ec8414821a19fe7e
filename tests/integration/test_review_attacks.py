"""Adversarial review of the "one door" commit: seams that remain.

Threat model (CONTRACT.md, "Reading a request (one door)"): the attacker knows alice's app
password but not her phone; alice has 2FA on; the attacker may own bob's enrolled account.
Each test here failed against the reviewed commit and passes since the seam was closed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import httpx
import pyotp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.core import totp
from sidecar.demo import app as demo_app
from sidecar.web.app import SidecarApp
from tests.conftest import Browser, Env, FakeClock, make_config, running_env, sidecar_alone

pytestmark = pytest.mark.anyio

HTML = "text/html"
JSON = "application/json"
GRANT = "totp_sidecar_reset_grant"
RESET = {"paths": ["/password/reset"], "account_field": "email", "app_url": "http://app.test"}
HEADER_PRIMARY = {"resolver": "header", "session_cookies": ["upstream_session"]}


running = running_env
sidecar_with = sidecar_alone


async def turn_on(app: SidecarApp, user: str, clock: FakeClock) -> str:
    """2FA on for ``user`` straight through the service; the secret."""
    service = app.parts.accounts
    secret = await service.pending_secret(user, session="setup")
    result, _, _ = await service.complete_enrollment(user, totp.code_at(secret, clock()),
                                                     "192.0.2.9", session="setup")
    assert result.check.value == "ok"
    return secret


def php_cookies(header: str) -> dict[str, str]:
    """Cookies as PHP's $_COOKIE keys them: names url-decoded, '.', ' ' and '[' made '_',
    leading spaces dropped, the first of a name kept."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.lstrip(" ").partition("=")
        if not sep:
            continue
        name = unquote(name)
        for char in ". [":
            name = name.replace(char, "_")
        out.setdefault(name, unquote(value))
    return out


# -- 1. a session cookie under a name the app folds, beside a Bearer header -------------------
async def test_folded_session_cookie_with_bearer_header_is_not_an_api_call(
        tmp_path: Path, clock: FakeClock) -> None:
    """HIGH. A PHP app keys ``demo.session`` (and ``demo%5Fsession``) as its session cookie
    ``demo_session``. The door folds the name to notice duplicates, but a lone folded name is
    not counted as the session: ``session_key`` is empty, so a junk ``Authorization: Bearer x``
    makes the request a *bearer API call*, which ``api.bearer: pass`` (the default) lets
    through. The app's who-am-I (the same PHP) says alice: 200 Remote-User alice, no code.

    Repro: ``Cookie: demo.session=<alice's session>`` + ``Authorization: Bearer x``.
    Safe: a cookie that the app may read as its session makes the request a cookie session
    (or ambiguous): 401 (challenge / ambiguous), never 200."""
    sessions = {"ALICE-SID": "alice"}

    async def me(request: Request) -> Response:
        user = sessions.get(php_cookies(request.headers.get("cookie", "")).get("demo_session", ""))
        return JSONResponse({"user": user}) if user else JSONResponse({}, 401)

    config = make_config(tmp_path, primary={
        "resolver": "introspect", "session_cookies": ["demo_session"],
        "introspect": {"url": "http://app.test/api/me", "cache_seconds": 0}})
    async with sidecar_with(config, clock, Starlette(routes=[Route("/api/me", me)])) as (app, client):
        await turn_on(app, "alice", clock)
        base = {"accept": JSON, "x-original-url": "http://app.test/reports",
                "x-original-method": "GET"}
        plain = await client.get("/auth/nginx", headers=base | {
            "cookie": "demo_session=ALICE-SID", "authorization": "Bearer x"})
        assert plain.status_code == 401  # the plain name: a cookie session, 2FA asked
        for name in ("demo.session", "demo%5Fsession"):
            response = await client.get("/auth/nginx", headers=base | {
                "cookie": f"{name}=ALICE-SID", "authorization": "Bearer x"})
            assert response.status_code != 200, (name, response.headers.get("remote-user"))
            assert "remote-user" not in response.headers


# -- 2. the reset gate forwards a body the app decodes with another charset -------------------
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("content_type", [
    [FORM + "; charset=cp037"],
    [FORM, FORM + "; charset=cp037"],  # gunicorn's WSGI environ keeps the last Content-Type
], ids=["charset-parameter", "second-content-type-line"])
async def test_reset_form_the_app_decodes_otherwise_is_not_forwarded(
        tmp_path: Path, clock: FakeClock, content_type: list[str]) -> None:
    """MEDIUM. The gate reads the forwarded reset form as UTF-8 under the first Content-Type
    line, whatever that says, but forwards every Content-Type line as sent. Django decodes a
    form body in the ``charset`` of its Content-Type (HttpRequest.encoding), and under gunicorn
    CONTENT_TYPE is the last line. One body reads ``email=bob@example.com`` to the gate (bob
    has no 2FA: a grant with the account alone) and ``email=alice@example.com`` to Django:
    alice's password reset without her code.

    Repro: a grant for bob, then POST /password/reset with
    ``Content-Type: application/x-www-form-urlencoded; charset=cp037`` (or that as a second
    Content-Type line) and the body ``email=bob%40example.com&z=`` + cp037("&email=alice@…").
    Safe: a reset form whose type the gate does not read exactly as the app may (a charset
    other than UTF-8, a repeated Content-Type) is refused and nothing reaches the app."""
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8")
    from django.http import QueryDict  # type: ignore[import-untyped]

    body = b"email=bob%40example.com&z=" + "&email=alice@example.com".encode("cp037")
    django_sees = QueryDict(body, encoding="cp037").getlist("email")
    assert django_sees == ["alice@example.com"], django_sees  # the app's reading

    async with running(make_config(tmp_path, password_reset=RESET), clock) as env:
        visitor = await granted(env, "bob@example.com")
        response = await env.client.post("/password/reset", content=body, headers=[
            ("accept", HTML), ("host", "app.test"), ("cookie", visitor.cookie_header()),
            *(("content-type", value) for value in content_type)])
        assert response.status_code in (400, 403, 415), response.status_code
        assert env.demo.reset_requests == [], env.demo.reset_requests


async def gate_csrf(browser: Browser) -> str:
    page = await browser.get("/_2fa/reset?rd=/password/reset")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


async def granted(env: Env, account: str) -> Browser:
    visitor = env.browser()
    csrf = await gate_csrf(visitor)
    passed = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": account,
                                                "rd": "/password/reset"})
    assert passed.status_code == 303 and GRANT in visitor.cookies, passed.text
    return visitor


# -- 3. a non-ASCII byte in any cookie (or Authorization) crashes the decision -----------------
@pytest.mark.parametrize("headers", [
    [(b"cookie", b"_ga=caf\xc3\xa9; demo_session=S")],  # a JS-set analytics cookie in UTF-8
    [(b"cookie", b"demo_session=S"), (b"authorization", b"Basic \xe9")],
    [(b"authorization", b"Bearer \xe9")],
], ids=["utf8-analytics-cookie", "session-and-latin1-authorization", "latin1-bearer"])
async def test_non_ascii_header_bytes_never_crash_forward_auth(env: Env,
                                                               headers: list[tuple[bytes, bytes]]
                                                               ) -> None:
    """MEDIUM (availability; 500 + traceback). A cookie the sidecar does not watch may hold
    any byte (browsers send UTF-8 cookie values that scripts set); the door accepts it, then
    the who-am-I call hands the latin-1 text to httpx, which encodes header values as ASCII:
    UnicodeEncodeError, 500 on /auth/nginx, so nginx answers 500 for every request of that
    browser (and any client can make the sidecar log tracebacks at will).

    Repro: ``Cookie: _ga=café; demo_session=S`` to /auth/nginx.
    Safe: a decision (200/401/403), or 400/401 ambiguous; never a 5xx."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, env.sidecar),
                                                               raise_app_exceptions=False),
                                 base_url="http://app.test") as client:
        response = await client.get("/auth/nginx", headers=[
            *headers, (b"x-original-url", b"http://app.test/"), (b"x-original-method", b"GET"),
            (b"accept", b"text/html")])
        assert response.status_code < 500, response.status_code
        page = await client.get("/_2fa/settings", headers=[
            *headers, (b"host", b"app.test"), (b"accept", b"text/html")])
        assert page.status_code < 500, page.status_code


# -- 4. the who-am-I cache outlives a login into the same app session ------------------------
async def test_cached_whoami_answer_does_not_let_bobs_pass_serve_alice(tmp_path: Path,
                                                                       clock: FakeClock) -> None:
    """MEDIUM (apps that keep the session id across a login). bob passes 2FA in app session
    T; the attacker then logs in as alice in the same browser and the app keeps T, now alice's.
    For ``primary.introspect.cache_seconds`` (default 5 s) the sidecar still takes T for bob:
    200 Remote-User bob while the app serves alice, without alice's code. The attacker can
    repeat the dance (log in as bob, one request, log in as alice) as often as he likes.
    tests/integration/test_one_door_flow.py (case 5) only passes with cache_seconds 0.

    Safe: a request with an unsafe method (the login POST) drops the who-am-I answer of its
    credential and keeps none for ``cache_seconds``, so the next request asks the app: 401
    challenge. (A login by GET into a kept session id needs ``cache_seconds: 0``: README.)"""
    async with running(make_config(tmp_path), clock) as env:  # the default 5 s who-am-I cache
        victim, attacker = await env.victim_and_attacker()
        before = await attacker.auth("/before")
        assert before.status_code == 200 and before.headers["remote-user"] == "bob"
        # the attacker logs in as alice in the same browser; the app keeps the session id. The
        # login POST goes through the proxy (auth_request) like every request of the app.
        login = await attacker.auth("/login", method="POST")
        assert login.status_code == 200
        env.demo.sessions.tokens[attacker.cookies["demo_session"]] = "alice"  # login, same id
        clock.advance(2)
        after = await attacker.auth("/reports")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert after.status_code == 401, after.status_code


# -- 5. no session credential: every "session" of a user shares one pending secret -----------
async def test_pending_secret_is_not_shared_by_sessions_without_a_session_cookie(
        tmp_path: Path, clock: FakeClock) -> None:
    """MEDIUM. The pending secret is keyed by the fingerprint of the app-session cookies. With
    ``primary.resolver: header`` and an authenticator that needs no cookie (client
    certificates, Kerberos, proxy Basic auth) that key is "" for every browser: whoever
    authenticates as carol and opens /_2fa/enroll first fixes the secret that carol is then
    shown and confirms. The attacker knows carol's TOTP secret for good.

    Repro: header mode, GET /_2fa/enroll with ``Remote-User: carol`` and no cookie, twice.
    Safe: two browsers never see the same pending secret (bind it to something of the
    browser's own, or refuse set-up without a session to bind to)."""
    async with sidecar_with(make_config(tmp_path, primary=HEADER_PRIMARY), clock) as (_, client):
        key = re.compile(r'id="secret-key">([A-Z2-7 ]+)<')
        seen = []
        for _ in ("attacker", "victim"):  # two browsers: no cookie of one reaches the other
            client.cookies.clear()
            page = await client.get("/_2fa/enroll", headers={
                "host": "app.test", "accept": HTML, "remote-user": "carol"})
            assert page.status_code == 200, page.status_code
            match = key.search(page.text)
            assert match, page.text
            seen.append(match.group(1).replace(" ", ""))
        assert seen[0] != seen[1], "the attacker's set-up page showed carol's secret"


# -- 6. the reset gate knows an e-mail address only from the sidecar's own form posts ---------
async def test_reset_gate_asks_the_code_for_the_users_current_email(tmp_path: Path,
                                                                    clock: FakeClock) -> None:
    """MEDIUM. The gate maps an account to a user through ``contacts``, which is written only
    when the user POSTs one of the sidecar's forms (set-up, disable...). alice set up 2FA with
    alice@example.com and later changed her address in the app; she keeps using the app (every
    request's who-am-I answer carries the new address, and she even opens the settings page),
    but the gate still does not know it: someone who reads alice's mail passes the gate with
    the new address and no code, and the reset form for it reaches the app.

    Safe: the address the app currently reports for alice is alice's at the gate: it asks
    for her code."""
    # who-am-I answers are not reused here: the test is about the gate, not that cache (whose
    # seconds run on the real monotonic clock, not the tests' fake one)
    uncached = {"resolver": "introspect", "session_cookies": ["demo_session"],
                "introspect": {"url": "http://app.test/api/me", "cache_seconds": 0}}
    async with running(make_config(tmp_path, password_reset=RESET, primary=uncached), clock) as env:
        alice = env.browser()
        await alice.login("alice")
        await alice.enroll()
        old = demo_app.DEMO_USERS["alice"]
        demo_app.DEMO_USERS["alice"] = (old[0], "alice@new.example", old[2])
        try:
            clock.advance(10)
            assert (await alice.auth("/reports")).headers.get("remote-email") == "alice@new.example"
            assert (await alice.get("/_2fa/settings")).status_code == 200
            visitor = env.browser()
            csrf = await gate_csrf(visitor)
            response = await visitor.post("/_2fa/reset", {
                "csrf": csrf, "account": "alice@new.example", "rd": "/password/reset"})
            assert GRANT not in visitor.cookies, "granted without alice's code"
            assert response.status_code == 200 and 'name="code"' in response.text
        finally:
            demo_app.DEMO_USERS["alice"] = old


# -- 7. the X-OTP burst is keyed by the Authorization header, not by the user it passed ------
async def test_otp_burst_does_not_pass_another_user(tmp_path: Path, clock: FakeClock) -> None:
    """HIGH (same lever as 1, a second defect). A right X-OTP code lets further calls with the
    same Authorization and code pass for ``api.burst_seconds`` without a check, whoever the
    app now says the caller is. bob calls with his own password and his own code; then the
    same Authorization and code plus ``demo.session=<alice's session>`` (a PHP app reads it
    as its session and prefers it to Basic; the door does not count it as a session cookie):
    the app says alice, the burst entry passes: 200 Remote-User alice, with bob's code.

    Safe: a burst entry only serves the user whose code it checked (and the cookie trick is
    ambiguous or a cookie session): never 200 Remote-User alice."""
    import base64

    sessions = {"ALICE-SID": "alice"}

    async def me(request: Request) -> Response:
        user = sessions.get(php_cookies(request.headers.get("cookie", "")).get("demo_session", ""))
        if user is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "basic":
                name, _, password = base64.b64decode(value).decode().partition(":")
                user = name if password == f"{name}-password" else None
        return JSONResponse({"user": user}) if user else JSONResponse({}, 401)

    config = make_config(tmp_path, primary={
        "resolver": "introspect", "session_cookies": ["demo_session"],
        "introspect": {"url": "http://app.test/api/me", "cache_seconds": 0}})
    async with sidecar_with(config, clock, Starlette(routes=[Route("/api/me", me)])) as (app, client):
        await turn_on(app, "alice", clock)
        bob_secret = await turn_on(app, "bob", clock)
        clock.advance(30)
        basic = "Basic " + base64.b64encode(b"bob:bob-password").decode()
        base = {"accept": JSON, "x-original-url": "http://app.test/api/data",
                "x-original-method": "GET", "authorization": basic,
                "x-otp": pyotp.TOTP(bob_secret).at(int(clock()))}
        own = await client.get("/auth/nginx", headers=base)
        assert own.status_code == 200 and own.headers["remote-user"] == "bob", own.text
        borrowed = await client.get("/auth/nginx", headers=base | {"cookie": "demo.session=ALICE-SID"})
        assert borrowed.headers.get("remote-user") != "alice", "bob's code passed alice"
        assert borrowed.status_code != 200, borrowed.status_code
