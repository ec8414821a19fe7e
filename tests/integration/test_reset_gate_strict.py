"""The password-reset gate leaves no room to reset another account than the one it checked.

Through the real ASGI apps (sidecar + demo app): repeated fields, accounts in query strings,
account names that fit several users, replayed grants, and failures at the gate that must
not lock the user's own sign-in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Browser, Env, FakeClock, make_config, start_env
from tests.integration.test_reset_and_devices import RESET, enrolled, gate_form

pytestmark = pytest.mark.anyio
GRANT = "totp_sidecar_reset_grant"


@pytest.fixture
async def gated(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    async for env in start_env(make_config(tmp_path, password_reset=RESET), clock):
        yield env


async def send(browser: Browser, method: str, path: str, body: str = "") -> httpx.Response:
    """A request with a body exactly as given (repeated fields and all)."""
    headers = {"accept": "text/html", "cookie": browser.cookie_header(), "host": browser.host}
    if method == "POST":
        headers["content-type"] = "application/x-www-form-urlencoded"
    response = await browser.env.client.request(method, path, content=body.encode(), headers=headers)
    return browser.keep(response)


async def granted(env: Env, account: str = "bob@example.com") -> Browser:
    """A visitor who passed the gate for ``account`` (bob has no 2FA: the account alone)."""
    visitor = env.browser()
    csrf = await gate_form(visitor)
    passed = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": account,
                                                "rd": "/password/reset"})
    assert passed.status_code == 303 and GRANT in visitor.cookies, passed.text
    return visitor


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_a_repeated_account_field_at_the_gate_is_refused(gated: Env) -> None:
    await enrolled(gated)
    visitor = gated.browser()
    csrf = await gate_form(visitor)
    refused = await send(visitor, "POST", "/_2fa/reset",
                         f"csrf={csrf}&rd=/password/reset&account=alice%40example.com"
                         "&account=bob%40example.com")
    assert refused.status_code == 400 and GRANT not in visitor.cookies
    twice = await send(visitor, "POST", "/_2fa/reset",
                       f"csrf={csrf}&csrf={csrf}&rd=/password/reset&account=bob%40example.com")
    assert twice.status_code == 400 and GRANT not in visitor.cookies


async def test_a_repeated_account_field_in_the_reset_form_is_refused(gated: Env) -> None:
    visitor = await granted(gated)
    refused = await send(visitor, "POST", "/password/reset",
                         "email=alice%40example.com&email=bob%40example.com")
    assert refused.status_code == 400 and gated.demo.reset_requests == []
    refused = await send(visitor, "POST", "/password/reset", "email=bob%40example.com&code=1&code=2")
    assert refused.status_code == 400 and gated.demo.reset_requests == []
    sent = await send(visitor, "POST", "/password/reset", "email=bob%40example.com")
    assert sent.status_code == 200 and gated.demo.reset_requests == ["bob@example.com"]


async def test_an_account_in_the_query_string_is_refused_unless_it_is_the_granted_one(
        gated: Env) -> None:
    visitor = gated.browser()
    assert (await visitor.get("/_2fa/reset?account=alice%40example.com")).status_code == 400
    visitor = await granted(gated)
    shown = await visitor.get("/password/reset?email=alice%40example.com")
    assert shown.status_code == 400
    posted = await send(visitor, "POST", "/password/reset?email=alice%40example.com",
                        "email=bob%40example.com")
    assert posted.status_code == 400 and gated.demo.reset_requests == []
    same = await visitor.get("/password/reset?email=bob%40example.com")
    assert same.status_code == 200 and 'name="email"' in same.text


async def test_a_grant_is_used_once_even_when_its_cookie_is_replayed(gated: Env) -> None:
    visitor = await granted(gated)
    cookie = visitor.cookies[GRANT]
    sent = await send(visitor, "POST", "/password/reset", "email=BOB%40Example.com")  # any case
    assert sent.status_code == 200 and gated.demo.reset_requests == ["bob@example.com"]
    assert GRANT not in visitor.cookies
    visitor.cookies[GRANT] = cookie  # the cleared cookie, sent again
    replayed = await send(visitor, "POST", "/password/reset", "email=bob%40example.com")
    assert replayed.status_code == 403 and gated.demo.reset_requests == ["bob@example.com"]


async def test_an_account_in_another_case_still_needs_the_code(gated: Env) -> None:
    """Storage keys user ids exactly, so "alice" may mean the user "Alice": its code is asked."""
    service = gated.sidecar.parts.accounts
    secret = await service.pending_secret("Alice")
    code = gated.code(secret)
    assert (await service.complete_enrollment("Alice", code, "192.0.2.1"))[0].check.value == "ok"
    visitor = gated.browser()
    csrf = await gate_form(visitor)
    ask = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "alice",
                                             "rd": "/password/reset"})
    assert ask.status_code == 200 and 'name="code"' in ask.text and GRANT not in visitor.cookies


async def test_an_account_that_fits_several_users_is_refused(gated: Env) -> None:
    storage = gated.sidecar.parts.storage
    await storage.set_contact("aaron", "shared@example.com")
    await storage.set_contact("zoe", "Shared@Example.com")
    await enrolled(gated, "alice")
    await storage.lock("Alice", 0)  # a second user whose id differs from alice's only in case
    for account in ("shared@example.com", "ALICE"):
        visitor = gated.browser()
        csrf = await gate_form(visitor)
        refused = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": account,
                                                     "rd": "/password/reset"})
        assert refused.status_code == 400 and "more than one account" in refused.text
        assert GRANT not in visitor.cookies


async def test_failures_at_the_gate_do_not_lock_the_sign_in(gated: Env) -> None:
    secret, _ = await enrolled(gated)
    limit = gated.config.throttle.max_failures
    gated.clock.advance(30)
    visitor = gated.browser()
    csrf = await gate_form(visitor)
    for _ in range(limit):
        await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "alice@example.com",
                                           "code": wrong(gated.code(secret)),
                                           "rd": "/password/reset"})
    closed = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "alice@example.com",
                                                "code": gated.code(secret), "rd": "/password/reset"})
    assert closed.status_code == 400 and "Too many attempts" in closed.text
    assert GRANT not in visitor.cookies
    alice = gated.browser()
    await alice.login("alice")
    passed = await alice.challenge(gated.code(secret))
    assert passed.status_code == 303


async def test_an_account_is_never_cut_short(gated: Env) -> None:
    """A long account is refused, not truncated to one the gate checked and the app does not mean."""
    checked = "x" * 256
    visitor = await granted(gated, checked)
    longer = await send(visitor, "POST", "/password/reset", f"email={checked}%40example.com")
    assert longer.status_code == 403 and gated.demo.reset_requests == []
    other = gated.browser()
    csrf = await gate_form(other)
    refused = await other.post("/_2fa/reset", {"csrf": csrf, "account": checked + "@example.com",
                                               "rd": "/password/reset"})
    assert refused.status_code == 400 and GRANT not in other.cookies
