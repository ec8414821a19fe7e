"""Regression tests for the one-door bypasses that are clearest in-process (sidecar + demo app).

Same threat model as tests/e2e/test_one_door.py: the attacker knows alice's password, not her
phone, and owns bob's account with bob's phone. Here the app, the who-am-I answer or the
trusted proxy's headers are shaped directly (CONTRACT.md, "Reading a request (one door)",
"Primary session", and rd in "Forward-auth endpoints").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.config import Config
from sidecar.web.app import create_app
from tests.conftest import Browser, Env, FakeClock, make_config, running_env, sidecar_alone

pytestmark = pytest.mark.anyio

AMBIGUOUS = "ambiguous_request"
HTML = "text/html"
JSON = "application/json"
Headers = list[tuple[str, str]]


def introspect(cache_seconds: int = 0, **keys: str) -> dict[str, Any]:
    """``primary`` for the demo app's who-am-I URL; cache 0 so a change shows at once (the
    who-am-I cache runs on time.monotonic, which the FakeClock does not move)."""
    return {"resolver": "introspect", "session_cookies": ["demo_session"],
            "introspect": {"url": "http://app.test/api/me", "cache_seconds": cache_seconds, **keys}}


HEADER_PRIMARY = {"resolver": "header", "session_cookies": ["upstream_session"]}


running = running_env


@contextlib.asynccontextmanager
async def sidecar_only(config: Config, clock: FakeClock,
                       whoami: Starlette | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The sidecar alone (no demo app), its who-am-I URL answered by ``whoami`` when given."""
    async with sidecar_alone(config, clock, whoami) as (_, client):
        yield client


def tolerant(env: Env) -> httpx.AsyncClient:
    """A client of ``env``'s sidecar that gets a 500 for a crash instead of the exception."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, env.sidecar),
                                                           raise_app_exceptions=False),
                             base_url="http://app.test")


def error_of(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def assert_ambiguous(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.headers.get("remote-user"))
    assert error_of(response) == AMBIGUOUS, response.text
    assert "remote-user" not in response.headers


def assert_challenges(response: httpx.Response) -> None:
    """nginx's answer for an enrolled, unverified browser session: 401 + the challenge URL."""
    assert response.status_code == 401, (response.status_code, response.headers.get("remote-user"))
    assert urlsplit(response.headers.get("location", "")).path == "/_2fa/challenge", response.headers
    assert "remote-user" not in response.headers


def pass_cookie_set(response: httpx.Response) -> bool:
    return any(v.startswith("totp_sidecar=") and "Max-Age=0" not in v
               for v in response.headers.get_list("set-cookie"))


# -- 5. an app that keeps its session id across a login -------------------------------------
async def test_2fa_cookie_passes_only_for_the_sessions_current_user(tmp_path: Path,
                                                                    clock: FakeClock) -> None:
    """bob passed 2FA with session T; the app (keeping session ids across logins) now has T
    as alice's session. bob's 2FA cookie was still believed: 200 Remote-User bob while the
    app acts as alice. It must challenge alice."""
    async with running(make_config(tmp_path, primary=introspect()), clock) as env:
        victim, attacker = await env.victim_and_attacker()
        before = await attacker.auth("/before")
        assert before.status_code == 200 and before.headers["remote-user"] == "bob"
        token = attacker.cookies["demo_session"]
        env.demo.sessions.tokens[token] = "alice"  # alice logs in; the app keeps the session id
        clock.advance(1)
        after = await attacker.auth("/")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert_challenges(after)
        api = await attacker.auth("/api/data", accept=JSON)
        assert api.status_code == 401 and error_of(api) == "2fa_required", api.text


# -- 6. the app's logout ----------------------------------------------------------------
async def test_2fa_cookie_of_a_logged_out_session_names_nobody(tmp_path: Path,
                                                               clock: FakeClock) -> None:
    """Replaying demo_session + its 2FA cookie after the app's logout got 200 Remote-User
    alice: the app must not be told a user for a session that is nobody's (anonymous)."""
    async with running(make_config(tmp_path, primary=introspect()), clock) as env:
        alice = env.browser()
        await alice.login("alice")
        await alice.enroll()
        assert (await alice.auth("/before")).headers.get("remote-user") == "alice"
        stolen = dict(alice.cookies)
        await alice.logout()
        assert env.demo.sessions.lookup(stolen["demo_session"]) is None
        replay = Browser(env, cookies=stolen)
        clock.advance(1)
        response = await replay.auth("/")
        assert response.headers.get("remote-user") is None, "Remote-User alice after logout"
        assert response.status_code == 200  # anonymous: the app shows its own login


# -- 7. a who-am-I 200 without a usable user id -------------------------------------------
def whoami(answer: Any) -> Starlette:
    async def me(request: Request) -> Response:
        return JSONResponse(answer)

    return Starlette(routes=[Route("/api/me", me)])


async def ask(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/auth/nginx", headers={
        "cookie": "demo_session=s1", "accept": HTML, "x-original-url": "http://app.test/",
        "x-original-method": "GET"})


@pytest.mark.parametrize("answer", [{}, {"username": "x"}, {"user": ""}, {"user": ["u"]}],
                         ids=["empty", "other-key", "empty-string", "list"])
async def test_whoami_200_without_user_id_is_an_error(tmp_path: Path, clock: FakeClock,
                                                      answer: Any) -> None:
    """The app answered 200 (logged in) but gave no usable user id: the sidecar took it for
    anonymous (200, the app then acts on its own session). It is an error: 503."""
    config = make_config(tmp_path, primary=introspect())
    async with sidecar_only(config, clock, whoami(answer)) as client:
        response = await ask(client)
        assert response.status_code == 503, (response.status_code, answer)
        assert "remote-user" not in response.headers


@pytest.mark.parametrize(("user_key", "answer"), [("user", {"user": None}),
                                                  ("actor.id", {"actor": None})],
                         ids=["null-user", "null-parent"])
async def test_whoami_null_user_is_anonymous(tmp_path: Path, clock: FakeClock, user_key: str,
                                             answer: Any) -> None:
    """An explicit null is the app's way to say "nobody": anonymous, allowed on an optional path."""
    config = make_config(tmp_path, primary=introspect(user_key=user_key))
    async with sidecar_only(config, clock, whoami(answer)) as client:
        response = await ask(client)
        assert response.status_code == 200, response.text
        assert "remote-user" not in response.headers


# -- 8. repeated identity and forwarded headers from the trusted proxy ---------------------
async def test_repeated_or_listed_identity_headers_are_ambiguous(tmp_path: Path,
                                                                 clock: FakeClock) -> None:
    """primary.resolver: header. The sidecar took the first Remote-User (or the whole list)
    and answered 200, while apps may read the last one or split the list."""
    base: Headers = [("x-original-url", "http://app.test/"), ("x-original-method", "GET"),
                     ("accept", JSON), ("cookie", "upstream_session=s1")]
    async with sidecar_only(make_config(tmp_path, primary=HEADER_PRIMARY), clock) as client:
        ok = await client.get("/auth/nginx", headers=[*base, ("remote-user", "alice")])
        assert ok.status_code == 200 and ok.headers["remote-user"] == "alice"
        encoded = [(k.encode(), v.encode()) for k, v in base]
        for identity in ([(b"remote-user", b"admin"), (b"remote-user", b"alice")],
                         [(b"remote-user", b"admin"), (b"remote_user", b"alice")],
                         [(b"remote-user", b"admin, alice")],
                         [(b"remote-user", b"al\xffice")]):
            response = await client.get("/auth/nginx", headers=[*encoded, *identity])
            assert response.status_code != 200, (identity, response.headers.get("remote-user"))
            assert_ambiguous(response)
        page = await client.get("/_2fa/settings", headers=[
            ("host", "app.test"), ("accept", HTML), ("cookie", "upstream_session=s1"),
            ("remote-user", "admin"), ("remote-user", "alice")])
        assert page.status_code in (400, 401), page.status_code


async def test_repeated_forwarded_headers_are_bad_requests(tmp_path: Path,
                                                           clock: FakeClock) -> None:
    """A second X-Original-URL (to /auth/nginx) or X-Forwarded-Uri (to /auth/forward): the
    sidecar decided on the first (200) while the proxy or app may route on the other: 400."""
    identity: Headers = [("accept", JSON), ("cookie", "upstream_session=s1"),
                         ("remote-user", "alice")]
    config = make_config(tmp_path, primary=HEADER_PRIMARY,
                         rules=[{"path": "/admin", "level": "deny"}])
    async with sidecar_only(config, clock) as client:
        nginx = await client.get("/auth/nginx", headers=[
            *identity, ("x-original-method", "GET"), ("x-original-url", "http://app.test/"),
            ("x-original-url", "http://app.test/admin")])
        assert nginx.status_code == 400, (nginx.status_code, nginx.text)
        forward = await client.get("/auth/forward", headers=[
            *identity, ("x-forwarded-method", "GET"), ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.test"), ("x-forwarded-uri", "/"),
            ("x-forwarded-uri", "/admin")])
        assert forward.status_code == 400, (forward.status_code, forward.text)
        single = await client.get("/auth/forward", headers=[
            *identity, ("x-forwarded-method", "GET"), ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.test"), ("x-forwarded-uri", "/")])
        assert single.status_code == 200, single.text


# -- 9. hosts ------------------------------------------------------------------------------
async def test_malformed_host_is_400_not_500(env: Env) -> None:
    """`Host: [::1` / `X-Original-URL: http://[::1/x` crashed the sidecar (urlsplit's
    ValueError, 500) or were taken as a host; a malformed host is 400."""
    cookie = "demo_session=s1"
    async with tolerant(env) as client:
        cases: list[tuple[str, dict[str, str]]] = [
            ("/auth/nginx", {"x-original-method": "GET", "x-original-url": "http://[::1/x"}),
            ("/auth/nginx", {"x-original-method": "GET", "host": "[::1", "x-original-uri": "/x"}),
            ("/auth/nginx", {"x-original-method": "GET", "x-forwarded-host": "[::1",
                             "x-original-uri": "/x"}),
            ("/auth/forward", {"x-forwarded-method": "GET", "x-forwarded-host": "[::1",
                               "x-forwarded-uri": "/x"}),
            ("/_2fa/challenge", {"host": "[::1"}),
            ("/_2fa/challenge", {"host": "app.test", "x-forwarded-host": "[::1"}),
        ]
        for path, headers in cases:
            response = await client.get(path, headers={"accept": HTML, "cookie": cookie, **headers})
            assert response.status_code == 400, (path, headers, response.status_code)


async def test_trailing_dot_host_does_not_escape_a_host_rule(tmp_path: Path,
                                                             clock: FakeClock) -> None:
    """`app.test.` is app.test (DNS and most backends agree), but it missed the rule for
    app.test and got the default level."""
    config = make_config(tmp_path, rules=[{"host": "app.test", "level": "deny"}])
    async with running(config, clock) as env:
        alice = env.browser()
        await alice.login("alice")
        assert (await alice.auth("/x", **{"x-original-url": "http://other.test/x"})).status_code == 200
        assert (await alice.auth("/x")).status_code == 403
        for url in ("http://app.test./x", "http://APP.TEST./x", "http://app.test.:8080/x"):
            response = await alice.auth("/x", **{"x-original-url": url})
            assert response.status_code == 403, (url, response.status_code)
        forward = await env.client.get("/auth/forward", headers={
            "cookie": alice.cookie_header(), "accept": HTML, "x-forwarded-method": "GET",
            "x-forwarded-proto": "http", "x-forwarded-host": "app.test.", "x-forwarded-uri": "/x"})
        assert forward.status_code == 403, forward.status_code


# -- 10. codes as typed ---------------------------------------------------------------------
async def challenged(env: Env) -> tuple[Browser, str]:
    """alice in a new app session, at the challenge (a step later than enrollment's code)."""
    alice = env.browser()
    await alice.login("alice")
    env.clock.advance(30)
    csrf, _ = await alice.form_token("/_2fa/challenge?rd=/")
    return alice, csrf


async def test_challenge_takes_one_code_exactly_as_digits(tmp_path: Path, clock: FakeClock) -> None:
    """`code=<wrong>&code=<right>` passed (the last field won), and a right code with a
    newline, TAB, CRLF or a no-break space in or after it passed (all whitespace was
    removed). Each must be refused; the plain code then still works."""
    config = make_config(tmp_path, throttle={"max_failures": 50, "max_failures_per_client": 50})
    async with running(config, clock) as env:
        first = env.browser()
        await first.login("alice")
        secret, _ = await first.enroll()
        alice, csrf = await challenged(env)
        headers = {"accept": HTML, "host": "app.test", "cookie": alice.cookie_header()}
        shapes: list[tuple[str, Callable[[str], str | list[str]]]] = [
            ("wrong, then right", lambda c: [fresh_wrong(c), c]),
            ("LF after", lambda c: c + "\n"), ("LF inside", lambda c: c[:3] + "\n" + c[3:]),
            ("TAB after", lambda c: c + "\t"), ("TAB inside", lambda c: c[:3] + "\t" + c[3:]),
            ("CRLF after", lambda c: c + "\r\n"),
            ("CRLF inside", lambda c: c[:3] + "\r\n" + c[3:]),
            ("NBSP after", lambda c: c + "\u00a0"),
            ("NBSP inside", lambda c: c[:3] + "\u00a0" + c[3:]),
        ]
        for name, shape in shapes:
            clock.advance(30)  # a step of its own: an accepted variant cannot hide the next one
            response = await env.client.post("/_2fa/challenge", headers=headers, data={
                "csrf": csrf, "rd": "/", "code": shape(env.code(secret))})
            assert response.status_code == 400, (name, response.status_code)
            assert not pass_cookie_set(response), name
        clock.advance(30)
        accepted = await alice.post("/_2fa/challenge",
                                    {"csrf": csrf, "rd": "/", "code": env.code(secret)})
        assert accepted.status_code == 303 and pass_cookie_set(accepted), accepted.status_code


def fresh_wrong(code: str) -> str:
    return next(c for c in ("000000", "111111", "222222") if c != code)


# -- 13. rd to an allowed host, another port or scheme ---------------------------------------
async def test_rd_to_allowed_host_on_another_port_or_scheme_falls_back(tmp_path: Path,
                                                                       clock: FakeClock) -> None:
    """redirects.allowed_hosts: [x.corp.test] allowed https://x.corp.test:8443/ (another
    service) and http://x.corp.test/ (a downgrade from this https page): both fall back to /."""
    config = make_config(tmp_path, redirects={"allowed_hosts": ["x.corp.test"]})
    async with running(config, clock) as env:
        alice = env.browser()
        await alice.login("alice")
        await alice.enroll()  # verified: the challenge page sends straight on to rd

        async def followed(rd: str) -> str:
            response = await alice.get(f"/_2fa/challenge?rd={rd}", **{"x-forwarded-proto": "https"})
            assert response.status_code == 303, (rd, response.status_code)
            return response.headers["location"]

        assert await followed("https://x.corp.test/next") == "https://x.corp.test/next"
        for rd in ("https://x.corp.test:8443/", "http://x.corp.test/"):
            assert await followed(rd) == "/", rd


# -- 2. Authorization beside a session, in header mode ---------------------------------------
async def test_bearer_header_beside_a_header_mode_session_still_needs_the_2fa_cookie(
        tmp_path: Path, clock: FakeClock) -> None:
    """With the header resolver, alice's session (named by Remote-User from the trusted
    authenticator) plus any ``Authorization: Bearer`` passed as an API call (200)."""
    from sidecar.core import totp

    config = make_config(tmp_path, primary=HEADER_PRIMARY)
    app = create_app(config, clock=clock)
    await app.parts.storage.open()
    try:
        service = app.parts.accounts
        secret = await service.pending_secret("alice", session="x")
        result, _, _ = await service.complete_enrollment(
            "alice", totp.code_at(secret, clock()), "127.0.0.1", session="x")
        assert result.check.value == "ok"
        headers = {"x-original-url": "http://app.test/reports", "x-original-method": "GET",
                   "accept": HTML, "remote-user": "alice", "cookie": "upstream_session=s1"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)),
                                     base_url="http://app.test") as client:
            assert_challenges(await client.get("/auth/nginx", headers=headers))
            bogus = await client.get("/auth/nginx", headers=headers | {"authorization": "Bearer x"})
            assert_challenges(bogus)
    finally:
        await app.parts.notifier.aclose()
        await app.parts.storage.close()


# -- 4. a pending secret belongs to the app session that opened set-up -----------------------
async def test_another_session_of_the_user_never_sees_the_pending_secret(env: Env) -> None:
    """An attacker who logs in as carol (password only) and opens set-up must not see the
    secret carol will scan in her own session, nor confirm hers with it."""
    import re

    import pyotp

    victim, attacker = env.browser(), env.browser()
    await victim.login("carol")
    await attacker.login("carol")
    _, victim_page = await victim.form_token("/_2fa/enroll")
    csrf, attacker_page = await attacker.form_token("/_2fa/enroll")
    key = re.compile(r'id="secret-key">([A-Z2-7 ]+)<')
    victim_key, attacker_key = (key.search(p) for p in (victim_page, attacker_page))
    assert victim_key and attacker_key
    assert victim_key.group(1) != attacker_key.group(1)
    code = pyotp.TOTP(victim_key.group(1).replace(" ", "")).at(int(env.clock()))
    stolen = await attacker.post("/_2fa/enroll", {"csrf": csrf, "code": code})
    assert stolen.status_code == 400  # the victim's secret does not confirm another session
    assert not (await env.sidecar.parts.storage.get_user("carol")).enrolled


# -- 11. groups come from the app's current answer, not from the 2FA cookie ------------------
async def test_a_group_deny_rule_holds_once_the_app_moves_the_user(tmp_path: Path,
                                                                   clock: FakeClock) -> None:
    from sidecar.demo import app as demo_app

    config = make_config(tmp_path, primary=introspect(),
                         rules=[{"path": "/reports", "groups": ["suspended"], "level": "deny"}])
    async with running(config, clock) as env:
        browser = env.browser()
        await browser.login("bob")
        await browser.enroll()
        allowed = await browser.auth("/reports")
        assert allowed.status_code == 200 and allowed.headers["remote-groups"] == "staff"
        before = list(demo_app.DEMO_GROUPS["bob"])
        demo_app.DEMO_GROUPS["bob"] = ["suspended"]
        try:
            denied = await browser.auth("/reports")
            assert denied.status_code == 403
            assert (await browser.auth("/")).headers["remote-groups"] == "suspended"
        finally:
            demo_app.DEMO_GROUPS["bob"] = before
