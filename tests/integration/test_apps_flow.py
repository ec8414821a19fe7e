"""Several apps behind one sidecar (issue 13, item 5), in process: four hosts, two demo apps.

* ``a.test``: the top-level app (``default``), the demo app with ``demo_session``;
* ``b.test``: app ``b``, a second demo app with ``b_session``, its own issuer and rules, its
  own users (namespace ``b``);
* ``c.test``: app ``c``, the first demo app again, sharing the top-level app's users
  (``users_namespace: default``);
* ``d.test`` and ``*.d.test``: app ``d``, the first demo app again (the very same session
  cookie), but its own users: a 2FA cookie of ``a.test`` must not pass there.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sidecar.config import Config, parse_config
from sidecar.core.apps import SEPARATOR, storage_key
from sidecar.demo.app import create_demo_app
from sidecar.notify import Notice, mail_text
from sidecar.primary import IntrospectResolver
from sidecar.web.app import create_app
from sidecar.wiring import build_parts
from tests.conftest import Browser, Env, FakeClock, config_dict

pytestmark = pytest.mark.anyio


def apps_config(tmp_path: Path, **more: Any) -> Config:
    def app(name: str, host: str, cookie: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "hosts": [host], **extra,
                "primary": {"session_cookies": [cookie], "login_url": "/login",
                            "logout_url": "/logout",
                            "introspect": {"url": f"http://{host}/api/me"}}}

    top: dict[str, Any] = {"hosts": ["a.test"], "redirects": {"allowed_hosts": ["http://c.test"]}}
    data = config_dict(
        tmp_path, **(top | more),
        apps=[app("b", "b.test", "b_session", totp={"issuer": "B Corp"},
                  branding={"product_name": "B Portal"}, redirects={"allowed_hosts": []},
                  rules=[{"path": "/reports", "level": "required"}]),
              app("c", "c.test", "demo_session", users_namespace="default",
                  totp={"issuer": "C Corp"}),
              {**app("d", "d.test", "demo_session"), "hosts": ["d.test", "*.d.test"]}])
    return parse_config(data, environ={})


@contextlib.asynccontextmanager
async def running_apps(config: Config, clock: FakeClock) -> AsyncIterator[tuple[Env, Any]]:
    """The sidecar with every app, the first demo app (a, c, d) and the second (b)."""
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    demo, other = create_demo_app(), create_demo_app("b_session")
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test",
                                 cookies=jar) for app in (demo, demo, other)]
    resolvers = {name: IntrospectResolver(config.app(name).config, client=clients[0])
                 for name in ("default", "c", "d")}
    resolvers["b"] = IntrospectResolver(config.app("b").config, client=clients[2])
    sidecar = create_app(config, resolvers=resolvers, clock=clock)
    await sidecar.parts.open()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sidecar), base_url="http://a.test",
                               cookies=jar)
    try:
        yield Env(sidecar, client, clients[1], clock, config, demo.state.demo), other
    finally:
        await client.aclose()
        await sidecar.parts.aclose()
        for each in clients:
            await each.aclose()


@pytest.fixture
async def apps(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[Env, Any]]:
    async with running_apps(apps_config(tmp_path), clock) as env:
        yield env


async def login_b(env: Env, other: Any, user: str = "alice") -> Browser:
    """A browser signed in to app b (the second demo app)."""
    browser = Browser(env, host="b.test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other),
                                 base_url="http://b.test") as client:
        browser.keep(await client.post("/login", data={"username": user,
                                                       "password": f"{user}-password"}))
    assert "b_session" in browser.cookies
    return browser


async def on(host: str, env: Env, user: str = "alice") -> Browser:
    """A browser signed in to the first demo app (apps default, c, d), on ``host``."""
    browser = Browser(env, host=host)
    await browser.login(user)
    return browser


async def test_pages_follow_the_host_they_are_served_on(apps: tuple[Env, Any]) -> None:
    env, other = apps
    b = await login_b(env, other)
    _, page = await b.form_token("/_2fa/enroll")
    assert "B Portal" in page and "B Corp" in page
    assert "Test App" not in page
    assert re.search(r"otpauth://totp/B%20Corp:[^\"]*issuer=B%20Corp", page.replace("&amp;", "&"))
    a = await on("a.test", env)
    _, page = await a.form_token("/_2fa/enroll")
    assert "Test App" in page and "B Corp" not in page and "B Portal" not in page


async def test_each_app_has_its_own_rules(apps: tuple[Env, Any]) -> None:
    env, other = apps
    b = await login_b(env, other)
    sent = await b.auth("/reports")
    assert sent.status_code == 401 and "b.test/_2fa/enroll" in sent.headers["location"]
    a = await on("a.test", env)
    assert (await a.auth("/reports")).status_code == 200  # the top level has no such rule


async def test_metrics_count_each_apps_decisions_apart(apps: tuple[Env, Any]) -> None:
    env, other = apps
    b = await login_b(env, other)
    assert (await b.auth("/reports")).status_code == 401
    a = await on("a.test", env)
    assert (await a.auth("/reports")).status_code == 200
    assert (await a.auth("/")).status_code == 200
    registry = env.sidecar.parts.metrics.registry

    def decided(app: str, outcome: str) -> float:
        return registry.get_sample_value("totp_sidecar_decisions_total",
                                         {"app": app, "outcome": outcome}) or 0.0

    assert decided("b", "enroll") == 1 and decided("b", "allow") == 0
    assert decided("default", "allow") == 2 and decided("default", "enroll") == 0
    text = (await env.client.get("/metrics")).text  # one /metrics for every app
    assert 'totp_sidecar_auth_seconds_count{app="b"} 1.0' in text
    assert 'totp_sidecar_whoami_errors_total{app="d",kind="status"} 0.0' in text


async def test_apps_that_do_not_share_a_namespace_do_not_share_users(apps: tuple[Env, Any]) -> None:
    env, other = apps
    a = await on("a.test", env)
    await a.enroll()
    storage = env.sidecar.parts.storage
    assert (await storage.get_user("alice")).enrolled  # the top level keeps raw user ids
    b = await login_b(env, other)
    allowed = await b.auth("/")
    assert allowed.status_code == 200 and allowed.headers["remote-user"] == "alice"
    assert not (await storage.get_user(storage_key("b", "alice"))).enrolled
    await b.enroll()  # b's own enrollment: asks b's code from now on
    assert (await storage.get_user(storage_key("b", "alice"))).enrolled
    again = await login_b(env, other)
    assert (await again.auth("/")).status_code == 401
    # a fresh login on d (the very same app session as a, but d's own users): no code asked
    d = await on("d.test", env)
    assert (await d.auth("/")).status_code == 200


async def test_a_login_on_one_app_ends_the_cached_answers_of_another_with_that_cookie(
        apps: tuple[Env, Any]) -> None:
    """a and c run on the same app login (one session cookie): a login POST sent through c
    that keeps the session id ends what a remembered of that session."""
    env, _ = apps
    a = await on("a.test", env, "bob")
    first = await a.auth("/")
    assert first.status_code == 200 and first.headers["remote-user"] == "bob"
    a.host = "c.test"
    assert (await a.auth("/login", method="POST")).status_code == 200
    env.demo.sessions.tokens[a.cookies["demo_session"]] = "carol"  # the same session id
    a.host = "a.test"
    after = await a.auth("/")
    assert after.headers.get("remote-user") == "carol", after.headers


async def test_apps_that_share_a_namespace_share_enrollment(apps: tuple[Env, Any]) -> None:
    env, _ = apps
    a = await on("a.test", env)
    secret, _ = await a.enroll()
    c = await on("c.test", env)
    sent = await c.auth("/")
    assert sent.status_code == 401 and "c.test/_2fa/challenge" in sent.headers["location"]
    _, prompt = await c.form_token("/_2fa/challenge?rd=/")
    assert "C Corp" in prompt
    env.clock.advance(30)
    passed = await c.challenge(env.code(secret))
    assert passed.status_code == 303
    assert (await c.auth("/")).status_code == 200


async def test_a_2fa_cookie_does_not_cross_to_another_namespace(apps: tuple[Env, Any]) -> None:
    """d reads the same app session as a and the browser sends a's 2FA cookie there (one
    cookie domain): it is a's users' pass, never d's."""
    env, _ = apps
    a = await on("a.test", env)
    await a.enroll()
    d = Browser(env, cookies=dict(a.cookies), host="d.test")
    _, _ = await d.enroll()  # alice enrolls in d too, with the same app session
    pass_a, pass_d = a.cookies["totp_sidecar"], d.cookies["totp_sidecar"]
    assert pass_a != pass_d
    assert (await a.auth("/")).status_code == 200 and (await d.auth("/")).status_code == 200
    a.cookies["totp_sidecar"], d.cookies["totp_sidecar"] = pass_d, pass_a
    assert (await a.auth("/")).status_code == 401
    assert (await d.auth("/")).status_code == 401
    below = Browser(env, cookies=dict(d.cookies), host="x.d.test")  # the wildcard: app d
    below.cookies["totp_sidecar"] = pass_d
    assert (await below.auth("/")).status_code == 200


async def test_rd_never_crosses_to_another_apps_host(apps: tuple[Env, Any]) -> None:
    env, other = apps
    a = await on("a.test", env)
    for target, expected in (("http://b.test/reports", "/"), ("http://d.test/", "/"),
                             ("http://c.test/x", "http://c.test/x"),  # a's redirects allow it
                             ("http://a.test/x", "http://a.test/x")):
        response = await a.get(f"/_2fa/challenge?rd={quote(target, safe='')}")
        assert response.status_code == 303 and response.headers["location"] == expected, target
    b = await login_b(env, other)
    response = await b.get(f"/_2fa/challenge?rd={quote('http://c.test/x', safe='')}")
    assert response.headers["location"] == "/"  # b gave its own (empty) redirects


async def test_sign_out_uses_the_apps_own_cookies_and_logout_url(apps: tuple[Env, Any]) -> None:
    env, other = apps
    b = await login_b(env, other)
    await b.enroll()
    again = await login_b(env, other)
    csrf, page = await again.form_token("/_2fa/challenge?rd=/")
    assert "Not you?" in page
    action = re.search(r'<form[^>]+action="([^"]*signout[^"]*)"', page)
    assert action, page
    out = await again.post(action.group(1).replace("&amp;", "&"), {"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/logout"
    expired = [c for c in out.headers.get_list("set-cookie") if "Max-Age=0" in c]
    assert any(c.startswith("b_session=") for c in expired), expired
    assert not any(c.startswith("demo_session=") for c in expired), expired


async def test_a_host_no_app_claims_is_refused(apps: tuple[Env, Any]) -> None:
    env, _ = apps
    stranger = await on("elsewhere.test", env)
    refused = await stranger.auth("/")
    assert refused.status_code == 400 and refused.json()["error"] == "unknown_host"
    page = await stranger.get("/_2fa/settings")
    assert page.status_code == 404
    assert (await env.client.get("/healthz", headers={"host": "elsewhere.test"})).text == "ok"
    malformed = await stranger.auth("/", **{"x-original-url": "http://bad host/"})
    assert malformed.status_code == 400


async def test_a_catch_all_top_level_app_serves_unclaimed_hosts(tmp_path: Path,
                                                                 clock: FakeClock) -> None:
    config = apps_config(tmp_path, hosts=[])
    async with running_apps(config, clock) as (env, _):
        stranger = await on("elsewhere.test", env)
        await stranger.enroll()
        assert (await env.sidecar.parts.storage.get_user("alice")).enrolled
        a = await on("a.test", env)
        assert (await a.auth("/")).status_code == 401  # the same (top-level) users


async def test_a_host_read_two_ways_is_refused_not_routed(apps: tuple[Env, Any]) -> None:
    """Two X-Original-URL lines (one per app) or two Host lines: the top-level app's door
    refuses them as it always has (400), never one app's answer for the other's host."""
    env, other = apps
    b = await login_b(env, other)
    headers = [("accept", "text/html"), ("cookie", b.cookie_header()), ("x-original-method", "GET"),
               ("x-original-url", "http://b.test/"), ("x-original-url", "http://a.test/")]
    twice = await env.client.get("/auth/nginx", headers=httpx.Headers(headers))
    assert twice.status_code == 400 and twice.json()["error"] == "bad_request"
    pages = await env.client.get("/_2fa/settings", headers=httpx.Headers(
        [("accept", "text/html"), ("host", "b.test"), ("host", "a.test")]))
    assert pages.status_code == 400


async def test_the_same_request_again_goes_to_the_same_app(apps: tuple[Env, Any]) -> None:
    env, other = apps
    b = await login_b(env, other)
    a = await on("a.test", env)
    await a.enroll()
    for _ in range(3):  # remembered choices never mix the two hosts up
        assert (await b.auth("/")).headers.get("remote-user") == "alice"
        assert (await a.auth("/")).status_code == 200
        a.cookies["demo_session"], kept = "other", a.cookies["demo_session"]
        assert (await a.auth("/")).status_code == 200  # nobody logged in: anonymous
        a.cookies["demo_session"] = kept


def test_notices_name_the_user_as_the_app_does_and_its_issuer(tmp_path: Path) -> None:
    config = apps_config(tmp_path)
    notice = Notice("enabled", storage_key("b", "alice"), 1_800_000_000)
    assert notice.payload() == {"event": "enabled", "user": "alice", "time": 1_800_000_000,
                                "detail": {}, "users_namespace": "b"}
    assert Notice("enabled", "alice", 1).payload()["user"] == "alice"
    assert "users_namespace" not in Notice("enabled", "alice", 1).payload()
    assert "account alice," in mail_text(notice, "B Corp") and SEPARATOR not in mail_text(
        notice, "B Corp")
    parts = build_parts(config)
    assert parts.notifier.issuers == {"default": "Test App", "b": "B Corp", "d": "Test App"}


RESET = {"paths": ["/password/reset"], "account_field": "email"}


async def test_each_app_has_its_own_password_reset_gate(tmp_path: Path, clock: FakeClock) -> None:
    """``password_reset`` per app, never inherited; a grant of one app's gate is nothing at
    another's (the same account may be another person there)."""
    data = dict(config_dict(tmp_path, hosts=["a.test"], password_reset=RESET | {"app_url": "http://a.test"},
                         apps=[{"name": "b", "hosts": ["b.test"], "password_reset":
                                RESET | {"app_url": "http://b.test"}},
                               {"name": "c", "hosts": ["c.test"]}]))
    config = parse_config(data, environ={})
    assert config.app("b").config.password_reset.app_url == "http://b.test"
    assert config.app("c").config.password_reset.paths == ()  # not the top level's
    async with running_apps_plain(config, clock) as env:
        on_a, on_b, on_c = Browser(env, host="a.test"), Browser(env, host="b.test"), Browser(
            env, host="c.test")
        page = await on_a.get("/_2fa/reset?rd=/password/reset")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf
        passed = await on_a.post("/_2fa/reset", {"csrf": csrf.group(1), "account": "bob@example.com",
                                                 "rd": "/password/reset"})
        assert passed.status_code == 303 and "totp_sidecar_reset_grant" in on_a.cookies
        # b's gate: its own page; a's grant and a's form token are refused there
        assert (await on_b.get("/_2fa/reset?rd=/password/reset")).status_code == 200
        on_b.cookies["totp_sidecar_reset_grant"] = on_a.cookies["totp_sidecar_reset_grant"]
        forwarded = await on_b.get("/password/reset")
        assert forwarded.status_code == 303 and forwarded.headers["location"].startswith("/_2fa/reset")
        refused = await on_b.post("/_2fa/reset", {"csrf": csrf.group(1), "account": "bob@example.com",
                                                  "rd": "/password/reset"})
        assert refused.status_code in (400, 403) and "totp_sidecar_reset_grant" not in {
            c.split("=")[0] for c in refused.headers.get_list("set-cookie")}
        # c gives no password_reset: no gate there
        assert (await on_c.get("/password/reset")).status_code == 404
        assert (await on_c.get("/_2fa/reset")).status_code == 404


@contextlib.asynccontextmanager
async def running_apps_plain(config: Config, clock: FakeClock) -> AsyncIterator[Env]:
    """The sidecar with every app asking the first demo app who is logged in."""
    demo = create_demo_app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=demo), base_url="http://app.test")
    resolvers = {app.name: IntrospectResolver(app.config, client=client)
                 for app in config.every_app}
    sidecar = create_app(config, resolvers=resolvers, clock=clock, reset_client=client)
    await sidecar.parts.open()
    front = httpx.AsyncClient(transport=httpx.ASGITransport(app=sidecar), base_url="http://a.test")
    try:
        yield Env(sidecar, front, client, clock, config, demo.state.demo)
    finally:
        await front.aclose()
        await sidecar.parts.aclose()
        for site in sidecar.sites.values():
            if site.reset is not None and site.reset.client is not client:
                await site.reset.aclose()
        await client.aclose()
