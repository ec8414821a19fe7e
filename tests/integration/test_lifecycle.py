"""The rest of the account lifecycle: step-up for sensitive pages, low recovery codes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import FakeClock, make_config, start_env

pytestmark = pytest.mark.anyio

STEP_UP_RULES = [{"path": "/account/password", "level": "optional", "step_up": "5m"}]


async def test_step_up_asks_again_for_sensitive_pages(tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path, rules=STEP_UP_RULES), clock):
        browser = env.browser()
        await browser.login("alice")
        secret, _ = await browser.enroll()
        assert (await browser.auth("/account/password")).status_code == 200  # code just typed
        clock.advance(6 * 60)
        assert (await browser.auth("/reports")).status_code == 200  # the session stays verified
        again = await browser.auth("/account/password")
        assert again.status_code == 401
        location = urlsplit(again.headers["location"])
        assert location.path == "/_2fa/challenge"
        assert parse_qs(location.query) == {"rd": ["http://app.test/account/password"],
                                            "why": ["step_up"]}
        api = await browser.auth("/account/password", accept="application/json")
        assert api.json()["error"] == "step_up_required"
        page = await browser.get("/_2fa/challenge?rd=/account/password&why=step_up")
        assert page.status_code == 200  # asks although the session is verified
        assert (await browser.get("/_2fa/challenge?rd=/reports")).status_code == 303
        passed = await browser.challenge(env.code(secret, 1), rd="/account/password")
        assert passed.status_code == 303 and passed.headers["location"] == "/account/password"
        assert (await browser.auth("/account/password")).status_code == 200


async def test_few_recovery_codes_left_are_announced(tmp_path: Path, clock: FakeClock) -> None:
    async for env in start_env(make_config(tmp_path), clock):
        browser = env.browser()
        await browser.login("alice")
        _, codes = await browser.enroll()
        service = env.sidecar.parts.accounts
        for code in codes[:16]:
            assert (await service.check("alice", code, "127.0.0.1")).check.value == "ok"
        await browser.logout()
        await browser.login("alice")
        response = await browser.challenge(codes[16], rd="/reports")
        assert response.status_code == 303
        target = urlsplit(response.headers["location"])
        assert target.path == "/_2fa/settings"
        assert parse_qs(target.query) == {"rd": ["/reports"], "low": ["1"]}
        page = await browser.get(response.headers["location"])
        assert "3 recovery codes left" in page.text and "new recovery codes" in page.text.lower()
        assert 'href="/reports"' in page.text


async def test_a_step_up_rule_limited_to_post_can_be_satisfied(tmp_path: Path, clock: FakeClock) -> None:
    """The challenge page learns the method from the redirect; before, it matched the rule of
    ``rd`` with GET only, found no step-up and sent the user back: a loop."""
    rules = [{"path": "/account/password", "methods": ["POST"], "level": "optional", "step_up": "5m"}]
    async for env in start_env(make_config(tmp_path, rules=rules), clock):
        browser = env.browser()
        await browser.login("alice")
        secret, _ = await browser.enroll()
        clock.advance(6 * 60)
        assert (await browser.auth("/account/password")).status_code == 200  # a GET: no step-up
        again = await browser.auth("/account/password", method="POST")
        assert again.status_code == 401
        query = parse_qs(urlsplit(again.headers["location"]).query)
        assert query["why"] == ["step_up"] and query["m"] == ["POST"]
        page = await browser.get(again.headers["location"].removeprefix("http://app.test"))
        assert page.status_code == 200 and 'name="m" value="POST"' in page.text
        csrf, _ = await browser.form_token("/_2fa/challenge?rd=/account/password&why=step_up&m=POST")
        passed = await browser.post("/_2fa/challenge", {"csrf": csrf, "code": env.code(secret, 1),
                                                        "rd": "/account/password", "m": "POST"})
        assert passed.status_code == 303 and passed.headers["location"] == "/account/password"
        assert (await browser.auth("/account/password", method="POST")).status_code == 200
