"""Security keys and passkeys in a real browser: Debian's Chromium (Playwright) with a virtual
authenticator (Chrome DevTools Protocol ``WebAuthn.addVirtualAuthenticator``: ctap2, internal
transport, user verification on), through a real nginx running deploy/nginx.

WebAuthn needs a secure context and an RP ID that is a host name, not an IP address: the
browser opens the stack at ``http://localhost:<port>`` (a secure context, as every
``*.localhost`` is), so the RP ID is ``localhost``. The journey: turn 2FA on with the app, add
a key in settings, sign out and in and pass the challenge with the key, use it for a step-up,
remove it, and see the prompt fall back to the app's code.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp
import pytest

from tests.e2e.browser import (  # noqa: F401
    chromium_fixture,
    new_context,
    screenshot,
    sign_in,
    sign_out,
    spaced,
    urlpath,
)
from tests.e2e.stacks import NGINX, Stack, running

if TYPE_CHECKING:
    from playwright.sync_api import Browser, CDPSession, Page

STEP_UP_SECONDS = 2
RULES = [{"path": "/healthz", "level": "bypass"},
         {"path": "/account/password", "level": "optional", "step_up": f"{STEP_UP_SECONDS}s"}]


@pytest.fixture(scope="module")
def key_stack(nginx_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nginx + sidecar + demo app, with a step-up rule on the demo's password page."""
    with running(NGINX, nginx_bin, tmp_path_factory.mktemp("keys"),
                 extra_config={"rules": RULES}) as started:
        yield started


def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    """A platform authenticator that verifies the user at once (a passkey on this device)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added: dict[str, Any] = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    return cdp, str(added["authenticatorId"])


@pytest.fixture()
def page(chromium: Browser, key_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = new_context(chromium, f"http://localhost:{key_stack.port}")
    page = context.new_page()
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):
            screenshot(page, f"last-{request.node.name}")
        context.close()


def local(stack: Stack) -> str:
    return f"http://localhost:{stack.port}"


def turn_on_with_the_app(page: Page) -> str:
    """2FA on with an authenticator app (the key is typed from "Can't scan it?"); its secret."""
    page.goto("/_2fa/enroll")
    page.locator("details.manual summary").click()
    secret = page.locator("#secret-key").inner_text().replace(" ", "")
    page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(secret).now()))
    page.get_by_role("button", name="Verify").click()
    page.get_by_label("I have saved these codes").check()
    page.get_by_role("button", name="Complete").click()
    assert urlpath(page) == "/_2fa/settings"
    return secret


def test_a_security_key_signs_in_steps_up_and_falls_back_to_the_app(page: Page,
                                                                     key_stack: Stack) -> None:
    cdp, authenticator = virtual_authenticator(page)
    sign_in(page, "alice")
    secret = turn_on_with_the_app(page)

    # Settings: add a key with a name.
    page.get_by_label("Name of the new key").fill("Laptop passkey")
    page.get_by_role("button", name="Add a security key").click()
    page.wait_for_url(re.compile(r"/_2fa/settings\?notice=key_added$"))
    assert page.get_by_role("status").inner_text() == "Your security key was added."
    keys = page.locator("ul.keys li")
    assert keys.count() == 1 and "Laptop passkey" in keys.inner_text()
    assert "not used yet" in keys.inner_text()
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
        "credentials"]
    assert credential["rpId"] == "localhost" and credential["isResidentCredential"]

    # A new app session: the prompt offers the key first; the key passes it.
    sign_out(page)
    sign_in(page, "alice")
    assert urlpath(page) == "/_2fa/challenge"
    assert page.get_by_role("heading", level=1).inner_text() == "Two-factor authentication"
    assert page.get_by_role("link", name="Use your authenticator app").is_visible()
    assert page.get_by_role("link", name="Switch to recovery code").is_visible()
    assert not page.get_by_text("needs JavaScript").is_visible()
    page.get_by_role("button", name="Use your security key").click()
    page.wait_for_url(f"{local(key_stack)}/")
    assert page.get_by_text("Signed in as alice").is_visible()

    # Step-up: the password page wants a recent second step; the key gives it.
    time.sleep(STEP_UP_SECONDS + 1)
    page.goto("/account/password")
    assert urlpath(page) == "/_2fa/challenge"
    assert page.get_by_role("heading", level=1).inner_text() == "Confirm access"
    page.get_by_role("button", name="Use your security key").click()
    page.wait_for_url(f"{local(key_stack)}/account/password")

    # Remove the key: the app is still there, so no code is asked for.
    page.goto("/_2fa/settings")
    assert "last used" in page.locator("ul.keys li").inner_text()
    page.get_by_role("button", name="Remove Laptop passkey").click()
    page.wait_for_url(re.compile(r"/_2fa/settings\?notice=key_removed$"))
    assert page.locator("ul.keys li").count() == 0

    # The prompt falls back to the app's code.
    sign_out(page)
    sign_in(page, "alice")
    assert urlpath(page) == "/_2fa/challenge"
    assert page.get_by_role("button", name="Use your security key").count() == 0
    page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(secret).at(time.time() + 30)))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{local(key_stack)}/")


def test_a_first_key_turns_2fa_on_and_a_cancelled_ceremony_says_so(page: Page,
                                                                    key_stack: Stack,
                                                                    tmp_path: Path) -> None:
    cdp, authenticator = virtual_authenticator(page)
    sign_in(page, "bob")
    page.goto("/_2fa/settings")
    page.get_by_label("Name of the new key").fill("YubiKey 5")
    page.get_by_role("button", name="Add a security key").click()
    page.wait_for_url(re.compile(r"/_2fa/recovery-codes$"))  # after the ceremony's script
    assert page.get_by_role("heading", level=1).inner_text() == "Save your recovery codes"
    assert page.locator("#recovery-codes code").count() == 20
    page.get_by_label("I have saved these codes").check()
    page.get_by_role("button", name="Complete").click()
    page.wait_for_url(re.compile(r"/_2fa/settings"))
    assert "On" in page.locator(".status").inner_text()
    assert page.get_by_role("link", name="Set up an authenticator app").is_visible()

    # The key gone from the device: the browser finds none, the page says so, nothing passes.
    cdp.send("WebAuthn.clearCredentials", {"authenticatorId": authenticator})
    sign_out(page)
    sign_in(page, "bob")
    assert page.get_by_role("link", name="Use your authenticator app").count() == 0
    cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False})
    page.get_by_role("button", name="Use your security key").click()
    alert = page.locator("[data-key-error]")
    alert.wait_for(state="visible", timeout=30_000)
    assert "did not answer" in alert.inner_text()
    assert urlpath(page) == "/_2fa/challenge"


def test_settings_confirmations_take_the_key(page: Page, key_stack: Stack) -> None:
    """A user with a key only: new recovery codes and turning 2FA off confirmed by the key
    (the "I understand" box still checked by the browser first)."""
    cdp, authenticator = virtual_authenticator(page)
    sign_in(page, "carol")
    page.goto("/_2fa/settings")
    page.get_by_label("Name of the new key").fill("Phone passkey")
    page.get_by_role("button", name="Add a security key").click()
    page.wait_for_url(re.compile(r"/_2fa/recovery-codes$"))
    first = page.locator("#recovery-codes code").all_inner_texts()
    page.get_by_label("I have saved these codes").check()
    page.get_by_role("button", name="Complete").click()
    page.wait_for_url(re.compile(r"/_2fa/settings"))

    def signatures() -> int:
        (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
            "credentials"]
        return int(credential["signCount"])

    codes_form = page.locator("form[action='/_2fa/recovery-codes']")
    assert codes_form.get_by_label("Recovery code").is_visible()  # no app: no "authentication code"
    codes_form.get_by_role("button", name="Confirm with your security key").click()
    page.wait_for_url(re.compile(r"/_2fa/recovery-codes$"))
    second = page.locator("#recovery-codes code").all_inner_texts()
    assert len(second) == 20 and not set(first) & set(second)
    page.get_by_label("I have saved these codes").check()
    page.get_by_role("button", name="Complete").click()
    page.wait_for_url(re.compile(r"/_2fa/settings"))

    off_form = page.locator("form[action='/_2fa/disable']")
    used = signatures()
    off_form.get_by_role("button", name="Confirm with your security key").click()
    page.wait_for_timeout(300)  # the unticked box stops it before the key is asked
    assert urlpath(page) == "/_2fa/settings" and signatures() == used
    off_form.get_by_label("I understand").check()
    off_form.get_by_role("button", name="Confirm with your security key").click()
    page.wait_for_url(re.compile(r"/_2fa/settings\?notice=disabled$"))
    assert "Off" in page.locator(".status").inner_text()
    assert page.locator("ul.keys li").count() == 0
