"""A real browser (Debian's Chromium, Playwright) through a real nginx running deploy/nginx.

A person's whole journey: sign in to the demo app, turn 2FA on by scanning the QR code off
the screen (zbar reads a screenshot of it), type the code with a space, download the recovery
codes, sign out and in, answer the challenge, use a recovery code, turn 2FA off with another.
Then the same without JavaScript. See tests/e2e/browser.py for what is needed and how it is
found; each test's last screen is saved as test-artifacts/screenshots/last-*.png.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from tests.e2e.browser import (  # noqa: F401
    ROOT,
    chromium_fixture,
    decode_qr,
    new_context,
    screenshot,
    sign_in,
    sign_out,
    spaced,
    urlpath,
)
from tests.e2e.stacks import Stack
from tests.e2e.steps import RECOVERY_FORMAT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ISSUER = "E2E Test"  # totp.issuer in tests/e2e/stacks.py's sidecar config


@pytest.fixture()
def page(chromium: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile (no cookies); its last screen is kept as a test artifact."""
    context = new_context(chromium, stack.base)
    page = context.new_page()
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):  # a debugging aid only
            screenshot(page, f"last-{request.node.name}")
        context.close()


def expect_app(page: Page, user: str) -> None:
    """The demo app's home page, reached through nginx with the right Remote-User."""
    assert urlpath(page) == "/", page.url
    assert page.locator("#remote-user").inner_text() == f"Proxy says: Remote-User = {user}"
    assert page.get_by_text(f"Signed in as {user}").is_visible()


def expect_challenge(page: Page, stack: Stack) -> None:
    parts = urlsplit(page.url)
    assert parts.path == "/_2fa/challenge", page.url
    assert parse_qs(parts.query)["rd"] == [f"{stack.base}/"]
    assert page.get_by_role("heading", level=1).inner_text() == "Two-factor authentication"


def notice(page: Page) -> str:
    return page.get_by_role("status").inner_text()


def open_enrollment(page: Page, user: str) -> None:
    """Sign in to the app, settings from the app's own link (2FA off), "Turn on"."""
    sign_in(page, user)
    expect_app(page, user)
    page.get_by_role("link", name="Two-factor authentication settings").click()
    assert urlpath(page) == "/_2fa/settings"
    assert "Off" in page.locator(".status").inner_text()
    page.get_by_role("link", name="Turn on two-factor authentication").click()
    assert urlpath(page) == "/_2fa/enroll"


def scan_qr(page: Page, account: str) -> str:
    """The QR code as a phone camera sees it (zbar reads a screenshot): its secret."""
    qr = page.locator("figure.qr svg")
    assert qr.is_visible()
    found = decode_qr(qr.screenshot())
    assert len(found) == 1, (
        f"zbar read {found!r} from the QR code: is it clipped or too small? "
        "(see test-artifacts/screenshots/last-*.png)")
    uri = found[0]
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp"), uri
    assert unquote(parts.path) == f"/{ISSUER}:{account}", uri
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["issuer"] == ISSUER
    assert re.fullmatch(r"[A-Z2-7]{32}", query["secret"]), uri
    assert query.get("digits", "6") == "6" and query.get("period", "30") == "30"
    assert query.get("algorithm", "SHA1") == "SHA1"
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.issuer, parsed.name, parsed.digits) == (ISSUER, account, 6)
    return query["secret"]


def test_enroll_challenge_recovery_and_disable(page: Page, stack: Stack) -> None:
    open_enrollment(page, "alice")
    secret = scan_qr(page, "alice@example.com")

    # "Can't scan it?" (closed at first) shows the account and the same key, in fours.
    details = page.locator("details.manual")
    assert not page.locator("#secret-key").is_visible()
    details.locator("summary").click()
    assert page.locator("#secret-key").is_visible()
    assert page.locator("#secret-key").inner_text().split() == re.findall(".{4}", secret)
    assert "alice@example.com" in details.inner_text()

    # The code from the scanned secret, typed as people paste it: with a space.
    code_input = page.get_by_label("Authentication code")
    assert code_input.get_attribute("autocomplete") == "one-time-code"
    code_input.fill(spaced(pyotp.TOTP(secret).now()))
    page.get_by_role("button", name="Verify").click()

    # Recovery codes: 20 of them, and the .txt download holds the same ones.
    assert page.get_by_role("heading", level=1).inner_text() == "Save your recovery codes"
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 20 and len(set(codes)) == 20
    assert all(RECOVERY_FORMAT.match(c) for c in codes), codes
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download .txt").click()
    download = download_info.value
    assert download.suggested_filename == "e2e-test-recovery-codes.txt"  # no spaces
    text = Path(download.path()).read_text(encoding="utf-8")
    assert re.findall(r"(?m)^[a-z0-9]{5}-[a-z0-9]{5}$", text) == codes
    assert ISSUER in text and "alice@example.com" in text
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", text), text
    assert page.get_by_label("I have saved these codes").is_checked()  # the download ticked it
    page.get_by_role("button", name="Complete").click()
    assert urlpath(page) == "/_2fa/settings"
    assert notice(page) == "Two-factor authentication is enabled."
    assert "20 of 20 recovery codes left" in page.locator(".status").inner_text()

    # A new app session: the challenge, with a focused one-time-code field.
    page.get_by_role("link", name=re.compile(r"^Back to ")).click()
    expect_app(page, "alice")
    sign_out(page)
    sign_in(page, "alice")
    expect_challenge(page, stack)
    # "Not you? Sign out" really ends the app session: the app's login page, no session left.
    assert page.locator("input[name=remember]").count() <= 1
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    assert "demo_session" not in {c["name"] for c in page.context.cookies()}
    page.goto("/")
    assert not page.get_by_text("Signed in as alice").is_visible()
    sign_in(page, "alice")
    expect_challenge(page, stack)
    code_input = page.get_by_label("Authentication code")
    assert code_input.get_attribute("autocomplete") == "one-time-code"
    assert code_input.get_attribute("inputmode") == "numeric"
    assert page.evaluate("() => document.activeElement && document.activeElement.id") == "code"
    # The sidecar refuses steps up to the last one used (enrollment's): the next step's code.
    page.keyboard.type(spaced(pyotp.TOTP(secret).at(time.time() + 30)))
    page.keyboard.press("Enter")
    page.wait_for_url(f"{stack.base}/")
    expect_app(page, "alice")

    # Again, with a recovery code instead.
    sign_out(page)
    sign_in(page, "alice")
    expect_challenge(page, stack)
    page.get_by_role("link", name="Switch to recovery code").click()
    page.get_by_label("Recovery code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{stack.base}/")
    expect_app(page, "alice")

    # Turn it off with another recovery code.
    page.get_by_role("link", name="Two-factor authentication settings").click()
    assert "19 of 20 recovery codes left" in page.locator(".status").inner_text()
    page.locator("#disable-code").fill(codes[1])
    page.get_by_label(re.compile("protected by its password alone")).check()
    page.get_by_role("button", name="Turn off two-factor authentication").click()
    assert urlpath(page) == "/_2fa/settings"
    assert "turned off" in notice(page)
    assert "Off" in page.locator(".status").inner_text()
    page.goto("/")
    expect_app(page, "alice")


def test_everything_works_without_javascript(chromium: Browser, stack: Stack) -> None:
    context = new_context(chromium, stack.base, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, "bob")
        page.goto("/reports")  # a required page: set-up says why, and offers a way out
        assert urlpath(page) == "/_2fa/enroll"
        assert page.get_by_text("Your administrator requires two-factor authentication for this "
                                "account.").is_visible()
        assert page.get_by_role("button", name="Sign out").is_visible()
        assert not page.get_by_role("button", name="Copy key").is_visible()
        page.locator("details.manual summary").click()
        secret = page.locator("#secret-key").inner_text().replace(" ", "")
        page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(secret).now()))
        page.get_by_role("button", name="Verify").click()
        assert page.locator("#recovery-codes code").count() == 20
        assert page.get_by_role("link", name="Download .txt").is_visible()
        for name in ("Copy", "Print"):  # JavaScript conveniences, hidden without it
            assert not page.get_by_role("button", name=name).is_visible()
        page.get_by_role("button", name="Complete").click()  # refused until the box is ticked
        assert page.locator("#recovery-codes").is_visible()
        page.get_by_label("I have saved these codes").check()
        page.get_by_role("button", name="Complete").click()
        assert notice(page) == "Two-factor authentication is enabled."

        page.goto("/")
        sign_out(page)
        sign_in(page, "bob")
        expect_challenge(page, stack)
        page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(secret).at(time.time() + 30)))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(f"{stack.base}/")
        expect_app(page, "bob")
    except BaseException:
        screenshot(page, "last-test_everything_works_without_javascript")
        raise
    finally:
        context.close()


def test_a_lockout_disables_the_form_and_shows_the_local_time(chromium: Browser,
                                                              stack: Stack) -> None:
    """Wrong codes up to the lockout, in a browser in Tokyo: attempts left, then the form
    disabled, the time left in words and the end in the reader's own time zone."""
    context = new_context(chromium, stack.base, timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    try:
        sign_in(page, "carol")
        page.goto("/_2fa/enroll")
        page.locator("details.manual summary").click()
        secret = page.locator("#secret-key").inner_text().replace(" ", "")
        page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Verify").click()
        page.get_by_label("I have saved these codes").check()
        page.get_by_role("button", name="Complete").click()
        sign_out(page)
        sign_in(page, "carol")
        for attempt in range(1, 6):
            page.get_by_label("Authentication code").fill("000000")
            page.get_by_role("button", name="Verify").click()
            page.locator(".error").wait_for()
            if attempt == 3:
                assert "2 attempts left before a lockout." in page.locator(".error").inner_text()
        assert "Try again in 15 minutes" in page.locator(".error").inner_text()
        assert page.get_by_role("button", name="Verify").is_disabled()
        shown = page.locator("time.local-time")
        moment = datetime.fromisoformat((shown.get_attribute("datetime") or "").replace("Z", "+00:00"))
        tokyo = moment.astimezone(timezone(timedelta(hours=9)))
        text = re.sub(r"\s*[AP]M$", "", shown.inner_text())  # the page's language picks 12/24 h
        assert text in (tokyo.strftime("%H:%M"), tokyo.strftime("%I:%M"),  # 24 h, or 12 h after noon
                        tokyo.strftime("%I:%M").lstrip("0")), text
    except BaseException:
        screenshot(page, "last-test_a_lockout_disables_the_form_and_shows_the_local_time")
        raise
    finally:
        context.close()


def test_docs_screenshots_script(chromium: Browser, tmp_path: Path) -> None:
    """tests/browser/screenshots.py (README's pictures) still works; written to a temp dir."""
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    try:
        import screenshots  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "tests" / "browser"))
    written = screenshots.make(tmp_path, chromium)
    assert sorted(p.name for p in written) == ["challenge-key.png", "challenge.png", "enroll.png",
                                               "recovery-codes.png"]
    for path in written:
        assert 0 < path.stat().st_size < screenshots.MAX_BYTES, path
