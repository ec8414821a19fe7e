"""New recovery codes are made by a POST and shown by a GET: Back never meets the browser's
"resubmit the form?" page, the codes reach only the user and app session that made them, and
settings shows its dates as ``<time datetime>`` for the reader's own time zone."""

from __future__ import annotations

import re

import pytest

from sidecar.core.request import CODES_COOKIE
from tests.conftest import Env

pytestmark = pytest.mark.anyio
CODE = re.compile(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>")


async def test_set_up_redirects_to_the_codes_and_back_after_complete_lands_in_settings(
        env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, codes = await browser.enroll()  # asserts the 303 to /_2fa/recovery-codes, then the GET
    assert CODES_COOKIE in browser.cookies
    again = await browser.get("/_2fa/recovery-codes")  # a reload shows the same codes
    assert again.status_code == 200 and CODE.findall(again.text) == codes
    assert again.headers["cache-control"] == "no-store"
    done = await browser.get("/_2fa/settings?notice=enabled&saved=1")  # "Complete"
    assert done.status_code == 200
    assert any(line.startswith(f"{CODES_COOKIE}=;") and "Max-Age=0" in line
               for line in done.headers.get_list("set-cookie"))
    assert CODES_COOKIE not in browser.cookies
    back = await browser.get("/_2fa/recovery-codes")  # Back: settings, no codes, no resubmission
    assert back.status_code == 303 and back.headers["location"] == "/_2fa/settings"
    assert not CODE.findall(back.text)


async def test_new_codes_from_settings_are_shown_by_a_get_and_not_in_the_post(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, old = await browser.enroll()
    await browser.get("/_2fa/settings?notice=enabled&saved=1")
    csrf, _ = await browser.form_token("/_2fa/settings")
    made = await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "code": old[0]})
    assert made.status_code == 303 and made.headers["location"] == "/_2fa/recovery-codes"
    assert not CODE.findall(made.text)
    line = next(v for v in made.headers.get_list("set-cookie") if v.startswith(CODES_COOKIE))
    assert "Path=/_2fa/recovery-codes" in line and "SameSite=Strict" in line and "HttpOnly" in line
    assert not any(code in line for code in old)
    shown = await browser.get("/_2fa/recovery-codes")
    new = CODE.findall(shown.text)
    assert len(new) == 20 and not set(new) & set(old)
    assert 'name="notice" value="codes"' in shown.text


async def test_the_codes_cookie_opens_only_for_its_user_and_app_session(env: Env) -> None:
    alice = env.browser()
    await alice.login("alice")
    await alice.enroll()
    sealed = alice.cookies[CODES_COOKIE]
    # the same user in another app session (an attacker with the password) gets nothing
    other = env.browser()
    await other.login("alice")
    other.cookies[CODES_COOKIE] = sealed
    page = await other.get("/_2fa/recovery-codes")
    assert page.status_code in (303, 401) and not CODE.findall(page.text)
    # another user with the cookie copied in: nothing
    bob = env.browser()
    await bob.login("bob")
    bob.cookies[CODES_COOKIE] = sealed
    page = await bob.get("/_2fa/recovery-codes")
    assert page.status_code == 303 and not CODE.findall(page.text)
    # a tampered cookie: nothing, and it is ended
    alice.cookies[CODES_COOKIE] = sealed[:-2] + ("AA" if not sealed.endswith("AA") else "BB")
    page = await alice.get("/_2fa/recovery-codes")
    assert page.status_code == 303 and not CODE.findall(page.text)
    assert CODES_COOKIE not in alice.cookies


async def test_the_codes_are_not_shown_after_a_quarter_of_an_hour(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    env.clock.advance(14 * 60)
    assert CODE.findall((await browser.get("/_2fa/recovery-codes")).text)
    env.clock.advance(2 * 60)
    late = await browser.get("/_2fa/recovery-codes")
    assert late.status_code == 303 and not CODE.findall(late.text)


async def test_settings_dates_are_local_times_for_the_reader(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    page = (await browser.get("/_2fa/settings")).text
    since = re.search(r'since <time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)" '
                      r'class="local-time">[^<]+ UTC</time>', page)
    assert since, page
    assert "Turn off two-factor authentication</button>" in page


async def test_settings_in_a_new_app_session_asks_for_the_code_without_a_loop(env: Env) -> None:
    """Enrolled, a new app session, straight to settings: the code prompt (it sent the user
    back to settings, which sent them to the prompt: a redirect loop in the browser)."""
    browser = env.browser()
    await browser.login("bob")
    secret, _ = await browser.enroll()
    await browser.logout()
    await browser.login("bob")
    first = await browser.get("/_2fa/settings")
    assert first.status_code == 303
    assert first.headers["location"] == "/_2fa/challenge?rd=%2F_2fa%2Fsettings"
    prompt = await browser.get(first.headers["location"])
    assert prompt.status_code == 200 and 'name="code"' in prompt.text
    passed = await browser.challenge(env.code(secret, 1), rd="/_2fa/settings")
    assert passed.status_code == 303 and passed.headers["location"] == "/_2fa/settings"
    assert (await browser.get("/_2fa/settings")).status_code == 200
