"""The pages a person meets, each point of issue 12 asserted in Debian's Chromium through a
real nginx: the step-up page (its own title and sentence, no "remember" option), settings
times in the reader's time zone, Back after "Complete" (settings, no codes, no resubmission),
recovery codes in two columns on a phone, set-up's "Open in authenticator app" and Cancel,
and the sidecar's own 404 page in the same layout and language.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pyotp
import pytest

from tests.e2e.browser import (  # noqa: F401
    PHONE,
    chromium_fixture,
    go_back,
    new_context,
    screenshot,
    sign_in,
    sign_out,
    urlpath,
)
from tests.e2e.stacks import NGINX, Stack, running

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

#: The stack's rules, and the app's password page behind a step-up of five minutes.
RULES = [{"path": "/healthz", "level": "bypass"}, {"path": "/denied", "level": "deny"},
         {"path": "/reports", "level": "required"},
         {"path": "/account/password", "level": "optional", "step_up": "5m"}]


@pytest.fixture(scope="module", name="stack")
def stack_fixture(nginx_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(NGINX, nginx_bin, tmp_path_factory.mktemp("pages"),
                 extra_config={"rules": RULES, "remember_device": {"enabled": True}}) as started:
        yield started


@contextlib.contextmanager
def browsing(chromium: Browser, stack: Stack, name: str, **options: object
             ) -> Iterator[tuple[BrowserContext, Page]]:
    context = new_context(chromium, stack.base, **options)
    page = context.new_page()
    try:
        yield context, page
    except BaseException:
        screenshot(page, f"last-{name}")
        raise
    finally:
        context.close()


def enroll(page: Page) -> tuple[str, list[str]]:
    """Turn 2FA on (the manual key, in any language): the secret and the recovery codes."""
    page.goto("/_2fa/enroll")
    page.locator("details.manual summary").click()
    secret = page.locator("#secret-key").inner_text().replace(" ", "")
    page.locator("input[name=code]").fill(pyotp.TOTP(secret).now())
    page.locator("form button[type=submit]").first.click()
    page.locator("#recovery-codes").wait_for()
    return secret, page.locator("#recovery-codes code").all_inner_texts()


def test_step_up_page_after_a_remembered_device(chromium: Browser, stack: Stack) -> None:
    """Signed in through a remembered device (no code typed in this session), the password
    page asks to confirm: "Confirm access", one accurate sentence, no "remember" box."""
    with browsing(chromium, stack, "step-up") as (_, page):
        sign_in(page, "alice")
        secret, codes = enroll(page)
        page.get_by_label("I have saved these codes").check()
        page.get_by_role("button", name="Complete").click()
        sign_out(page)
        sign_in(page, "alice")
        assert urlpath(page) == "/_2fa/challenge"
        remember = page.locator("input[name=remember]")
        assert remember.count() == 1  # one checkbox, worded once
        remember.check()
        page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).at(time.time() + 30))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(f"{stack.base}/")
        sign_out(page)
        sign_in(page, "alice")  # the remembered device: no prompt
        assert urlpath(page) == "/", page.url

        page.goto("/account/password")
        assert urlpath(page) == "/_2fa/challenge"
        assert page.title().startswith("Confirm access")
        assert page.get_by_role("heading", level=1).inner_text() == "Confirm access"
        why = page.locator("p.why").inner_text()
        assert "This page needs a code entered in the last 5 minutes" in why
        assert "earlier in this session" not in page.content()
        assert page.locator("input[name=remember]").count() == 0
        assert page.get_by_role("button", name="Sign out").is_visible()  # a way out
        page.get_by_role("link", name="Switch to recovery code").click()  # still a step-up
        assert page.get_by_role("heading", level=1).inner_text() == "Confirm access"
        page.get_by_label("Recovery code").fill(codes[0])
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(re.compile(r"/account/password$"))


def test_settings_times_are_in_the_readers_language_and_time_zone(chromium: Browser,
                                                                  stack: Stack) -> None:
    with browsing(chromium, stack, "settings-times", timezone_id="Asia/Tokyo",
                  locale="de-DE") as (_, page):
        sign_in(page, "bob")
        enroll(page)
        page.get_by_label("Ich habe diese Codes gespeichert").check()
        page.locator("button.primary").click()
        assert urlpath(page) == "/_2fa/settings"
        since = page.locator(".status time.local-time")
        moment = datetime.fromisoformat((since.get_attribute("datetime") or "").replace("Z", "+00:00"))
        tokyo = moment.astimezone(timezone(timedelta(hours=9)))
        shown = since.inner_text()
        assert "UTC" not in shown
        assert tokyo.strftime("%H:%M") in shown, shown  # German: 24-hour clock, Tokyo's hour


def test_back_after_complete_and_two_columns_on_a_phone(chromium: Browser, stack: Stack) -> None:
    with browsing(chromium, stack, "codes-phone", viewport=PHONE, is_mobile=True,
                  has_touch=True) as (_, page):
        sign_in(page, "carol")
        page.goto("/_2fa/enroll")
        link = page.get_by_role("link", name="Open in authenticator app")  # phones only
        assert link.is_visible()
        assert (link.get_attribute("href") or "").startswith("otpauth://totp/")
        page.get_by_role("link", name="Cancel").click()  # a way out of set-up: settings, still off
        assert urlpath(page) == "/_2fa/settings"
        assert "Off" in page.locator(".status").inner_text()
        secret, _ = enroll(page)
        assert urlpath(page) == "/_2fa/recovery-codes"  # the POST answered with a redirect
        boxes = [page.locator("#recovery-codes li").nth(i).bounding_box() for i in (0, 1)]
        assert boxes[0] and boxes[1]
        assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2, boxes  # side by side: two columns
        assert boxes[1]["x"] > boxes[0]["x"] + boxes[0]["width"] / 2
        complete = page.get_by_role("button", name="Complete")
        box = complete.bounding_box()
        assert box and box["y"] < 2 * PHONE["height"], box  # within a thumb's scroll
        page.get_by_label("I have saved these codes").check()
        with page.expect_navigation(wait_until="load"):  # settings fully loaded before Back
            complete.click()
        assert urlpath(page) == "/_2fa/settings"
        go_back(page)  # no "Confirm form resubmission", and the codes are not shown again
        assert urlpath(page) == "/_2fa/settings", page.url
        assert page.locator("#recovery-codes").count() == 0
        assert "Two-factor authentication" in page.content()
        assert pyotp.TOTP(secret).now()  # (the secret stays the user's; nothing to resubmit)


def test_the_404_page_has_the_layout_and_language(chromium: Browser, stack: Stack) -> None:
    with browsing(chromium, stack, "page-404", locale="fr-FR") as (_, page):
        sign_in(page, "bob")
        answer = page.goto("/_2fa/nowhere")
        assert answer is not None and answer.status == 404
        assert page.locator("html").get_attribute("lang") == "fr"
        assert page.locator("main").is_visible() and page.locator("header, .top").count() >= 1
        assert page.get_by_role("heading", level=1).inner_text()
        assert page.locator("link[rel=stylesheet]").count() >= 1
