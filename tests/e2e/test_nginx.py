"""End to end through a real nginx running deploy/nginx: demo app + sidecar + auth_request.

One browser-like client (cookie jar, no automatic redirects) goes through enrollment, the
challenge, replays and recovery codes; every answer is nginx's, as a user would get it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest

from tests.e2e.steps import (  # noqa: F401
    API,
    BROWSER,
    PASS_COOKIE,
    Stack,
    assert_allowed,
    assert_challenged,
    challenge_form,
    enroll,
    fresh_wrong_code,
    hidden,
    login,
    logout,
    pass_cookie_set,
    password_client_needs_x_otp,
    remote_users,
)


@pytest.fixture()
def browser(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False,
                      timeout=10.0) as client:
        yield client


def test_enroll_challenge_replay_and_recovery(stack: Stack, browser: httpx.Client) -> None:
    # Signed in, not enrolled: 2FA is optional, the app is reached and sees Remote-User.
    login(browser, "alice")
    assert_allowed(browser, "alice")

    # Enrollment through nginx: key and CSRF token from the page, code from the key.
    key, enroll_code, codes = enroll(browser)
    assert_allowed(browser, "alice")

    # A new app session must pass the challenge: browsers are sent to it, even when they
    # claim another original URL; API clients get a JSON 401 and no Location.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(stack, browser)
    r = browser.get("/", headers={"X-Original-URL": "http://evil.example/",
                                  "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 302 and r.headers["location"] == challenge
    for path in ("/", "/api/data"):
        r = browser.get(path, headers=API)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert set(r.json()) == {"error", "detail"}
        assert r.json()["error"] == "2fa_required"
        assert r.headers["x-totp-error"] == "2fa_required"
        assert "location" not in r.headers and "x-otp" not in r.headers

    # A wrong code: 400, no 2FA cookie, still challenged.
    csrf, rd = challenge_form(browser, challenge)
    assert rd == f"{stack.base}/"
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": fresh_wrong_code(key)})
    assert r.status_code == 400
    assert "That code is not valid" in r.text
    assert not pass_cookie_set(r)
    assert_challenged(stack, browser)

    # The next step's code has not been used (enrollment used the current one): accepted,
    # back to rd, and the app is reached again.
    next_code = pyotp.TOTP(key).at(time.time() + 30)
    assert next_code != enroll_code
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{stack.base}/"
    assert pass_cookie_set(r)
    assert_allowed(browser, "alice")

    # The same code again, in a new app session: a replay, refused.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(stack, browser)
    csrf, rd = challenge_form(browser, challenge)
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 400, "a used TOTP code was accepted again"
    assert not pass_cookie_set(r)
    assert_challenged(stack, browser)

    # A recovery code, upper case without the dash, with an rd to a foreign host (also sent
    # as a spoofed X-Forwarded-Host, which nginx overwrites): accepted, and rd falls back to /.
    spoof = {"X-Forwarded-Host": "evil.example"}
    csrf, rd = challenge_form(browser, "/_2fa/challenge?method=recovery&rd=https://evil.example/")
    assert rd == "/"
    recovery = codes[0]
    r = browser.post("/_2fa/challenge", headers=spoof,
                     data={"csrf": csrf, "rd": "https://evil.example/", "mode": "recovery",
                           "code": recovery.replace("-", "").upper()})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    assert pass_cookie_set(r)
    assert_allowed(browser, "alice")

    # The same recovery code in a new app session: used up, refused.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(stack, browser)
    csrf, rd = challenge_form(browser, challenge)
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "recovery",
                                              "code": recovery})
    assert r.status_code == 400, "a used recovery code was accepted again"
    assert not pass_cookie_set(r)
    assert_challenged(stack, browser)


def test_spoofed_remote_user_never_reaches_the_app(stack: Stack, browser: httpx.Client) -> None:
    spoof = {"Remote-User": "mallory", "Remote_User": "mallory", "Remote-Email": "m@evil.example"}
    # Anonymous: the sidecar lets the request pass with no identity; the app must see none.
    r = browser.get("/", headers=spoof)
    assert r.status_code == 200
    assert "You are not signed in." in r.text
    assert remote_users(r.text) == []
    # Signed in as bob (no 2FA): the app sees bob, only bob.
    login(browser, "bob")
    r = browser.get("/", headers=spoof)
    assert r.status_code == 200
    assert remote_users(r.text) == ["bob"]
    r = browser.get("/api/data", headers={**spoof, **API})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "user": "bob", "remote_user": "bob"}


def test_required_rule_sends_to_enrollment(stack: Stack, browser: httpx.Client) -> None:
    login(browser, "bob")  # 2FA off; /reports has level `required` in the sidecar's config
    r = browser.get("/reports")
    assert r.status_code == 302
    parts = urlsplit(r.headers["location"])
    assert (parts.netloc, parts.path) == (stack.host, "/_2fa/enroll")
    assert parse_qs(parts.query) == {"rd": [f"{stack.base}/reports"]}
    r = browser.get("/reports", headers=API)
    assert r.status_code == 401
    assert r.json()["error"] == "2fa_enrollment_required"
    assert "set up" in r.json()["detail"]
    assert r.headers["x-totp-error"] == "2fa_enrollment_required"
    assert_allowed(browser, "bob")  # elsewhere 2FA stays optional


def test_password_api_client_needs_x_otp(stack: Stack, browser: httpx.Client) -> None:
    password_client_needs_x_otp(stack.base, browser)


def test_app_errors_pass_through_and_deny_rule(stack: Stack, browser: httpx.Client) -> None:
    # The app's own 401 is not mistaken for the sidecar's: error_page only catches auth_request.
    r = browser.get("/api/data", headers=API)
    assert r.status_code == 401
    assert r.json() == {"error": "unauthorized"}
    assert r.headers["www-authenticate"].startswith("Basic")
    # A deny rule in the sidecar's config: 403 with the JSON body from the 403 location.
    r = browser.get("/denied", headers=API)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": "forbidden", "detail": "access to this resource is denied"}
    assert r.headers["x-totp-error"] == "forbidden"
    # /_2fa without the slash is the settings page.
    r = browser.get("/_2fa")
    assert r.status_code == 302 and r.headers["location"].endswith("/_2fa/settings")


def test_sidecar_down_fails_closed(stack_without_sidecar: Stack) -> None:
    """No sidecar: protected locations answer 500 and the app is never called."""
    with httpx.Client(base_url=stack_without_sidecar.base, headers=BROWSER,
                      follow_redirects=False, timeout=10.0) as client:
        assert client.get("/").status_code == 500
        assert client.get("/api/data", headers=API).status_code == 500
        r = client.post("/login", data={"username": "alice", "password": "alice-password"})
        assert r.status_code == 500
        assert "set-cookie" not in r.headers, "the app was reached without the 2FA check"
        assert client.get("/_2fa/settings").status_code == 502
        assert client.get("/healthz").text == "ok"  # unprotected locations keep working
