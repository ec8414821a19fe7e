"""Adversarial review, fourth round: login marks, "Confirm access", key removal, the method.

Threat model: the attacker knows alice's app password but not her phone, key or recovery
codes; alice has 2FA on; the attacker may own bob's enrolled account. Each test here fails
against the reviewed commit and shows the bypass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, make_config, running_env

pytestmark = pytest.mark.anyio


def _percent_encoded(value: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in value)


# -- 1. a login marks its session cookie as spelled, not as the app reads it -----------------
@pytest.mark.parametrize("variant", ["percent-encoded-value", "folded-name"])
async def test_login_post_with_another_spelling_of_the_session_cookie_still_marks_it(
        tmp_path: Path, clock: FakeClock, variant: str) -> None:
    """MEDIUM (apps that keep the session id across a login — README's own example, PHP
    without ``session_regenerate_id``). ``Logins`` marks a login's session by its cookies as
    ``name=value`` *as spelled in that request* (``Reading.session_key``), while many apps
    decode what they read: PHP, Rack (Rails, Sinatra) and Express' cookie-parser percent-
    decode cookie values (``PHPSESSID=%61%62`` is session ``ab`` there), and with
    ``primary.session_cookies`` empty (the default) every name counts as it is spelled, while
    PHP folds ``.`` into ``_`` and ASP.NET reads names in any case (the door's own
    ``fold_cookie_name``). bob, verified in session T, sends his login POST (as alice, with
    her password) carrying session T in another spelling: the app logs T in as alice, the
    sidecar marks a token no cached answer has, and the next GET with the usual
    ``demo_session=T`` is ``200 Remote-User: bob`` from the caches while the app serves alice.

    Safe: tokens are the cookies as apps read them (folded name, percent-decoded value), or
    a session cookie spelled in a way apps may read differently is refused as ambiguous."""
    primary: dict[str, Any] = {"resolver": "introspect",
                               "introspect": {"url": "http://app.test/api/me", "cache_seconds": 5}}
    if variant == "percent-encoded-value":
        primary["session_cookies"] = ["demo_session"]  # configured as the README asks
    async with running_env(make_config(tmp_path, primary=primary), clock) as env:
        _victim, attacker = await env.victim_and_attacker()
        before = await attacker.auth("/reports")
        assert before.status_code == 200 and before.headers["remote-user"] == "bob"
        session = attacker.cookies["demo_session"]
        others = [f"{k}={v}" for k, v in attacker.cookies.items() if k != "demo_session"]
        spelled = (f"demo_session={_percent_encoded(session)}" if variant == "percent-encoded-value"
                   else f"demo.session={session}")
        login = await attacker.auth("/login", method="POST", cookie="; ".join([spelled, *others]))
        assert login.status_code == 200, login.text  # the app gets the login
        env.demo.sessions.tokens[session] = "alice"  # the app reads session T: alice now
        after = await attacker.auth("/reports")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert after.status_code == 401, after.status_code


# -- 2. the app logs the session in after the quiet window: the client decides when ----------
async def test_a_login_the_app_processes_after_cache_seconds_still_drops_the_sessions_answers(
        tmp_path: Path, clock: FakeClock) -> None:
    """MEDIUM (apps that keep the session id across a login). The login POST is marked when
    the proxy asks forward-auth, which nginx (``auth_request``, access phase) and Traefik/Caddy
    do as soon as the *headers* arrived; the app logs the session in only once the body has
    come — and the client chooses when that is (it trickles the body: nginx's
    ``client_body_timeout`` is per read). ``IntrospectResolver.resolve_credential`` keeps a
    who-am-I answer worked out after the mark once ``cache_seconds`` have passed since it
    (``Logins.keeps(quiet=...)``), assuming the app is done by then. bob marks session T with
    his login POST's headers, waits out ``cache_seconds``, asks for /reports (who-am-I: still
    bob, now kept with the forward-auth answer), then completes the body: the app logs T in
    as alice and the next GETs are ``200 Remote-User: bob`` from the caches, no code.

    Safe: no answer is kept for a session while a mark of it is live (``MARKS_KEPT_SECONDS``)
    — or another way that does not assume the app processed the login within ``quiet``."""
    import anyio

    primary = {"resolver": "introspect", "session_cookies": ["demo_session"],
               "introspect": {"url": "http://app.test/api/me", "cache_seconds": 1}}
    async with running_env(make_config(tmp_path, primary=primary), clock) as env:
        _victim, attacker = await env.victim_and_attacker()
        assert (await attacker.auth("/reports")).headers.get("remote-user") == "bob"
        # the login POST's headers: nginx asks forward-auth, then waits for the body
        assert (await attacker.auth("/login", method="POST")).status_code == 200
        await anyio.sleep(1.2)  # longer than cache_seconds; the body still trickling in
        during = await attacker.auth("/reports")  # the app has not seen the login yet: bob
        assert during.status_code == 200 and during.headers["remote-user"] == "bob"
        env.demo.sessions.tokens[attacker.cookies["demo_session"]] = "alice"  # body complete
        after = await attacker.auth("/reports")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert after.status_code == 401, after.status_code
