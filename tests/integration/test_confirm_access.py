"""Adding a way to sign in asks for a factor proved lately ("Confirm access", as GitHub's sudo
mode): a security key, or the authenticator app beside keys, is added only by an app session
that typed a code, a recovery code or used a key in the last 15 minutes. A session a
remembered device vouched for, or one whose code is older, is sent to the code prompt first,
so a borrowed browser cannot plant a lasting second factor of its own."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sidecar.web.pages import CONFIRM_SECONDS
from tests.authenticator import SoftKey
from tests.conftest import Browser, Env, FakeClock, make_config, start_env
from tests.integration.test_security_keys import register, with_key

pytestmark = pytest.mark.anyio
CONFIRM = "/_2fa/challenge?rd=%2F_2fa%2Fsettings&confirm=1"


def is_confirm_prompt(location: str, rd: str = "/_2fa/settings") -> bool:
    parts = urlsplit(location)
    return parts.path == "/_2fa/challenge" and parse_qs(parts.query) == {"rd": [rd],
                                                                          "confirm": ["1"]}


async def confirm(browser: Browser, env: Env, secret: str) -> None:
    csrf, page = await browser.form_token(CONFIRM)
    assert "<h1>Confirm access</h1>" in page and "add a way to sign in" in page
    assert 'name="remember"' not in page  # nothing to remember on this prompt
    env.clock.advance(30)
    done = await browser.post("/_2fa/challenge", {"csrf": csrf, "code": env.code(secret),
                                                  "rd": "/_2fa/settings", "confirm": "1"})
    assert done.status_code == 303 and done.headers["location"] == "/_2fa/settings", done.text


async def test_a_session_a_remembered_device_vouched_for_confirms_before_adding_a_key(
        tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, remember_device={"enabled": True, "max_days": 30})
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        secret, _ = await browser.enroll()
        await browser.sign_in_and_remember("alice", secret)
        clock.advance(CONFIRM_SECONDS + 1)  # the code typed then no longer counts
        await browser.logout()
        await browser.login("alice")  # a new app session: the device vouches, no code typed
        _, page = await browser.form_token("/_2fa/settings")
        assert "To add a security key, confirm it's you first." in page
        assert 'data-webauthn="create"' not in page
        assert 'href="/_2fa/challenge?rd=/_2fa/settings&amp;confirm=1">Confirm access' in page
        csrf, _ = await browser.form_token("/_2fa/settings")
        added = await browser.post("/_2fa/keys/add", {"csrf": csrf, "name": "Mallory's key",
                                                      "credential": "{}"})
        assert added.status_code == 303 and is_confirm_prompt(added.headers["location"])
        assert not await env.sidecar.parts.storage.credentials("alice")
        await confirm(browser, env, secret)
        made = await register(browser, SoftKey())
        assert made.status_code == 303 and made.headers["location"].endswith("notice=key_added")
        assert len(await env.sidecar.parts.storage.credentials("alice")) == 1


async def test_a_code_typed_long_ago_is_confirmed_again(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()  # a code typed now: keys may be added at once
    _, page = await browser.form_token("/_2fa/settings")
    assert 'data-webauthn="create"' in page
    env.clock.advance(CONFIRM_SECONDS + 1)
    _, page = await browser.form_token("/_2fa/settings")
    assert 'data-webauthn="create"' not in page
    await confirm(browser, env, secret)
    _, page = await browser.form_token("/_2fa/settings")
    assert 'data-webauthn="create"' in page


async def test_the_app_beside_keys_is_added_after_a_confirmation_too(env: Env) -> None:
    browser, key = await with_key(env)  # signed in again: the key's prompt not passed yet
    from tests.integration.test_security_keys import ORIGIN, answer, key_page

    csrf, options = await key_page(browser)
    assert (await answer(browser, csrf, key.assert_(options, ORIGIN))).status_code == 303
    assert (await browser.get("/_2fa/enroll")).status_code == 200  # the key was just used
    env.clock.advance(CONFIRM_SECONDS + 1)
    sent = await browser.get("/_2fa/enroll")
    assert sent.status_code == 303 and is_confirm_prompt(sent.headers["location"], "/_2fa/enroll")
    prompt = await browser.get(sent.headers["location"])
    assert prompt.status_code == 200 and "<h1>Confirm access</h1>" in prompt.text
    assert 'data-webauthn="get"' in prompt.text  # the key confirms as it signs in


async def test_confirm_is_only_for_the_sidecars_own_pages(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    env.clock.advance(CONFIRM_SECONDS + 1)
    passed = await browser.get("/_2fa/challenge?rd=%2Freports&confirm=1")
    assert passed.status_code == 303 and passed.headers["location"] == "/reports"
