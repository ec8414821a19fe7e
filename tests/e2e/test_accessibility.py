"""axe-core (WCAG 2.0/2.1/2.2 A and AA) on every page of the sidecar, light and dark.

A real Chromium goes through a real nginx (deploy/nginx) and stops at each page a person can
meet: settings (off, on with its notice, with an error), set-up (as shown, with "Can't scan
it?" opened, with a wrong code), the recovery codes, the challenge (as shown, with a wrong
code, with a recovery code), security keys (settings with a key, a refused removal, the key
prompt, a ceremony that failed), "Sign in first" and the 503 page of a sidecar whose database is
gone. On each, axe runs in the light and in the dark colour scheme; a violation of impact
serious or critical fails that page's test, with every element named. Each page is also saved
as a screenshot, light, dark and phone-sized (390 px), to test-artifacts/screenshots/, and
axe's full findings (every impact) to test-artifacts/axe/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyotp
import pytest

from tests.e2e.browser import (  # noqa: F401
    axe,
    axe_source,
    blocking,
    chromium_fixture,
    describe,
    new_context,
    save_report,
    screenshots,
    sign_in,
    sign_out,
    spaced,
)
from tests.e2e.stacks import NGINX, Stack, running
from tests.e2e.steps import fresh_wrong_code

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCHEMES: tuple[Literal["light"], Literal["dark"]] = ("light", "dark")
#: Every page state checked, in the order the walk below meets them.
PAGES = ("reset-gate", "reset-gate-code",
         "settings-off", "enroll", "enroll-manual-key", "enroll-error", "recovery-codes",
         "settings-on-notice", "settings-error", "challenge", "challenge-error",
         "challenge-recovery", "challenge-recovery-error", "sign-in-first",
         "settings-keys", "settings-key-remove-error", "challenge-key", "challenge-key-error")
#: (page, scheme) -> reason, for serious/critical violations the pages still have (each
#: names the axe rule id). strict: the test fails once the page is fixed, so the entry goes.
KNOWN: dict[tuple[str, str], str] = {}

Findings = dict[str, dict[str, list[dict[str, Any]]]]


def audit(page: Page, source: str, name: str, findings: Findings) -> None:
    """axe in both colour schemes, then the screenshots, of the page as it is now."""
    results: dict[str, list[dict[str, Any]]] = {}
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        results[scheme] = axe(page, source)
        save_report(f"{name}-{scheme}", results[scheme])
    page.emulate_media(color_scheme="light")
    screenshots(page, name)
    findings[name] = results


@pytest.fixture(scope="module")
def findings(chromium: Browser, stack: Stack) -> Iterator[Findings]:
    """Walk every page once (user bob, then anonymous); axe's violations per page and scheme."""
    source = axe_source()
    found: Findings = {}
    context = new_context(chromium, stack.base)
    page = context.new_page()
    try:
        sign_in(page, "bob")
        page.goto("/_2fa/settings")
        audit(page, source, "settings-off", found)
        page.get_by_role("link", name="Turn on two-factor authentication").click()
        page.locator("form").wait_for()
        audit(page, source, "enroll", found)
        page.locator("details.manual summary").click()
        key = page.locator("#secret-key").inner_text().replace(" ", "")
        audit(page, source, "enroll-manual-key", found)
        page.get_by_label("Authentication code").fill(fresh_wrong_code(key))
        page.get_by_role("button", name="Verify").click()
        page.locator(".error").wait_for()
        audit(page, source, "enroll-error", found)
        page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(key).now()))
        page.get_by_role("button", name="Verify").click()
        page.locator("#recovery-codes").wait_for()
        codes = page.locator("#recovery-codes code").all_inner_texts()
        audit(page, source, "recovery-codes", found)
        page.get_by_label("I have saved these codes").check()
        page.get_by_role("button", name="Complete").click()
        page.get_by_role("status").wait_for()
        audit(page, source, "settings-on-notice", found)
        page.locator("#disable-code").fill(fresh_wrong_code(key))
        page.locator("input[name=confirm]").check()
        page.get_by_role("button", name="Turn off two-factor authentication").click()
        page.locator(".error").wait_for()
        audit(page, source, "settings-error", found)

        sign_out(page)
        sign_in(page, "bob")
        page.get_by_label("Authentication code").wait_for()
        audit(page, source, "challenge", found)
        page.get_by_label("Authentication code").fill(fresh_wrong_code(key))
        page.get_by_role("button", name="Verify").click()
        page.locator(".error").wait_for()
        audit(page, source, "challenge-error", found)
        page.get_by_role("link", name="Switch to recovery code").click()
        page.get_by_label("Recovery code").wait_for()
        audit(page, source, "challenge-recovery", found)
        page.get_by_label("Recovery code").fill(codes[0][::-1])
        page.get_by_role("button", name="Verify").click()
        page.locator(".error").wait_for()
        audit(page, source, "challenge-recovery-error", found)
    finally:
        context.close()

    # Security keys (alice): WebAuthn needs a host name, so this browser opens localhost.
    context = new_context(chromium, f"http://localhost:{stack.port}")
    page = context.new_page()
    try:
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True}})["authenticatorId"]
        sign_in(page, "alice")
        page.goto("/_2fa/settings")
        page.get_by_label("Name of the new key").fill("YubiKey 5")
        page.get_by_role("button", name="Add a security key").click()
        page.get_by_label("I have saved these codes").check()
        page.get_by_role("button", name="Complete").click()
        page.locator("ul.keys").wait_for()
        audit(page, source, "settings-keys", found)
        page.locator("#remove-code").fill("aaaaa-aaaaa")
        page.locator("ul.keys input[name=confirm]").check()
        page.get_by_role("button", name="Remove YubiKey 5").click()
        page.locator(".error").wait_for()
        audit(page, source, "settings-key-remove-error", found)
        sign_out(page)
        sign_in(page, "alice")
        page.get_by_role("button", name="Use your security key").wait_for()
        audit(page, source, "challenge-key", found)
        cdp.send("WebAuthn.clearCredentials", {"authenticatorId": authenticator})
        cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator,
                                              "isUserVerified": False})
        page.get_by_role("button", name="Use your security key").click()
        page.locator("[data-key-error]").wait_for(state="visible", timeout=30_000)
        audit(page, source, "challenge-key-error", found)
    finally:
        context.close()

    anonymous = new_context(chromium, stack.base)
    try:
        page = anonymous.new_page()
        page.goto("/_2fa/settings")
        page.get_by_role("heading", name="Sign in first").wait_for()
        audit(page, source, "sign-in-first", found)
        page.goto("/password/reset")  # the password-reset gate: account, then bob's code
        page.get_by_label("Account (e-mail address or user name)").wait_for()
        audit(page, source, "reset-gate", found)
        page.get_by_label("Account (e-mail address or user name)").fill("bob@example.com")
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Authentication code or recovery code").wait_for()
        audit(page, source, "reset-gate-code", found)
    finally:
        anonymous.close()
    yield found


def assert_no_blocking(violations: list[dict[str, Any]], where: str) -> None:
    bad = blocking(violations)
    if bad:
        pytest.fail(describe(bad, where), pytrace=False)


def cases() -> list[Any]:
    return [pytest.param(name, scheme, id=f"{name}-{scheme}",
                         marks=[pytest.mark.xfail(strict=True, reason=KNOWN[name, scheme])]
                         if (name, scheme) in KNOWN else [])
            for name in PAGES for scheme in SCHEMES]


@pytest.mark.parametrize(("name", "scheme"), cases())
def test_page_has_no_serious_violations(findings: Findings, name: str, scheme: str) -> None:
    assert name in findings, f"the walk never reached {name}"
    assert_no_blocking(findings[name][scheme], f"{name} ({scheme})")


BROKEN = """<!doctype html><html lang="en"><head><title>broken</title><style>
  .faint { color: #bbb; background: #fff; }
  @media (prefers-color-scheme: dark) { .night { color: #333; background: #000; } }
</style></head><body><main><h1>Broken</h1><input id="nameless" type="text">
<p class="faint">faint in light and dark</p><p class="night">dark only</p></main></body></html>"""


def test_axe_catches_a_broken_page(chromium: Browser) -> None:
    """The harness itself: axe runs, with the WCAG tags, and sees the emulated colour scheme."""
    source = axe_source()
    context = chromium.new_context(color_scheme="light")
    try:
        page = context.new_page()
        page.set_content(BROKEN)
        light = {v["id"]: v for v in blocking(axe(page, source))}
        page.emulate_media(color_scheme="dark")
        dark = {v["id"]: v for v in blocking(axe(page, source))}
    finally:
        context.close()
    assert {"label", "color-contrast"} <= set(light), describe(list(light.values()), "light")
    assert len(light["color-contrast"]["nodes"]) == 1
    assert len(dark["color-contrast"]["nodes"]) == 2, describe(list(dark.values()), "dark")
    assert "#nameless" in describe(list(light.values()), "light")


def test_unavailable_page(chromium: Browser, nginx_bin: str, tmp_path: Path) -> None:
    """The 503 page of a sidecar whose SQLite file was deleted, in both schemes."""
    source = axe_source()
    with running(NGINX, nginx_bin, tmp_path) as own:
        context = new_context(chromium, own.base)
        try:
            page = context.new_page()
            sign_in(page, "alice")
            db = tmp_path / "sidecar.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            response = page.goto("/_2fa/settings")
            assert response is not None and response.status == 503, response
            page.get_by_role("heading", name="Two-factor authentication is unavailable").wait_for()
            found: Findings = {}
            audit(page, source, "unavailable-503", found)
        finally:
            context.close()
    problems = [describe(blocking(found["unavailable-503"][scheme]), f"the 503 page ({scheme})")
                for scheme in SCHEMES if blocking(found["unavailable-503"][scheme])]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
