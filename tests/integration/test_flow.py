"""The main path through the real ASGI apps (sidecar + demo app) and a real SQLite file."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sidecar.errors import StorageUnavailable
from sidecar.states import STALE_SECONDS
from sidecar.storage import SQLiteStorage
from tests.conftest import Env, FakeClock, make_config, sqlite_path, start_env

pytestmark = pytest.mark.anyio


async def test_anonymous_passes_without_identity(env: Env) -> None:
    response = await env.browser().auth("/reports")
    assert response.status_code == 200
    assert "remote-user" not in response.headers


async def test_logged_in_without_2fa_passes_with_identity(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    response = await browser.auth("/reports")
    assert response.status_code == 200
    assert response.headers["remote-user"] == "alice"
    assert response.headers["remote-email"] == "alice@example.com"
    assert response.headers["remote-name"] == "Alice Example"
    assert response.headers["cache-control"] == "no-store, private"
    assert "Cookie" in response.headers["vary"]


async def test_enrollment_page_shows_qr_and_the_same_key_on_reload(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, first = await browser.form_token("/_2fa/enroll")
    _, again = await browser.form_token("/_2fa/enroll")
    key = re.search(r'id="secret-key">([A-Z2-7 ]+)<', first)
    assert key is not None
    assert key.group(0) in again  # same secret: no second entry in the user's app
    groups = key.group(1).split(" ")
    assert len(groups) == 8 and all(len(g) == 4 for g in groups)
    assert "<svg" in first and "http" not in first.split("<svg", 1)[1].split("</svg>")[0].replace(
        "http://www.w3.org", "")
    assert "alice@example.com" in first
    assert 'autocomplete="one-time-code"' in first and 'inputmode="numeric"' in first


async def test_pending_secret_expires(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, first = await browser.form_token("/_2fa/enroll")
    env.clock.advance(env.config.totp.enrollment_timeout + 1)
    _, later = await browser.form_token("/_2fa/enroll")
    key = re.compile(r'id="secret-key">([A-Z2-7 ]+)<')
    assert key.search(first).group(1) != key.search(later).group(1)  # type: ignore[union-attr]


async def test_wrong_enrollment_code_changes_nothing(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    csrf, _ = await browser.form_token("/_2fa/enroll")
    response = await browser.post("/_2fa/enroll", {"csrf": csrf, "code": "000000"})
    assert response.status_code == 400
    assert "not valid" in response.text
    assert not (await env.sidecar.parts.storage.get_user("alice")).enrolled
    assert (await browser.auth()).status_code == 200


async def test_full_flow_enroll_logout_challenge(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, codes = await browser.enroll()
    assert browser.cookies.get("totp_sidecar")  # enrolling counts as passing the challenge
    allowed = await browser.auth("/reports")
    assert allowed.status_code == 200 and allowed.headers["remote-user"] == "alice"

    settings = await browser.get("/_2fa/settings?notice=enabled&saved=1")
    assert "Two-factor authentication is enabled." in settings.text
    assert "20 of 20 recovery codes left" in settings.text

    await browser.logout()
    await browser.login("alice")
    refused = await browser.auth("/reports?x=1")
    assert refused.status_code == 401
    location = urlsplit(refused.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("http", "app.test", "/_2fa/challenge")
    assert parse_qs(location.query)["rd"] == ["http://app.test/reports?x=1"]

    api = await browser.auth("/api/data", accept="application/json")
    assert api.status_code == 401 and "location" not in api.headers
    assert api.json()["error"] == "2fa_required"

    forward = await env.client.get("/auth/forward", headers={
        "cookie": browser.cookie_header(), "accept": "text/html", "x-forwarded-method": "GET",
        "x-forwarded-proto": "https", "x-forwarded-host": "app.test", "x-forwarded-uri": "/reports"})
    assert forward.status_code == 302
    assert forward.headers["location"].startswith("https://app.test/_2fa/challenge?rd=")

    wrong = await browser.challenge("000000", rd="/reports")
    assert wrong.status_code == 400 and "not valid" in wrong.text
    assert (await browser.auth("/reports")).status_code == 401

    env.clock.advance(30)
    passed = await browser.challenge(env.code(secret), rd="/reports")
    assert passed.status_code == 303 and passed.headers["location"] == "/reports"
    assert (await browser.auth("/reports")).status_code == 200


async def test_code_is_accepted_once(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    env.clock.advance(30)
    code = env.code(secret)
    await browser.logout()
    await browser.login("alice")
    assert (await browser.challenge(code)).status_code == 303
    await browser.logout()
    await browser.login("alice")
    replay = await browser.challenge(code)
    assert replay.status_code == 400
    # the code used at enrollment cannot be replayed either, nor an older step
    assert (await browser.challenge(env.code(secret, -1))).status_code == 400


async def test_recovery_code_any_case_once(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, codes = await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    page = await browser.get("/_2fa/challenge?rd=/")
    assert "Switch to recovery code" in page.text
    typed = codes[0].replace("-", "").upper()
    assert (await browser.challenge(typed)).status_code == 303
    assert (await browser.auth()).status_code == 200
    await browser.logout()
    await browser.login("alice")
    assert (await browser.challenge(codes[0])).status_code == 400
    assert (await env.sidecar.parts.storage.get_user("alice")).recovery_left == 19


async def test_concurrent_use_of_one_recovery_code_succeeds_once(env: Env, tmp_path: Path) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, codes = await browser.enroll()
    service = env.sidecar.parts.accounts
    other = SQLiteStorage(sqlite_path(env.config))  # a second connection, as a second process
    await other.open()
    try:
        from sidecar.accounts import Accounts
        second = Accounts(env.config, other, env.clock)
        results = await asyncio.gather(*[
            (service if i % 2 else second).check("alice", codes[1], "127.0.0.1")
            for i in range(8)])
    finally:
        await other.close()
    assert sum(r.check.value == "ok" for r in results) == 1


async def test_cookie_of_one_login_does_not_serve_the_next(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    stolen = browser.cookies["totp_sidecar"]
    thief = env.browser()
    await thief.login("alice")  # knows the password, not the code
    thief.cookies["totp_sidecar"] = stolen
    assert (await thief.auth()).status_code == 401
    bob = env.browser()
    await bob.login("bob")
    bob.cookies["totp_sidecar"] = stolen
    response = await bob.auth()
    assert response.status_code == 200 and response.headers["remote-user"] == "bob"


@pytest.mark.parametrize("value", ["garbage", "x" * 5000, "a.b", "%00", "eyJ1Ijoi.YWxpY2U"])
async def test_tampered_cookie_is_not_verified(env: Env, value: str) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    browser.cookies["totp_sidecar"] = value
    assert (await browser.auth()).status_code == 401
    assert (await browser.get("/_2fa/settings")).status_code == 303


async def test_cookie_expires_after_max_age(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    env.clock.advance(env.config.cookie.max_age - 10)
    assert (await browser.auth()).status_code == 200
    env.clock.advance(20)
    assert (await browser.auth()).status_code == 401


async def test_disable_needs_a_code_and_ends_every_cookie(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, codes = await browser.enroll()
    laptop_cookie = browser.cookies["totp_sidecar"]
    csrf, page = await browser.form_token("/_2fa/settings")
    assert "Turn off two-factor authentication</button>" in page
    wrong = await browser.post("/_2fa/disable", {"csrf": csrf, "code": "123456", "confirm": "1"})
    assert wrong.status_code == 400
    assert (await env.sidecar.parts.storage.get_user("alice")).enrolled
    done = await browser.post("/_2fa/disable", {"csrf": csrf, "code": codes[5], "confirm": "1"})
    assert done.status_code == 303 and done.headers["location"].endswith("notice=disabled")
    assert not (await env.sidecar.parts.storage.get_user("alice")).enrolled
    settings = await browser.get("/_2fa/settings?notice=disabled")
    assert "Turn on two-factor authentication" in settings.text
    # re-enrolling makes the old cookie worthless (a new generation)
    await browser.enroll()
    other = env.browser()
    other.cookies = dict(browser.cookies, totp_sidecar=laptop_cookie)
    assert (await other.auth()).status_code == 401


async def test_new_recovery_codes_replace_the_old(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, old = await browser.enroll()
    csrf, _ = await browser.form_token("/_2fa/settings")
    env.clock.advance(30)
    made = await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "code": env.code(secret)})
    assert made.status_code == 303 and made.headers["location"] == "/_2fa/recovery-codes"
    page = await browser.get("/_2fa/recovery-codes")
    assert page.status_code == 200
    new = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", page.text)
    assert len(new) == 20 and not set(new) & set(old)
    assert page.headers["cache-control"] == "no-store"
    await browser.logout()
    await browser.login("alice")
    assert (await browser.challenge(old[0])).status_code == 400
    assert (await browser.challenge(new[0])).status_code == 303


async def test_post_without_or_with_foreign_csrf_is_refused(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, codes = await browser.enroll()
    other = env.browser()
    await other.login("bob")
    foreign, _ = await other.form_token("/_2fa/enroll")
    for token in ("", foreign, "x" * 64):
        response = await browser.post("/_2fa/disable", {"csrf": token, "code": codes[0], "confirm": "1"})
        assert response.status_code == 403
    assert (await env.sidecar.parts.storage.get_user("alice")).recovery_left == 20
    assert (await env.sidecar.parts.storage.get_user("alice")).enrolled


async def test_open_redirect_falls_back_to_root(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    env.clock.advance(30)
    response = await browser.challenge(env.code(secret), rd="https://evil.test/")
    assert response.status_code == 303 and response.headers["location"] == "/"


async def test_throttle_locks_after_repeated_failures(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    statuses = [(await browser.challenge("000000")).status_code for _ in range(5)]
    assert statuses == [400, 400, 400, 400, 429]
    env.clock.advance(30)
    locked = await browser.challenge(env.code(secret))
    assert locked.status_code == 429
    assert "Try again in 15 minutes," in locked.text  # time left, and its end as a <time>
    assert '<time datetime="2027-01-15T08:15:00Z" class="local-time">08:15 UTC</time>' in locked.text
    env.clock.advance(env.config.throttle.lockout)
    assert (await browser.challenge(env.code(secret))).status_code == 303


async def test_required_rule_sends_to_enrollment(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, rules=[{"users": ["carol"], "level": "required"}])
    async for env in start_env(config, clock):
        carol = env.browser()
        await carol.login("carol")
        response = await carol.auth("/reports")
        assert response.status_code == 401
        assert urlsplit(response.headers["location"]).path == "/_2fa/enroll"
        api = await carol.auth("/api/data", accept="application/json")
        assert api.json()["error"] == "2fa_enrollment_required"
        await carol.enroll()
        assert (await carol.auth("/reports")).status_code == 200
        alice = env.browser()
        await alice.login("alice")
        assert (await alice.auth("/reports")).status_code == 200


async def test_hot_path_touches_neither_storage_nor_app(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    assert (await browser.auth()).status_code == 200  # warms the state cache
    storage = env.sidecar.parts.storage
    resolver = env.sidecar.parts.resolver
    calls: list[str] = []
    original = storage.get_user

    async def counting(user_id: str):  # type: ignore[no-untyped-def]
        calls.append(user_id)
        return await original(user_id)

    storage.get_user = counting  # type: ignore[method-assign]
    before = resolver.calls  # type: ignore[attr-defined]
    for _ in range(50):
        assert (await browser.auth("/reports")).status_code == 200
    assert calls == []
    assert resolver.calls == before  # type: ignore[attr-defined]


async def test_introspection_is_cached_per_credential(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    resolver = env.sidecar.parts.resolver
    before = resolver.calls  # type: ignore[attr-defined]
    results = await asyncio.gather(*[browser.auth() for _ in range(20)])
    assert all(r.headers["remote-user"] == "alice" for r in results)
    assert resolver.calls - before == 1  # type: ignore[attr-defined]


async def test_pages_need_a_primary_session(env: Env) -> None:
    browser = env.browser()
    for path in ("/_2fa/settings", "/_2fa/enroll", "/_2fa/challenge"):
        response = await browser.get(path)
        assert response.status_code == 401 and "Sign in" in response.text


async def test_pages_carry_security_headers(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    response = await browser.get("/_2fa/enroll")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text and "style=" not in response.text


async def test_logout_is_a_post_with_csrf_and_clears_the_2fa_cookie(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    confirm = await browser.get("/_2fa/logout?rd=//evil.test")  # a GET only asks
    assert confirm.status_code == 200 and 'method="post"' in confirm.text
    assert "totp_sidecar" in browser.cookies and (await browser.auth()).status_code == 200
    forged = await browser.post("/_2fa/logout", {"rd": "/"})
    assert forged.status_code == 403 and "totp_sidecar" in browser.cookies
    csrf, _ = await browser.form_token("/_2fa/logout?rd=//evil.test")
    response = await browser.post("/_2fa/logout", {"csrf": csrf, "rd": "//evil.test"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert "totp_sidecar" not in browser.cookies
    assert (await browser.auth()).status_code == 401


async def test_missing_database_gives_503_once_the_cached_state_is_stale(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    assert (await browser.auth()).status_code == 200
    Path(sqlite_path(env.config)).unlink()
    page = await browser.get("/_2fa/settings")
    assert page.status_code == 503 and "unavailable" in page.text
    assert (await browser.auth()).status_code == 200  # the feed was read a moment ago
    states = env.sidecar.parts.accounts.states
    with pytest.raises(StorageUnavailable):
        await states.poll()  # what the background task now meets every time
    states.read_at -= STALE_SECONDS  # ... for STALE_SECONDS: memory is no answer any more
    assert (await browser.auth()).status_code == 503
    newcomer = env.browser()
    await newcomer.login("bob")
    assert (await newcomer.auth()).status_code == 503  # unknown state: fail closed
    ready = await env.client.get("/readyz")
    assert ready.status_code == 503


async def test_untrusted_peer_and_bad_requests(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, server={"trusted_proxies": ["10.9.9.9/32"]})
    async for env in start_env(config, clock):
        browser = env.browser()
        response = await browser.auth()
        assert response.status_code == 403 and response.json()["error"] == "untrusted_peer"
    async for env in start_env(make_config(tmp_path), clock):
        response = await env.client.get("/auth/forward", headers={"x-forwarded-host": "app.test"})
        assert response.status_code == 400
        response = await env.client.get("/auth/nginx")
        assert response.status_code == 400


async def test_probes(env: Env) -> None:
    assert (await env.client.get("/healthz")).text == "ok"
    assert (await env.client.get("/readyz")).status_code == 200
    await env.browser().auth()
    metrics = await env.client.get("/metrics")
    assert 'totp_sidecar_decisions_total{app="default",outcome="allow"}' in metrics.text


async def test_metrics_show_the_caches_and_the_feed(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, cache={"users": 500})
    async for env in start_env(config, clock):
        for user in ("alice", "bob"):
            browser = env.browser()
            await browser.login(user)
            assert (await browser.auth()).status_code == 200
        text = (await env.client.get("/metrics")).text
        assert 'totp_sidecar_cache_entries{cache="user_states"} 2.0' in text
        assert 'totp_sidecar_cache_limit{cache="user_states"} 500.0' in text
        answers = float(env.config.cache.answers)  # cache.answers, its default here
        assert f'totp_sidecar_cache_limit{{cache="answers"}} {answers}' in text
        assert "totp_sidecar_feed_healthy 1.0" in text
        assert "totp_sidecar_state_drops 1.0" in text  # the first read of the feed


async def test_challenge_page_sends_an_unenrolled_user_to_setup_where_required(
        tmp_path: Path, clock: FakeClock) -> None:
    """Proxies that send every 401 to the challenge page (ingress-nginx auth-signin) still work."""
    config = make_config(tmp_path, rules=[{"path": "/admin", "level": "required"}])
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        to_setup = await browser.get("/_2fa/challenge?rd=http://app.test/admin/x")
        assert to_setup.status_code == 303
        assert to_setup.headers["location"].startswith("/_2fa/enroll?rd=")
        elsewhere = await browser.get("/_2fa/challenge?rd=http://app.test/reports")
        assert elsewhere.headers["location"] == "http://app.test/reports"


async def test_enroll_page_of_an_enrolled_unverified_user_goes_to_the_challenge(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    response = await browser.get("/_2fa/enroll?rd=/reports")
    assert response.status_code == 303
    assert response.headers["location"] == "/_2fa/challenge?rd=%2Freports"
