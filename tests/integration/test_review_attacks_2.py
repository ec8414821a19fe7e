"""Adversarial review, round 2: seams left after the first review (test_review_attacks.py).

Threat model (CONTRACT.md): the attacker knows alice's app password but not her phone; alice
has 2FA on; the attacker may own bob's enrolled account. Each test here fails against the
reviewed commit and passes once the seam is closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.routing import Match, Route, Router

from sidecar.web.app import SidecarApp
from tests.conftest import FakeClock, make_config, running_env

pytestmark = pytest.mark.anyio


def _never(request: object) -> None:  # only routing is compared
    raise AssertionError


# -- 1. double-encoded dot segments: the sidecar decodes more often than the app ---------------
async def test_double_encoded_dots_do_not_borrow_the_bypass_of_the_pages_prefix(
        tmp_path: Path, clock: FakeClock) -> None:
    """HIGH. ``paths._decode`` (sidecar/core/paths.py) percent-decodes until stable and only then resolves dot
    segments, and a path whose *fully* decoded form lies under the sidecar's own prefix
    (``/_2fa``) is ``bypass``. Every app (and nginx, which passes ``$request_uri`` unchanged to
    ``proxy_pass http://app``) decodes exactly once. So
    ``GET /reports/%252e%252e/_2fa/x``: nginx routes it to ``location /`` (``$uri`` is
    ``/reports/%2e%2e/_2fa/x``), the sidecar reads ``/reports/../_2fa/x`` = ``/_2fa/x`` →
    bypass → ``200 Remote-User: alice`` without her code; the app sees
    ``/reports/%2e%2e/_2fa/x`` and routes it under ``/reports/`` (any ``{rest:path}`` route,
    a Starlette ``Mount``, Django admin's catch-all ...). The same trick lifts any ``deny`` or
    ``required`` rule (``/admin/%252e%252e/x`` is ``/x`` to the sidecar) — the first review's
    path table decodes only once, so it never tried this.

    Safe: the path as decoded once (what the app routes on), and each further decoding, are
    variants too; the strictest wins: the enrolled, unverified alice is sent to the challenge."""
    # what a real router does with the path the app receives (uvicorn decodes once)
    router = Router(routes=[Route("/reports/{rest:path}", _never, name="reports")])
    app_path = unquote("/reports/%252e%252e/_2fa/x")
    scope = {"type": "http", "path": app_path, "root_path": "", "method": "GET", "headers": []}
    assert router.routes[0].matches(scope)[0] is Match.FULL  # the app serves /reports/...

    async with running_env(make_config(tmp_path), clock) as env:
        phone = env.browser()
        await phone.login("alice")
        await phone.enroll()
        attacker = env.browser()
        await attacker.login("alice")  # the password, not the phone
        assert (await attacker.auth("/reports/x")).status_code == 401  # the usual challenge
        for path in ("/reports/%252e%252e/_2fa/x", "/reports/%25252e%25252e/_2fa/x"):
            answer = await attacker.auth(path)
            assert answer.status_code == 401, (path, answer.status_code,
                                               answer.headers.get("remote-user"))


async def test_encoded_dot_segments_the_app_does_not_resolve_stay_under_a_deny_rule(
        tmp_path: Path, clock: FakeClock) -> None:
    """HIGH (apps with prefix routes: a Starlette ``Mount``, ``{rest:path}``, Django's admin
    catch-all). The sidecar resolves dot segments *after* decoding (``%2e%2e``, ``..%2f``),
    but uvicorn/Starlette route on the decoded path with its dots left in place. With a
    ``deny`` rule on ``/admin``: ``GET /admin/%2e%2e/x`` is ``/x`` to the sidecar (default
    level, 200) and ``/admin/../x`` to the app, whose ``Mount("/admin")`` serves it; likewise
    ``/admin%2f..``. Through nginx the request reaches ``location /`` (nginx matches on
    ``/x``) and ``proxy_pass http://app`` passes the raw URI. The strictest-variant rule has
    no "decoded, dots kept" variant, so the admin area is reached.

    Safe: the decoded path with its dot segments kept is a variant too: 403 deny."""
    from starlette.routing import Mount

    async def _asgi(scope: object, receive: object, send: object) -> None:
        raise AssertionError

    router = Router(routes=[Mount("/admin", app=_asgi, name="admin")])
    rules = [{"path": "/admin", "level": "deny"}]
    async with running_env(make_config(tmp_path, rules=rules), clock) as env:
        bob = env.browser()
        await bob.login("bob")
        assert (await bob.auth("/admin/users")).status_code == 403
        for raw in ("/admin/%2e%2e/x", "/admin%2f..", "/admin/users/..%2f..%2fx"):
            scope = {"type": "http", "path": unquote(raw), "root_path": "", "method": "GET",
                     "headers": []}
            assert router.routes[0].matches(scope)[0] is Match.FULL, raw  # the app: admin
            answer = await bob.auth(raw)
            assert answer.status_code == 403, (raw, answer.status_code)


# -- 2. the forward-auth answer cache outlives a login into a kept session id --------------------
async def test_answer_cache_does_not_replay_bobs_200_after_a_login_as_alice(
        tmp_path: Path, clock: FakeClock) -> None:
    """MEDIUM (apps that keep the session id across a login; README "A login inside a kept
    session id"). The first review made an unsafe method drop the who-am-I answer of its
    credential, but ``ForwardAuth._answers`` (the 1-second cache of 200 answers, keyed on the
    proxy call's headers) is not dropped. The attacker, bob with his own 2FA cookie: GET / (200
    Remote-User bob, cached), POST /login as alice in the same session (the app keeps the id),
    GET / again with the very same headers within the second: the cached ``200 Remote-User:
    bob`` is replayed while the app now serves alice — without alice's code. A script does the
    three requests in milliseconds, as often as it likes.

    Safe: a request with an unsafe method also drops the cached answers of its credential (or
    a hit is re-checked against the resolver): the GET after the login is a 401 challenge."""
    async with running_env(make_config(tmp_path), clock) as env:
        victim, attacker = await env.victim_and_attacker()
        before = await attacker.auth("/")
        assert before.status_code == 200 and before.headers["remote-user"] == "bob"
        login = await attacker.auth("/login", method="POST")  # through auth_request as well
        assert login.status_code == 200
        env.demo.sessions.tokens[attacker.cookies["demo_session"]] = "alice"  # same session id
        after = await attacker.auth("/")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert after.status_code == 401, after.status_code


# -- 3. a stale state cache lets a second session enroll its own secret over alice's -----------
async def test_enrollment_never_replaces_a_secret_that_is_already_on(tmp_path: Path,
                                                                      clock: FakeClock) -> None:
    """HIGH (more than one instance: another's view is stale until it reads the change feed).
    ``storage.complete_enrollment`` is an unconditional upsert: it only checks that the
    posted secret is still pending *for this session*, never that the user has no secret yet;
    the only "already enrolled?" check is the page's ``visit.enrolled``, read from the
    per-instance state cache (until the instance reads the change feed). Two instances on one
    database: the attacker (alice's password, his own browser) opens /_2fa/enroll on
    instance B (B now caches "alice: not enrolled"); alice turns 2FA on through instance A
    (which drops every pending secret); the attacker reloads /_2fa/enroll on B (still "not
    enrolled": a new pending secret is made) and confirms it with his phone — the upsert
    overwrites alice's secret with his. He now holds alice's second factor, and her own
    phone no longer works.

    Safe: completing an enrollment succeeds only while the user has no secret (or at the
    generation the page saw); otherwise nothing changes and alice's secret still works."""
    import re
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    import httpx
    import pyotp

    from sidecar.demo.app import create_demo_app
    from sidecar.primary import IntrospectResolver
    from sidecar.web.app import create_app
    from tests.conftest import Env

    config = make_config(tmp_path)
    demo = create_demo_app()

    def jarless(app: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test",
                                 cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))

    app_client = jarless(demo)
    instances: list[tuple[SidecarApp, Env]] = []
    closers: list[httpx.AsyncClient | IntrospectResolver] = [app_client]
    for _ in ("A", "B"):
        resolver = IntrospectResolver(config, client=jarless(demo))
        app = create_app(config, resolver=resolver, clock=clock)
        await app.parts.storage.open()
        await app.parts.accounts.states.poll()  # read once, then not again: B's view goes stale
        client = jarless(app)
        closers += [client, resolver]
        instances.append((app, Env(app, client, app_client, clock, config, demo.state.demo)))
    (app_a, on_a), (app_b, on_b) = instances
    try:
        attacker = on_b.browser()
        await attacker.login("alice")  # the password, not the phone
        first = await attacker.get("/_2fa/enroll")
        assert first.status_code == 200
        alice = on_a.browser()
        await alice.login("alice")
        alices_secret, _ = await alice.enroll()  # through instance A
        csrf, page = await attacker.form_token("/_2fa/enroll")  # B: "not enrolled" (cached)
        key = re.search(r'id="secret-key">([A-Z2-7 ]+)<', page)
        assert key, page
        his_secret = key.group(1).replace(" ", "")
        clock.advance(30)
        await attacker.post("/_2fa/enroll",
                            {"csrf": csrf, "code": pyotp.TOTP(his_secret).at(int(clock()))})
        stored = await app_a.parts.storage.get_user("alice")
        assert app_a.parts.accounts.box.open("alice", stored.secret or "") == alices_secret, \
            "the attacker's secret replaced alice's"
    finally:
        for closer in closers:
            await closer.aclose()
        for app, _ in instances:
            await app.parts.notifier.aclose()
            await app.parts.storage.close()
