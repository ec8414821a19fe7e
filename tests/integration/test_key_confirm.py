"""Settings' confirmations answered by a security key: turning 2FA off, new recovery codes and
removing the last key take a key's answer as they take a code (as GitHub's sudo prompt does),
so a user with keys only and no recovery codes left is never stuck. Real ASGI apps, a real
SQLite file, py_webauthn, and the software authenticator of ``tests/authenticator.py``."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest

from tests.authenticator import SoftKey
from tests.conftest import Browser, Env
from tests.integration.test_security_keys import ORIGIN, answer, key_page, passes, with_key

pytestmark = pytest.mark.anyio


def confirm_options(page: str) -> dict[str, Any]:
    """The key's options on settings' confirmation buttons (one challenge for the page)."""
    found = set(re.findall(r'data-key-confirm data-options="([^"]*)"', page))
    assert len(found) == 1, found
    return dict(json.loads(html.unescape(found.pop())))


async def signed_in_with_key(env: Env) -> tuple[Browser, SoftKey]:
    """alice, 2FA on by a key only, past the key challenge in a new app session."""
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    assert (await answer(browser, csrf, key.assert_(options, ORIGIN))).status_code == 303
    assert await passes(browser)
    return browser, key


async def settings(browser: Browser) -> tuple[str, str, dict[str, Any]]:
    csrf, page = await browser.form_token("/_2fa/settings")
    return csrf, page, confirm_options(page)


async def test_new_recovery_codes_with_the_key_when_none_are_left(env: Env) -> None:
    browser, key = await signed_in_with_key(env)
    storage = env.sidecar.parts.storage
    await storage.replace_recovery_codes("alice", [])  # every saved code used up
    assert (await storage.get_user("alice")).recovery_left == 0
    csrf, page, options = await settings(browser)
    assert 'for="codes-code">Recovery code<' in page  # no app: no "authentication code"
    assert "/static/webauthn.js" in page
    made = await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "code": "",
                                                       "assertion": key.assert_(options, ORIGIN)})
    assert made.status_code == 303 and made.headers["location"] == "/_2fa/recovery-codes", made.text
    shown = await browser.get("/_2fa/recovery-codes")
    assert len(re.findall(r"<code>[a-z2-9]{5}-[a-z2-9]{5}</code>", shown.text)) == 20
    assert (await storage.get_user("alice")).recovery_left == 20
    events = [e.event for e in await storage.events("alice")]
    assert "key_used" in events and "codes_regenerated" in events
    metrics = env.sidecar.parts.metrics.render().decode()
    assert 'totp_sidecar_key_checks_total{app="default",result="ok"} 2.0' in metrics  # challenge + codes


async def test_turning_2fa_off_with_the_key(env: Env) -> None:
    browser, key = await signed_in_with_key(env)
    storage = env.sidecar.parts.storage
    csrf, page, options = await settings(browser)
    assert "confirm with your security key or a saved recovery code" in page
    form = {"csrf": csrf, "code": "", "assertion": key.assert_(options, ORIGIN)}
    unticked = await browser.post("/_2fa/disable", form)  # the box first; nothing compared
    assert unticked.status_code == 400 and "Tick the box" in unticked.text
    assert (await storage.get_user("alice")).enrolled
    off = await browser.post("/_2fa/disable", form | {"confirm": "1"})
    assert off.status_code == 303 and off.headers["location"].endswith("notice=disabled"), off.text
    assert not (await storage.get_user("alice")).enrolled
    assert not await storage.credentials("alice")


async def test_removing_the_last_key_with_that_key(env: Env) -> None:
    browser, key = await signed_in_with_key(env)
    storage = env.sidecar.parts.storage
    csrf, page, options = await settings(browser)
    assert "Confirm with your security key or a saved recovery code." in page
    (stored,) = await storage.credentials("alice")
    off = await browser.post("/_2fa/keys/remove", {
        "csrf": csrf, "key": stored.credential_id, "confirm": "1", "code": "",
        "assertion": key.assert_(options, ORIGIN)})
    assert off.status_code == 303 and off.headers["location"].endswith("notice=disabled"), off.text
    assert not (await storage.get_user("alice")).enrolled
    assert not await storage.credentials("alice")


async def test_a_refused_key_answer_changes_nothing_and_counts_as_a_failure(env: Env) -> None:
    browser, key = await signed_in_with_key(env)
    storage = env.sidecar.parts.storage
    codes_before = (await storage.get_user("alice")).recovery_left
    csrf, _, options = await settings(browser)
    forged = key.assert_(options, "http://app.test.evil.test")  # another origin
    refused = await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "assertion": forged})
    assert refused.status_code == 400 and "was not accepted" in refused.text
    assert (await storage.get_user("alice")).recovery_left == codes_before
    stranger = SoftKey()  # a key that is not alice's
    csrf, _, options = await settings(browser)
    refused = await browser.post("/_2fa/disable", {"csrf": csrf, "confirm": "1",
                                                   "assertion": stranger.assert_(options, ORIGIN)})
    assert refused.status_code == 400 and (await storage.get_user("alice")).enrolled
    metrics = env.sidecar.parts.metrics.render().decode()
    assert 'totp_sidecar_key_checks_total{app="default",result="invalid"} 1.0' in metrics
    assert 'totp_sidecar_key_checks_total{app="default",result="foreign"} 1.0' in metrics


async def test_a_challenge_answer_is_not_accepted_again_in_settings(env: Env) -> None:
    browser, key = await with_key(env, key=SoftKey(count_up=False))  # no counter to catch it
    csrf, options = await key_page(browser)
    used = key.assert_(options, ORIGIN)
    assert (await answer(browser, csrf, used)).status_code == 303
    csrf, _, _ = await settings(browser)
    replayed = await browser.post("/_2fa/disable", {"csrf": csrf, "confirm": "1", "assertion": used})
    assert replayed.status_code == 400 and "ran out or was used already" in replayed.text
    assert (await env.sidecar.parts.storage.get_user("alice")).enrolled


async def test_without_keys_the_settings_offer_no_key_confirmation(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    _, page = await browser.form_token("/_2fa/settings")
    assert "data-key-confirm" not in page
    assert 'for="codes-code">Authentication code or recovery code<' in page


async def test_a_wrong_recovery_code_in_settings_is_called_one(env: Env) -> None:
    """The settings forms take an app code or a recovery code: the error names what was typed."""
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    csrf, _ = await browser.form_token("/_2fa/settings")
    wrong = await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "code": "aaaaa-aaaaa"})
    assert wrong.status_code == 400 and "That recovery code is not valid" in wrong.text
    wrong = await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "code": "000000"})
    assert wrong.status_code == 400 and "Check your authenticator app" in wrong.text


async def test_a_recovery_code_typed_in_the_app_code_field_is_called_one(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    wrong = await browser.challenge("aaaaa-aaaaa")
    assert wrong.status_code == 400 and "That recovery code is not valid" in wrong.text
