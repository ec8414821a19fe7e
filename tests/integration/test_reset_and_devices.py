"""The password-reset gate and "remember this device", through the real ASGI apps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Browser, Env, FakeClock, make_config, start_env

pytestmark = pytest.mark.anyio
RESET = {"paths": ["/password/reset"], "account_field": "email", "app_url": "http://app.test"}


async def gate_form(browser: Browser, rd: str = "/password/reset") -> str:
    page = await browser.get(f"/_2fa/reset?rd={rd}")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


async def enrolled(env: Env, user: str = "alice") -> tuple[str, list[str]]:
    browser = env.browser()
    await browser.login(user)
    return await browser.enroll()


async def test_reset_needs_the_code_of_that_account(tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path, password_reset=RESET), clock):
        secret, _ = await enrolled(env)
        visitor = env.browser()  # anonymous, at the app's "forgot password" page
        first = await visitor.get("/password/reset")
        assert first.status_code == 303 and first.headers["location"].startswith("/_2fa/reset?rd=")
        csrf = await gate_form(visitor)
        ask = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "Alice@Example.com",
                                                 "rd": "/password/reset"})
        assert ask.status_code == 200 and 'name="code"' in ask.text  # alice has 2FA: a code
        wrong = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "alice@example.com",
                                                   "code": "000000", "rd": "/password/reset"})
        assert wrong.status_code == 400 and "not valid" in wrong.text
        assert "totp_sidecar_reset_grant" not in visitor.cookies
        clock.advance(30)
        ok = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "alice@example.com",
                                                "code": env.code(secret), "rd": "/password/reset"})
        assert ok.status_code == 303 and ok.headers["location"] == "/password/reset"
        form = await visitor.get("/password/reset")
        assert form.status_code == 200 and 'name="email"' in form.text  # the app's own page
        other = await visitor.post("/password/reset", {"email": "bob@example.com"})
        assert other.status_code == 403 and env.demo.reset_requests == []
        sent = await visitor.post("/password/reset", {"email": "alice@example.com"})
        assert sent.status_code == 200 and "we sent it a link" in sent.text
        assert env.demo.reset_requests == ["alice@example.com"]
        again = await visitor.post("/password/reset", {"email": "alice@example.com"})
        assert again.status_code == 303  # one reset per grant
        assert env.demo.reset_requests == ["alice@example.com"]


async def test_accounts_without_2fa_pass_the_gate_with_the_account_alone(
        tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path, password_reset=RESET), clock):
        visitor = env.browser()
        csrf = await gate_form(visitor)
        ok = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": "bob@example.com",
                                                "rd": "/password/reset"})
        assert ok.status_code == 303
        assert (await visitor.post("/password/reset", {"email": "bob@example.com"})).status_code == 200
        assert env.demo.reset_requests == ["bob@example.com"]


async def test_always_ask_reveals_nothing(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, password_reset=dict(RESET, always_ask=True))
    async for env in start_env(config, clock):
        await enrolled(env)
        answers: list[Any] = []
        for account, code in (("alice@example.com", "000000"), ("bob@example.com", "000000"),
                              ("nobody@example.com", "123456")):
            visitor = env.browser()
            csrf = await gate_form(visitor)
            page = await visitor.get("/_2fa/reset?rd=/password/reset")
            assert 'name="code"' in page.text  # asked of everyone
            response = await visitor.post("/_2fa/reset", {"csrf": csrf, "account": account,
                                                          "code": code, "rd": "/password/reset"})
            sent = await visitor.post("/password/reset", {"email": account})
            answers.append((response.status_code, response.headers.get("location"),
                            sent.status_code))
        assert answers[0] == answers[1] == answers[2]
        assert env.demo.reset_requests == ["bob@example.com", "nobody@example.com"]


async def test_gate_form_needs_its_csrf_token(tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path, password_reset=RESET), clock):
        visitor = env.browser()
        await gate_form(visitor)
        refused = await visitor.post("/_2fa/reset", {"csrf": "forged", "account": "bob@example.com"})
        assert refused.status_code == 403 and "totp_sidecar_reset_grant" not in visitor.cookies


REMEMBER = {"enabled": True, "max_days": 30}


async def test_remembered_device_skips_the_code_but_not_the_login(
        tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path, remember_device=REMEMBER), clock):
        browser = env.browser()
        await browser.login("alice")
        secret, _ = await browser.enroll()
        await browser.logout()
        await browser.login("alice")
        csrf, page = await browser.form_token("/_2fa/challenge?rd=/")
        assert 'name="remember"' in page
        clock.advance(30)
        passed = await browser.post("/_2fa/challenge", {"csrf": csrf, "code": env.code(secret),
                                                        "rd": "/", "remember": "1"})
        assert passed.status_code == 303 and "totp_sidecar_device" in browser.cookies
        await browser.logout()
        anonymous = await browser.auth()
        assert anonymous.status_code == 200 and "remote-user" not in anonymous.headers
        await browser.login("alice")  # the device still needs the app's own login
        allowed = await browser.auth("/reports")
        assert allowed.status_code == 200 and allowed.headers["remote-user"] == "alice"
        assert allowed.headers["set-cookie"].startswith("totp_sidecar=")  # a pass for this login
        # the device cookie serves alice only
        bob = env.browser()
        await bob.login("bob")
        await bob.enroll()
        await bob.logout()
        await bob.login("bob")
        bob.cookies["totp_sidecar_device"] = browser.cookies["totp_sidecar_device"]
        assert (await bob.auth()).status_code == 401
        # settings list the device; forgetting it asks for a code again
        browser.keep(allowed)
        settings = await browser.get("/_2fa/settings")
        assert "this browser" in settings.text.lower()
        csrf = re.search(r'name="csrf" value="([^"]+)"', settings.text).group(1)  # type: ignore[union-attr]
        forgot = await browser.post("/_2fa/devices", {"csrf": csrf, "device": "all"})
        assert forgot.status_code == 303
        await browser.logout()
        await browser.login("alice")
        assert (await browser.auth()).status_code == 401


async def test_disable_forgets_every_device(tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path, remember_device=REMEMBER), clock):
        browser = env.browser()
        await browser.login("alice")
        secret, codes = await browser.enroll()
        await browser.sign_in_and_remember("alice", secret)
        device = browser.cookies["totp_sidecar_device"]
        await env.sidecar.parts.accounts.disable("alice", actor="admin")
        await browser.enroll()  # on again, with a new secret
        await browser.logout()
        await browser.login("alice")
        browser.cookies["totp_sidecar_device"] = device
        assert (await browser.auth()).status_code == 401
        assert await env.sidecar.parts.storage.devices("alice") == []


async def test_remember_is_off_by_default(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    _, page = await browser.form_token("/_2fa/challenge?rd=/")
    assert 'name="remember"' not in page
