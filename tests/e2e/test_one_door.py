"""Regression tests for the one-door bypasses, through the real nginx of deploy/nginx.

Threat model: the attacker knows alice's password but not her phone (she has 2FA on), and owns
an enrolled account (bob) with his own phone, so he holds a bob session and bob's 2FA cookie.
He wins when the app serves a page or an API answer as alice, or when nginx tells the app a
Remote-User other than the user the app acts as. The demo app reads cookies as Starlette does:
every ``Cookie`` line, the last value of a name, names trimmed; so any reading of the request
that differs from that one is a way around the check (CONTRACT.md, "Reading a request").

Attacks are sent with explicit header lines (``raw``: http.client, one line per ``putheader``,
nothing merged, no cookie jar), so the wire carries exactly what each test says.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
import yaml

from tests.e2e.stacks import NGINX, Stack, running
from tests.e2e.steps import API, BROWSER, PASS_COOKIE, enroll, fresh_wrong_code, hidden, login, remote_users

HTML = BROWSER["Accept"]
JSON = API["Accept"]
AMBIGUOUS = "ambiguous_request"
Lines = list[tuple[str, str | bytes]]


# -- helpers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Raw:
    """nginx's answer to a hand-written request."""

    status: int
    headers: Message
    body: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def set_cookies(self) -> list[str]:
        return list(self.headers.get_all("set-cookie") or [])

    def json(self) -> Any:
        return json.loads(self.body)


def raw(stack: Stack, method: str, path: str, lines: Lines, body: bytes = b"") -> Raw:
    """Send ``lines`` to nginx as they are: a repeated name goes out as repeated lines."""
    host, port = stack.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", stack.host)
        for name, value in lines:
            conn.putheader(name, value)
        if body or method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        conn.endheaders(body or None)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        return Raw(response.status, response.headers, text)
    finally:
        conn.close()


def get(stack: Stack, path: str, *lines: tuple[str, str | bytes], accept: str = HTML) -> Raw:
    return raw(stack, "GET", path, [("Accept", accept), *lines])


def client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False, timeout=10.0)


def session_of(stack: Stack, user: str) -> str:
    """A fresh app session of ``user`` (what anyone with the password gets): its cookie value."""
    with client(stack) as browser:
        login(browser, user)
        value = browser.cookies.get("demo_session")
        assert value
        return value


@dataclass(frozen=True)
class Enrolled:
    """A user with 2FA on, and the browser state of the session that turned it on."""

    user: str
    session: str  # demo_session
    pass_cookie: str  # the sidecar's 2FA cookie, bound to that session
    key: str


def enrolled(stack: Stack, user: str) -> Enrolled:
    """Log ``user`` in through nginx and turn 2FA on (the code comes from the page's key)."""
    with client(stack) as browser:
        login(browser, user)
        key, _, _ = enroll(browser)
        session, pass_cookie = browser.cookies.get("demo_session"), browser.cookies.get(PASS_COOKIE)
        assert session and pass_cookie
        return Enrolled(user, session, pass_cookie, key)


def served_as(response: Raw, user: str) -> bool:
    """Whether the app acted as ``user``: its page or its JSON API names them."""
    if response.status != 200:
        return False
    if f"Signed in as {user}" in response.body:
        return True
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("user") == user


def assert_not_served_as(response: Raw, user: str) -> None:
    assert not served_as(response, user), (
        f"the app acted as {user} (status {response.status}, X-Totp-Error "
        f"{response.header('x-totp-error')!r}, Remote-User seen by the app: "
        f"{remote_users(response.body)})")


def assert_ambiguous(response: Raw, user: str = "alice") -> None:
    """An ambiguous request: the sidecar's 401 ambiguous_request, as nginx's 401 handling shows it
    (a JSON 401, or a redirect for a browser), never the app."""
    assert_not_served_as(response, user)
    assert response.status in (302, 401), f"expected nginx's 401 handling, got {response.status}"
    assert response.header("x-totp-error") == AMBIGUOUS, (
        f"X-Totp-Error {response.header('x-totp-error')!r}, expected {AMBIGUOUS!r}")


def assert_needs_2fa(response: Raw, user: str = "alice") -> None:
    """The request must go through the challenge: a redirect to it, or a 401; not the app."""
    assert_not_served_as(response, user)
    assert response.status in (302, 401), f"expected a challenge, got {response.status}"
    if response.status == 302:
        location = response.header("location") or ""
        assert urlsplit(location).path == "/_2fa/challenge", location


def cookie(*pairs: str) -> tuple[str, str]:
    return ("Cookie", "; ".join(pairs))


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alice(stack: Stack) -> Enrolled:
    """The victim: 2FA on. Her own browser is not used again; the attacker logs in anew."""
    return enrolled(stack, "alice")


@pytest.fixture(scope="module")
def bob(stack: Stack) -> Enrolled:
    """The attacker's own account, with 2FA on and passed: a bob session + bob's 2FA cookie."""
    return enrolled(stack, "bob")


@pytest.fixture()
def own_stack(nginx_bin: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack for one test (for tests that change a user's 2FA state)."""
    with running(NGINX, nginx_bin, tmp_path) as started:
        yield started


@pytest.fixture()
def short_cache_stack(nginx_bin: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose sidecar caches who-am-I answers for 1 s (the default is 5 s)."""
    extra = {"primary": {"introspect": {"cache_seconds": 1}}}  # merged: the URL stays
    with running(NGINX, nginx_bin, tmp_path, extra_config=extra) as started:
        config = yaml.safe_load(started.config_path.read_text())
        assert config["primary"]["introspect"]["cache_seconds"] == 1
        assert config["primary"]["introspect"]["url"].endswith("/api/me")
        yield started


# -- 1. a session cookie given twice ------------------------------------------------------
def test_duplicate_session_cookie_is_ambiguous_not_anonymous(stack: Stack, alice: Enrolled) -> None:
    """`demo_session=junk; demo_session=<alice>`: the sidecar read the first (junk: anonymous,
    200) while the app reads the last (alice): alice's pages without her code."""
    victim = session_of(stack, "alice")
    attack = cookie("demo_session=junk", f"demo_session={victim}")
    assert_ambiguous(get(stack, "/", attack))
    assert_ambiguous(get(stack, "/api/data", attack, accept=JSON))
    # the same session once is an ordinary unverified alice session: challenged
    assert_needs_2fa(get(stack, "/", cookie(f"demo_session={victim}")))


def test_duplicate_session_cookie_cannot_borrow_bobs_2fa_cookie(stack: Stack, alice: Enrolled,
                                                                bob: Enrolled) -> None:
    """`demo_session=<bob>; demo_session=<alice>; totp_sidecar=<bob's>`: the sidecar answered
    200 Remote-User bob (first session + bob's valid 2FA cookie), the app acted as alice."""
    victim = session_of(stack, "alice")
    # bob's own state works (so a refusal below is about the duplicate, not a dead cookie)
    own = get(stack, "/", cookie(f"demo_session={bob.session}", f"{PASS_COOKIE}={bob.pass_cookie}"))
    assert own.status == 200 and remote_users(own.body) == ["bob"], own.body[:400]
    attack = cookie(f"demo_session={bob.session}", f"demo_session={victim}",
                    f"{PASS_COOKIE}={bob.pass_cookie}")
    response = get(stack, "/", attack)
    assert remote_users(response.body) in ([], ["alice"]), "Remote-User bob, app acting as alice"
    assert_ambiguous(response)
    assert_ambiguous(get(stack, "/api/data", attack, accept=JSON))


# -- 2. a cookie name with stray whitespace -----------------------------------------------
def test_session_cookie_name_with_space_is_ambiguous(stack: Stack, alice: Enrolled) -> None:
    """`demo_session =<alice>`: the sidecar saw a cookie named "demo_session " (no session:
    anonymous, 200); the app trims the name and acts as alice."""
    victim = session_of(stack, "alice")
    attack = cookie(f"demo_session ={victim}")
    assert_ambiguous(get(stack, "/", attack))
    assert_ambiguous(get(stack, "/api/data", attack, accept=JSON))


# -- 3. two Cookie lines --------------------------------------------------------------------
def test_second_cookie_line_is_read(stack: Stack, alice: Enrolled) -> None:
    """Two `Cookie:` lines, alice's session in the second: the sidecar read only the first
    (no session: anonymous, 200); nginx passes both lines and the app joins them (alice).
    Joined, it is an unverified alice session: the challenge."""
    victim = session_of(stack, "alice")
    response = get(stack, "/", ("Cookie", "theme=dark"), ("Cookie", f"demo_session={victim}"))
    assert_needs_2fa(response)
    api = get(stack, "/api/data", ("Cookie", "theme=dark"), ("Cookie", f"demo_session={victim}"),
              accept=JSON)
    assert_needs_2fa(api)
    assert api.status == 401 and api.header("x-totp-error") == "2fa_required", api.body


def test_second_cookie_line_cannot_borrow_bobs_2fa_cookie(stack: Stack, alice: Enrolled,
                                                          bob: Enrolled) -> None:
    """Line 1 `demo_session=<bob>; totp_sidecar=<bob's>`, line 2 `demo_session=<alice>`: the
    sidecar saw bob, verified (200 Remote-User bob); the app takes the last value: alice.
    Joined, demo_session is given twice: ambiguous."""
    victim = session_of(stack, "alice")
    lines = (("Cookie", f"demo_session={bob.session}; {PASS_COOKIE}={bob.pass_cookie}"),
             ("Cookie", f"demo_session={victim}"))
    response = get(stack, "/", *lines)
    assert remote_users(response.body) in ([], ["alice"]), "Remote-User bob, app acting as alice"
    assert_ambiguous(response)
    assert_ambiguous(get(stack, "/api/data", *lines, accept=JSON))


# -- 4. a session cookie next to a bearer token ---------------------------------------------
def test_bearer_token_does_not_waive_2fa_for_a_session(stack: Stack, alice: Enrolled) -> None:
    """alice's session + `Authorization: Bearer x` (api.bearer: pass): the sidecar let it pass
    as a bearer client, the app acted on the session cookie as alice. A session needs the 2FA
    cookie whatever else comes along, on an optional path and on /reports (required)."""
    victim = session_of(stack, "alice")
    attack = (cookie(f"demo_session={victim}"), ("Authorization", "Bearer x"))
    for path in ("/", "/reports"):
        assert_needs_2fa(get(stack, path, *attack))
    api = get(stack, "/api/data", *attack, accept=JSON)
    assert_needs_2fa(api)
    assert api.status == 401


# -- 6. the app's logout ends the 2FA cookie's use ------------------------------------------
def test_2fa_cookie_of_a_logged_out_session_names_nobody(short_cache_stack: Stack) -> None:
    """After the app's logout, the old demo_session + its 2FA cookie got 200 Remote-User alice
    (the cookie was believed without asking the app who the session is now); past the who-am-I
    cache (1 s here) the app must not be told alice for a session that is nobody's."""
    stack = short_cache_stack
    with client(stack) as browser:
        login(browser, "alice")
        enroll(browser)
        session, pass_cookie = browser.cookies.get("demo_session"), browser.cookies.get(PASS_COOKIE)
        assert session and pass_cookie
        before = browser.get("/")
        assert before.status_code == 200 and remote_users(before.text) == ["alice"]
        r = browser.post("/logout")
        assert r.status_code == 303
    time.sleep(1.2)  # past primary.introspect.cache_seconds and the sidecar's 1 s answer cache
    replay = get(stack, "/", cookie(f"demo_session={session}", f"{PASS_COOKIE}={pass_cookie}"))
    assert_not_served_as(replay, "alice")
    assert remote_users(replay.body) == [], (
        f"the proxy told the app Remote-User {remote_users(replay.body)} for a logged-out session")


# -- 11. /_2fa/logout needs a POST with CSRF -------------------------------------------------
def test_2fa_logout_by_get_only_asks(own_stack: Stack) -> None:
    """A GET of /_2fa/logout (a link or an <img> on any site) cleared the 2FA cookie. It must
    show a one-button confirmation (a POST form with a CSRF token); the POST logs out."""
    stack = own_stack
    with client(stack) as browser:
        login(browser, "alice")
        enroll(browser)
        session, pass_cookie = browser.cookies.get("demo_session"), browser.cookies.get(PASS_COOKIE)
        assert session and pass_cookie
        jar = cookie(f"demo_session={session}", f"{PASS_COOKIE}={pass_cookie}")
        page = get(stack, "/_2fa/logout", jar)
        cleared = [c for c in page.set_cookies() if c.startswith(f"{PASS_COOKIE}=")]
        assert not cleared, f"a GET logged out: {cleared}"
        assert page.status == 200, f"expected the confirmation page, got {page.status}"
        forms = re.findall(r"<form\b([^>]*)>(.*?)</form>", page.body, re.S | re.I)
        posts = [body for attrs, body in forms
                 if re.search(r'method="post"', attrs, re.I)
                 and re.search(r'action="[^"]*/_2fa/logout[^"]*"', attrs)]
        assert posts, f"no POST form to /_2fa/logout on the page:\n{page.body[:800]}"
        assert re.search(r'name="csrf" value="[^"]+"', posts[0]), "the form has no CSRF token"
        csrf = hidden(page.body, "csrf")
        still = browser.get("/")  # the 2FA cookie still works
        assert still.status_code == 200 and "Signed in as alice" in still.text
        # a POST without the token does nothing
        forged = browser.post("/_2fa/logout", data={})
        assert forged.status_code == 403
        assert not any(c.startswith(f"{PASS_COOKIE}=") for c in forged.headers.get_list("set-cookie"))
        done = browser.post("/_2fa/logout", data={"csrf": csrf})
        assert done.status_code == 303, done.text
        assert any(c.startswith(f"{PASS_COOKIE}=") and "Max-Age=0" in c
                   for c in done.headers.get_list("set-cookie")), "the POST did not log out"
        after = browser.get("/")
        assert after.status_code == 302
        assert urlsplit(after.headers["location"]).path == "/_2fa/challenge"


# -- 12. state-changing POSTs from another site ---------------------------------------------
def test_cross_site_disable_is_refused(own_stack: Stack) -> None:
    """A POST to /_2fa/disable with a valid CSRF token and code, but `Origin: http://evil.test`
    or `Sec-Fetch-Site: cross-site`, turned 2FA off. It must be 403, and 2FA stays on."""
    stack = own_stack
    with client(stack) as browser:
        login(browser, "carol")
        key, _, _ = enroll(browser)
        settings = browser.get("/_2fa/settings")
        assert settings.status_code == 200 and 'action="/_2fa/disable"' in settings.text
        csrf = hidden(settings.text, "csrf")
        code = pyotp.TOTP(key).at(time.time() + 30)  # enrollment used the current step
        for foreign in ({"Origin": "http://evil.test"},
                        {"Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://evil.test", "Sec-Fetch-Site": "cross-site"}):
            r = browser.post("/_2fa/disable", data={"csrf": csrf, "code": code, "confirm": "1"},
                             headers=foreign)
            assert r.status_code == 403, f"{foreign}: {r.status_code} {r.headers.get('location')}"
            assert not any(c.startswith(f"{PASS_COOKIE}=")
                           for c in r.headers.get_list("set-cookie"))
        # the same form from the same origin reaches the code check (a wrong code: 400, not 403)
        same = {"Origin": stack.base, "Sec-Fetch-Site": "same-origin"}
        r = browser.post("/_2fa/disable", data={"csrf": csrf, "code": fresh_wrong_code(key), "confirm": "1"},
                         headers=same)
        assert r.status_code == 400, r.status_code
    # 2FA is still on: a new carol session is challenged
    with client(stack) as fresh:
        login(fresh, "carol")
        r = fresh.get("/")
        assert r.status_code == 302 and urlsplit(r.headers["location"]).path == "/_2fa/challenge"


# -- 6. paths a backend routes elsewhere take the strictest rule ----------------------------
@pytest.mark.parametrize("path", ["/denied;jsessionid=x", "/DENIED", "/Denied/",
                                  "/healthz/..;/denied", "/login/..;/denied", "/denied%3bx"])
def test_path_variants_of_a_deny_rule_are_denied_through_nginx(stack: Stack, bob: Enrolled,
                                                               path: str) -> None:
    """``deny /denied``: Tomcat/Spring strip ``;params`` (``/login/..;/denied`` is ``/denied``
    there), Express/ASP.NET route case-insensitively; before, these missed the rule (200)."""
    answer = get(stack, path, cookie(f"demo_session={bob.session}", f"{PASS_COOKIE}={bob.pass_cookie}"))
    assert answer.status == 403, (path, answer.status)


@pytest.mark.parametrize("path", ["/reports;.css", "/REPORTS", "/login/..;/reports"])
def test_path_variants_of_a_required_rule_need_set_up_through_nginx(stack: Stack, path: str) -> None:
    """``required /reports``: carol has no 2FA, so every variant sends her to set-up."""
    answer = get(stack, path, cookie(f"demo_session={session_of(stack, 'carol')}"))
    assert answer.status == 302 and "/_2fa/enroll" in (answer.header("location") or ""), path
