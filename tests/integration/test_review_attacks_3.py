"""Adversarial review, third round: the answer cache, several apps, the feed, key confirmations.

Threat model: the attacker knows alice's app password but not her phone, key or recovery
codes; alice has 2FA on; the attacker may own bob's enrolled account. Each test here fails
against the reviewed commit (revA) and shows the bypass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FakeClock, make_config, running_env

pytestmark = pytest.mark.anyio


# -- 1. a login POST with another Cookie header leaves the session's cached answers in place ---
@pytest.mark.parametrize("variant", ["extra-cookie", "reordered", "no-space"])
async def test_login_post_with_a_reworded_cookie_header_still_drops_the_sessions_answers(
        tmp_path: Path, clock: FakeClock, variant: str) -> None:
    """MEDIUM (apps that keep the session id across a login; README "A login inside a kept
    session id"). The unsafe-method invalidation (``Decision.resolve`` →
    ``IntrospectResolver.invalidate``, ``ForwardAuth._drop_credential``) is keyed on the
    *whole* Cookie header (``Credential.cache_key``), while what the app logs in is the
    session cookie alone. The attacker sends his login POST with the same session cookie but
    a reworded Cookie header (a junk cookie added, the pairs reordered, ``;`` without a space):
    the app logs session T in as alice, the sidecar drops the answers of a credential nobody
    else uses, and the very next GET with the usual header is answered from the who-am-I
    cache (and the answer cache): ``200 Remote-User: bob`` while the app serves alice, no code.

    Safe: an unsafe method forgets every cached who-am-I answer and forward-auth answer whose
    credential holds the same app session (``Reading.session_key``), however the header is
    worded; the GET after the login is a 401 challenge."""
    async with running_env(make_config(tmp_path), clock) as env:  # cache_seconds: 5
        _victim, attacker = await env.victim_and_attacker()
        before = await attacker.auth("/reports")
        assert before.status_code == 200 and before.headers["remote-user"] == "bob"
        pairs = [f"{k}={v}" for k, v in attacker.cookies.items()]
        worded = {"extra-cookie": "; ".join([*pairs, "x=1"]),
                  "reordered": "; ".join(reversed(pairs)),
                  "no-space": ";".join(pairs)}[variant]
        login = await attacker.auth("/login", method="POST", cookie=worded)
        assert login.status_code == 200
        env.demo.sessions.tokens[attacker.cookies["demo_session"]] = "alice"  # same session id
        after = await attacker.auth("/reports")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert after.status_code == 401, after.status_code


async def test_anonymous_answer_is_not_reused_after_a_login_with_a_reworded_cookie_header(
        tmp_path: Path, clock: FakeClock) -> None:
    """MEDIUM (apps that keep the session id across a login, e.g. PHP without
    ``session_regenerate_id``). No account of his own needed: the attacker holds an anonymous
    session T (the app does not know it yet), asks for /reports once (allowed: nobody is
    logged in, and that answer is kept for ``cache_seconds``), logs in as alice with the
    password in T, but sends the login POST with an extra junk cookie; the GETs that follow,
    with the plain ``demo_session=T``, are answered "anonymous, pass" from memory while the app
    serves alice's pages — without her code, for ``cache_seconds`` after every login.

    Safe: the login POST forgets what is kept for session T in any wording: 401 challenge."""
    async with running_env(make_config(tmp_path), clock) as env:
        victim = env.browser()
        await victim.login("alice")
        await victim.enroll()
        attacker = env.browser()
        attacker.cookies["demo_session"] = "fixated-session-id-0123456789"
        before = await attacker.auth("/reports")
        assert before.status_code == 200 and "remote-user" not in before.headers  # anonymous
        login = await attacker.auth("/login", method="POST",
                                    cookie=attacker.cookie_header() + "; x=1")
        assert login.status_code == 200
        env.demo.sessions.tokens[attacker.cookies["demo_session"]] = "alice"  # same session id
        after = await attacker.auth("/reports")
        assert after.status_code == 401, (after.status_code, after.headers.get("remote-user"))


# -- 2. two concurrent "remove key" POSTs turn 2FA off without the last factor's confirmation --
async def test_concurrent_key_removals_never_turn_2fa_off_without_a_confirmation(
        tmp_path: Path, clock: FakeClock) -> None:
    """LOW-MEDIUM (someone holding a verified session, not the key or the recovery codes: a
    borrowed or stolen browser). Turning 2FA off, and removing the last key, need a recovery
    code or the key's answer plus a ticked box. ``KeyForms.remove`` asks
    ``is_last_factor`` once and skips the confirmation when the key is not the last; then
    ``Passkeys.remove`` asks again and, when the key *has become* the last meanwhile, calls
    ``Accounts.disable``. alice has two keys; two concurrent POSTs ``/_2fa/keys/remove`` (one
    per key, no code, no box) both pass the first check while two keys exist. Then either
    both ``Passkeys.remove`` calls still see two keys and both delete (observed here: 2FA on
    with no key at all, only recovery codes left, and the last key went without its
    confirmation), or the second finds its key the last and calls ``Accounts.disable`` (2FA
    off, codes and passes gone) — in both cases without a recovery code or a key answer.

    Safe: the removal that is not confirmed is one conditional statement ("delete this key
    while another factor remains"), and only a confirmed request ever disables: at most one
    key goes, 2FA stays on."""
    import anyio

    from tests.authenticator import SoftKey
    from tests.integration.test_security_keys import ORIGIN, answer, key_page, register, with_key

    async with running_env(make_config(tmp_path), clock) as env:
        browser, first = await with_key(env)
        csrf, options = await key_page(browser)
        assert (await answer(browser, csrf, first.assert_(options, ORIGIN))).status_code == 303
        assert (await register(browser, SoftKey(), name="Phone")).status_code == 303
        storage = env.sidecar.parts.storage
        ids = [k.credential_id for k in await storage.credentials("alice")]
        assert len(ids) == 2
        csrf, _ = await browser.form_token("/_2fa/settings")
        answers: list[int] = []

        async def remove(key_id: str) -> None:
            answers.append((await browser.post("/_2fa/keys/remove",
                                               {"csrf": csrf, "key": key_id})).status_code)

        async with anyio.create_task_group() as group:
            for key_id in ids:
                group.start_soon(remove, key_id)
        user = await storage.get_user("alice")
        assert user.enrolled, "2FA turned off without a recovery code or the key's answer"
        assert await storage.credentials("alice"), "every key removed without a confirmation"


# -- 3. an answer decided before a login POST is kept after that POST dropped the session's ---
async def test_an_answer_in_flight_across_a_login_post_is_not_kept(tmp_path: Path,
                                                                  clock: FakeClock) -> None:
    """LOW (apps that keep the session id across a login). ``ForwardAuth._answer_for`` reads
    the who-am-I answer (from its cache: bob), then awaits the user's state (read from storage
    when memory does not hold it: after any change of bob, which bob himself can cause, e.g.
    "forget devices"). A login POST of the same credential that arrives meanwhile drops the
    credential's answers and who-am-I answer — but the GET in flight then *keeps* its
    ``200 Remote-User: bob``, valid until the old who-am-I answer's end (up to
    ``cache_seconds``), and replays it after the app gave the session to alice.

    Safe: an answer is kept only when no unsafe request of its credential came between the
    start of its decision and its end (a per-credential epoch checked in ``_keep``)."""
    import anyio

    async with running_env(make_config(tmp_path), clock) as env:
        _victim, attacker = await env.victim_and_attacker()
        assert (await attacker.auth("/reports")).status_code == 200  # who-am-I: bob, cached
        env.sidecar.parts.accounts.forget("bob")  # a change of bob: his state is read again
        statuses: dict[str, int] = {}

        async def get() -> None:
            statuses["get"] = (await attacker.auth("/reports")).status_code

        async def login() -> None:
            statuses["login"] = (await attacker.auth("/login", method="POST")).status_code

        async with anyio.create_task_group() as group:
            group.start_soon(get)
            await anyio.sleep(0)
            group.start_soon(login)
        assert statuses == {"get": 200, "login": 200}
        env.demo.sessions.tokens[attacker.cookies["demo_session"]] = "alice"  # same session id
        after = await attacker.auth("/reports")
        assert after.headers.get("remote-user") != "bob", "200 Remote-User bob, app acting as alice"
        assert after.status_code == 401, after.status_code
