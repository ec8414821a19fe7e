"""The guarantee, checked as a whole, by a stateful property test over the real ASGI app.

Random sequences of user and attacker steps — app login/logout, enroll, challenge with
right/wrong/replayed/old codes, recovery codes, disable, admin reset and unlock, a 2FA cookie
copied to another session, the clock moving, and requests crafted by an attacker (a session
cookie given twice, the victim's session in a second Cookie line, a bogus Authorization next
to a victim's session, an app session switched to another user behind the sidecar's back, a
burst of concurrent code guesses) — and after every step the invariant:

  no request of a user with 2FA on reaches a non-bypass path unless that user passed a code
  in the current app session; every request the sidecar lets through names (in Remote-User)
  exactly the user the app itself sees for it, and carries a 2FA cookie earned in that very
  app session when that user has 2FA on; no code or recovery code is ever accepted twice; at
  most ``throttle.max_failures`` guesses per window are compared, however many arrive at once.

The app's who-am-I answer is not cached (``cache_seconds: 0``), so that a session switched to
another user in the app shows at once. Failed attempts and locks are modelled (the throttle
is low enough for the guessing step to lock a user), so that every code's answer is predicted.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pyotp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from starlette.requests import cookie_parser

from sidecar.core import totp
from tests.conftest import Browser, Env, FakeClock, config_dict, make_config, start_env

USERS = ("alice", "bob")
MAX_AGE = 3600
MAX_FAILURES = 8  # low enough for the guessing step to cross it, high enough to let codes be typed
GUESSES = 30  # concurrent wrong codes sent by the guessing step
SESSION = "demo_session"
PASS = "totp_sidecar"
AMBIGUOUS = "ambiguous_request"
Lines = tuple[tuple[str, str], ...]  # request headers as sent, one (name, value) per line


@dataclass
class Account:
    secret: str = ""
    codes: list[str] = field(default_factory=list)
    used_codes: set[str] = field(default_factory=set)
    last_step: int = -1
    accepted: set[tuple[str, int]] = field(default_factory=set)  # (code, step) ever accepted
    failures: list[int] = field(default_factory=list)  # when each failed (or reserved) attempt was
    locked_until: int = 0

    @property
    def enrolled(self) -> bool:
        return bool(self.secret)


@dataclass
class Session:
    """One app session (its browser); ``user`` is whom the app's session store says it is."""

    user: str
    browser: Browser
    logged_in: bool = True
    # user → (when, the 2FA cookie): codes passed in this app session whose cookie the browser
    # still holds (the session may be switched to another user and back)
    passes: dict[str, tuple[float, str]] = field(default_factory=dict)
    # every 2FA cookie earned in this app session: value → (user, when); an older one copied
    # back into this browser is still a pass of this session (until the user's 2FA changes)
    earned: dict[str, tuple[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    """A forward-auth call the machine made, and the sidecar's answer."""

    lines: Lines
    status: int
    remote_user: str | None
    error: str


def joined_cookies(lines: Lines) -> str:
    """Every Cookie line joined, as the app receives them."""
    return "; ".join(value for name, value in lines if name.lower() == "cookie")


def cookie_values(lines: Lines, name: str) -> list[str]:
    out = []
    for chunk in joined_cookies(lines).split(";"):
        key, sep, value = chunk.strip().partition("=")
        if sep and key == name:
            out.append(value.strip())
    return out


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{user}-password".encode()).decode()


class TwoFactorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="sidecar-invariant-"))
        self.clock = FakeClock()
        primary = config_dict(self.tmp)["primary"]
        primary["introspect"] = primary["introspect"] | {"cache_seconds": 0}
        config = make_config(self.tmp, cookie={"max_age": MAX_AGE}, primary=primary,
                             throttle={"max_failures": MAX_FAILURES,
                                       "max_failures_per_client": 100_000})
        self.throttle = config.throttle
        self._env_iter = start_env(config, self.clock)
        self.env: Env = self.run(self._env_iter.__anext__())
        self.accounts = {user: Account() for user in USERS}
        self.sessions: list[Session] = []
        self.sent: list[Sent] = []  # forward-auth calls since the last check

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def teardown(self) -> None:
        try:
            self.run(self._env_iter.aclose())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------
    def pick(self, index: int) -> Session:
        return self.sessions[index % len(self.sessions)]

    def live(self) -> list[Session]:
        return [s for s in self.sessions if s.logged_in]

    def with_pass(self) -> list[Session]:
        """Logged-in sessions that passed a code and still hold its 2FA cookie."""
        return [s for s in self.sessions if s.logged_in and self.verified(s)]

    def step(self) -> int:
        return int(self.clock()) // 30

    def code(self, secret: str, step: int) -> str:
        return pyotp.TOTP(secret).at(step * 30)

    def window_codes(self, secret: str) -> set[str]:
        now = self.step()
        return {self.code(secret, s) for s in (now - 1, now, now + 1)}

    def verified(self, session: Session) -> bool:
        entry = session.passes.get(session.user)
        return entry is not None and self.clock() - entry[0] <= MAX_AGE

    def own_pass(self, session: Session) -> str | None:
        entry = session.passes.get(session.user)
        return entry[1] if entry is not None else None

    def may_try(self, account: Account) -> bool:
        """Whether the sidecar will compare a code of this user now (the throttle's model)."""
        now = int(self.clock())
        account.failures = [t for t in account.failures if t > now - self.throttle.window]
        return account.locked_until <= now and len(account.failures) < self.throttle.max_failures

    def settle(self, account: Account, ok: bool) -> bool:
        """After a compared attempt (already in ``failures``): whether the user is now locked."""
        if ok:
            account.failures.clear()
            return False
        if len(account.failures) >= self.throttle.max_failures:
            account.locked_until = int(self.clock()) + self.throttle.lockout
            return True
        return False

    def challenge(self, session: Session, code: str) -> bool | None:
        """Whether the code was accepted; None when it was not compared (the page did not ask,
        already verified; or the throttle refused it unseen)."""
        page: httpx.Response = self.run(session.browser.get("/_2fa/challenge?rd=/"))
        if page.status_code == 303:
            assert self.verified(session), "the challenge was skipped for an unverified session"
            return None
        account = self.accounts[session.user]
        compared = self.may_try(account)
        if compared:
            account.failures.append(int(self.clock()))
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        response: httpx.Response = self.run(session.browser.post(
            "/_2fa/challenge", {"csrf": csrf, "code": code, "rd": "/"}))
        assert response.status_code in (303, 400, 429), response.status_code
        if not compared:
            assert response.status_code == 429, "a code was compared while the user is throttled"
            return None
        accepted = response.status_code == 303
        locked = self.settle(account, accepted)
        assert response.status_code == (303 if accepted else 429 if locked else 400), (
            f"answer {response.status_code}, the throttle model says locked={locked}")
        return accepted

    def passed(self, session: Session) -> None:
        value = session.browser.cookies.get(PASS)
        assert value, "a passed code set no 2FA cookie"
        session.passes = {session.user: (self.clock(), value)}  # the browser holds one cookie
        session.earned[value] = (session.user, self.clock())

    def end_all_passes(self, user: str) -> None:
        for session in self.sessions:
            session.passes.pop(user, None)
            session.earned = {v: e for v, e in session.earned.items() if e[0] != user}

    async def _auth(self, lines: Lines) -> httpx.Response:
        send = [("accept", "text/html"), ("x-original-url", "http://app.test/reports"),
                ("x-original-method", "GET"), *lines]
        response = await self.env.client.get("/auth/nginx", headers=send)
        self.sent.append(Sent(lines, response.status_code, response.headers.get("remote-user"),
                              response.headers.get("x-totp-error", "")))
        return response

    def auth(self, lines: Lines) -> httpx.Response:
        """What nginx's auth_request subrequest would ask for a GET of /reports with ``lines``."""
        return self.run(self._auth(lines))  # type: ignore[no-any-return]

    def auth_session(self, session: Session) -> httpx.Response:
        return self.auth((("cookie", session.browser.cookie_header()),))

    def app_user(self, lines: Lines) -> str | None:
        """Whom the app itself sees for these headers: its /api/me, with every Cookie line
        joined into one (as a proxy, HTTP/2 and the app's framework hand them over)."""
        headers = {"accept": "application/json"}
        if cookie := joined_cookies(lines):
            headers["cookie"] = cookie
        authorization = [value for name, value in lines if name.lower() == "authorization"]
        if authorization:
            headers["authorization"] = authorization[0]
        response = self.run(self.env.app_client.get("/api/me", headers=headers))
        assert response.status_code in (200, 401), response.status_code
        return str(response.json()["user"]) if response.status_code == 200 else None

    def judge(self, sent: Sent) -> None:
        """A request let through names the user the app sees, and carries a 2FA cookie earned
        in that very app session when that user has 2FA on."""
        if sent.status != 200:
            return
        seen = self.app_user(sent.lines)
        assert sent.remote_user == seen, (
            f"let through as {sent.remote_user!r} while the app sees {seen!r}: {sent.lines}")
        if seen is None or not self.accounts[seen].enrolled:
            return
        token = cookie_parser(joined_cookies(sent.lines)).get(SESSION)
        owner = next((s for s in self.live() if token and s.browser.cookies.get(SESSION) == token),
                     None)
        # No request of this machine carries an accepted X-OTP code: an enrolled user passes
        # only with an app session of the machine.
        assert owner is not None, f"{seen} passed without an app session: {sent.lines}"
        assert owner.user == seen
        assert self.verified(owner), f"{seen} passed without a code in this app session"
        assert cookie_values(sent.lines, PASS) == [self.own_pass(owner)], (
            f"{seen} passed with a 2FA cookie not earned in this app session: {sent.lines}")

    # -- steps ----------------------------------------------------------------------------
    @initialize(enrolled=st.sets(st.sampled_from(USERS)))
    def start(self, enrolled: set[str]) -> None:
        """One app session per user, some of them with 2FA on: the attacker steps need both."""
        for user in USERS:
            self.login(user)
            if user in enrolled:
                self.enroll(len(self.sessions) - 1)

    @rule(user=st.sampled_from(USERS))
    def login(self, user: str) -> None:
        browser = self.env.browser()
        self.run(browser.login(user))
        self.sessions.append(Session(user, browser))

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def log_out_and_in(self, index: int) -> None:
        session = self.pick(index)
        self.run(session.browser.logout())
        self.run(session.browser.login(session.user))  # a new app session, old 2FA cookie kept
        session.logged_in = True
        session.passes = {}
        session.earned = {}

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def log_out(self, index: int) -> None:
        session = self.pick(index)
        self.run(session.browser.logout())
        session.logged_in = False
        session.passes = {}
        session.earned = {}

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def enroll(self, index: int) -> None:
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or account.enrolled or not self.may_try(account):
            return
        secret, codes = self.run(session.browser.enroll())
        account.secret, account.codes, account.used_codes = secret, codes, set()
        account.last_step = self.step()
        account.accepted = {(self.code(secret, self.step()), self.step())}
        account.failures.clear()
        self.passed(session)

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50), offset=st.sampled_from((-3, -2, -1, 0, 1, 2)))
    def challenge_with_totp(self, index: int, offset: int) -> None:
        """Right (offset -1..1), old (-2, -3) or future (+2) codes, replays included."""
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or not account.enrolled:
            return
        step = self.step() + offset
        code = self.code(account.secret, step)
        fresh = -1 <= offset <= 1 and step > account.last_step
        if not -1 <= offset <= 1 and code in self.window_codes(account.secret):
            return  # an out-of-window code that happens to equal a valid one: not a test
        accepted = self.challenge(session, code)
        if accepted:
            assert (code, step) not in account.accepted, "a code was accepted twice"
            assert fresh, f"an old, future or used code was accepted (offset {offset})"
            account.accepted.add((code, step))
            account.last_step = step
            self.passed(session)
        elif accepted is False:
            assert not fresh, "a fresh code was refused"

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def replay_an_accepted_code(self, index: int) -> None:
        """An attacker who watched a code being typed tries it in another app session."""
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or not account.accepted:
            return
        code, step = max(account.accepted, key=lambda item: item[1])
        if step < self.step() - 1 and code in self.window_codes(account.secret):
            return
        assert not self.challenge(session, code), "a replayed code was accepted"

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50), which=st.integers(0, 19), dash=st.booleans(),
          upper=st.booleans())
    def challenge_with_recovery_code(self, index: int, which: int, dash: bool, upper: bool) -> None:
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or not account.enrolled:
            return
        code = account.codes[which]
        typed = code if dash else code.replace("-", "")
        accepted = self.challenge(session, typed.upper() if upper else typed)
        if accepted:
            assert code not in account.used_codes, "a recovery code was accepted twice"
            account.used_codes.add(code)
            self.passed(session)
        elif accepted is False:
            assert code in account.used_codes, "an unused recovery code was refused"

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def challenge_with_wrong_code(self, index: int) -> None:
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or not account.enrolled:
            return
        wrong = self.code(account.secret, self.step() + 40)
        if wrong in self.window_codes(account.secret):
            return
        assert not self.challenge(session, wrong), "a wrong code was accepted"

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def disable_with_recovery_code(self, index: int) -> None:
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or not account.enrolled or not self.verified(session):
            return
        unused = [c for c in account.codes if c not in account.used_codes]
        compared = self.may_try(account)
        csrf, _ = self.run(session.browser.form_token("/_2fa/settings"))
        response = self.run(session.browser.post("/_2fa/disable", {"csrf": csrf, "code": unused[0],
                                                                   "confirm": "1"}))
        if not compared:
            assert response.status_code == 429, "a code was compared while the user is throttled"
            return
        assert response.status_code == 303, response.text
        self.accounts[session.user] = Account()
        self.end_all_passes(session.user)

    @rule(user=st.sampled_from(USERS))
    def admin_reset(self, user: str) -> None:
        changed = self.run(self.env.sidecar.parts.accounts.disable(user, actor="admin"))
        assert changed == self.accounts[user].enrolled
        self.accounts[user] = Account()
        self.end_all_passes(user)

    @rule(user=st.sampled_from(USERS))
    def admin_unlock(self, user: str) -> None:
        account = self.accounts[user]
        changed = self.run(self.env.sidecar.parts.accounts.unlock(user))
        assert changed == (account.locked_until > 0)
        account.locked_until, account.failures = 0, []

    @precondition(lambda self: len(self.sessions) >= 2)
    @rule(src=st.integers(0, 50), dst=st.integers(0, 50))
    def copy_cookie_to_another_session(self, src: int, dst: int) -> None:
        source, target = self.pick(src), self.pick(dst)
        if source is target or PASS not in source.browser.cookies:
            return
        value = source.browser.cookies[PASS]
        target.browser.cookies[PASS] = value
        # a pass belongs to the app session it was issued in
        target.passes = {u: p for u, p in target.passes.items() if p[1] == value}
        if value in target.earned:  # a cookie this very session earned before: still its pass
            user, when = target.earned[value]
            target.passes[user] = (when, value)

    @rule(seconds=st.sampled_from((1, 29, 30, 31, 95, MAX_AGE + 1)))
    def clock_moves(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # -- attacker steps on how requests are read -------------------------------------------
    @precondition(lambda self: self.with_pass() and len(self.live()) >= 2)
    @rule(a=st.integers(0, 50), v=st.integers(0, 50), attacker_first=st.booleans(),
          pass_first=st.booleans(),
          spelling=st.sampled_from((SESSION, SESSION, "Demo_Session", "demo.session", " demo_session",
                                    "demo session")))
    def duplicate_session_cookie(self, a: int, v: int, attacker_first: bool, pass_first: bool,
                                 spelling: str) -> None:
        """``demo_session=<mine>; demo_session=<victim's>`` (or the reverse, or the second
        under a name some framework folds into it) with the attacker's valid 2FA cookie."""
        attackers = self.with_pass()
        attacker = attackers[a % len(attackers)]
        victims = [s for s in self.live() if s is not attacker]
        victim = victims[v % len(victims)]
        mine, theirs = attacker.browser.cookies[SESSION], victim.browser.cookies[SESSION]
        first, second = (mine, theirs) if attacker_first else (theirs, mine)
        sessions = f"{SESSION}={first}; {spelling}={second}"
        own = f"{PASS}={self.own_pass(attacker)}"
        response = self.auth((("cookie", f"{own}; {sessions}" if pass_first else f"{sessions}; {own}"),))
        assert response.status_code != 200, f"a session cookie given twice was let through: {sessions}"
        assert response.status_code == 401, response.status_code
        assert response.headers.get("x-totp-error") == AMBIGUOUS, response.text

    @precondition(lambda self: self.with_pass() and len(self.live()) >= 2)
    @rule(a=st.integers(0, 50), v=st.integers(0, 50), layout=st.integers(0, 5))
    def victim_session_in_another_cookie_line(self, a: int, v: int, layout: int) -> None:
        """The victim's session in a Cookie line of its own, the attacker's 2FA cookie (and
        perhaps the attacker's session) in another: two header lines really go out."""
        attackers = self.with_pass()
        attacker = attackers[a % len(attackers)]
        victims = [s for s in self.live() if s is not attacker]
        victim = victims[v % len(victims)]
        own = f"{PASS}={self.own_pass(attacker)}"
        mine = f"{SESSION}={attacker.browser.cookies[SESSION]}"
        theirs = f"{SESSION}={victim.browser.cookies[SESSION]}"
        layouts: list[tuple[str, str]] = [
            (own, theirs),
            (f"{mine}; {own}", theirs),
            (f"{own}; {mine}", theirs),
            (f"{own}; theme=dark", theirs),
            (f"{own}; {mine}; theme=dark", theirs),
            (theirs, own),
        ]
        first, second = layouts[layout]
        lines = (("cookie", first), ("cookie", second))
        response = self.auth(lines)
        self.judge(self.sent[-1])
        if response.status_code == 200:  # the app sees the victim's session (every layout)
            assert response.headers.get("remote-user") == victim.user, response.headers
            assert not self.accounts[victim.user].enrolled, (
                f"{victim.user} let through on the attacker's 2FA cookie: {lines}")

    @precondition(lambda self: self.live())
    @rule(v=st.integers(0, 50), which=st.integers(0, 4))
    def bogus_authorization_next_to_a_session(self, v: int, which: int) -> None:
        """A victim's cookie session without a 2FA cookie, plus an Authorization header."""
        victims = self.live()
        victim = victims[v % len(victims)]
        other = next(u for u in USERS if u != victim.user)
        authorization = ("Bearer x", "bearer x", "Token x", basic(victim.user), basic(other))[which]
        lines = (("cookie", f"{SESSION}={victim.browser.cookies[SESSION]}"),
                 ("authorization", authorization))
        response = self.auth(lines)
        if self.accounts[victim.user].enrolled:
            assert response.status_code != 200, (
                f"{victim.user}'s session without a 2FA cookie let through with {authorization!r}")
        self.judge(self.sent[-1])

    @precondition(lambda self: self.with_pass())
    @rule(index=st.integers(0, 50))
    def session_switched_to_another_user(self, index: int) -> None:
        """The app's session store now says another user, under the same session id, while
        the browser holds the old user's valid 2FA cookie."""
        candidates = self.with_pass()
        session = candidates[index % len(candidates)]
        old, new = session.user, next(u for u in USERS if u != session.user)
        token = session.browser.cookies[SESSION]
        self.env.demo.sessions.tokens[token] = new
        session.user = new
        response = self.auth_session(session)
        if response.status_code == 200:
            assert response.headers.get("remote-user") != old, (
                f"a session switched from {old} to {new} was let through as {old}")
            assert not self.accounts[new].enrolled or self.verified(session), (
                f"{new} let through on {old}'s 2FA cookie")

    @precondition(lambda self: any(a.enrolled for a in self.accounts.values()))
    @rule(user=st.sampled_from(USERS))
    def concurrent_guesses(self, user: str) -> None:
        """GUESSES wrong X-OTP codes at once with the user's password (an API request): at
        most max_failures of them are compared, and then even a right code is refused."""
        account = self.accounts[user]
        if not account.enrolled:
            return
        valid = self.window_codes(account.secret)
        wrong = [c for c in (f"{(i * 7919 + 12345) % 1_000_000:06d}" for i in range(GUESSES + 3))
                 if c not in valid][:GUESSES]
        now = int(self.clock())
        expected = max(0, self.throttle.max_failures - len(account.failures)) \
            if self.may_try(account) else 0
        expected = min(expected, len(wrong))
        credentials = ("authorization", basic(user))

        async def burst() -> list[httpx.Response]:
            return list(await asyncio.gather(
                *(self._auth((credentials, ("x-otp", code))) for code in wrong)))

        with mock.patch.object(totp, "match_step", wraps=totp.match_step) as compare:
            responses: list[httpx.Response] = self.run(burst())
            compared = compare.call_count
        for response in responses:
            assert response.status_code == 401, response.status_code
            assert response.headers.get("x-totp-error") == "otp_invalid", response.text
        assert compared <= self.throttle.max_failures, f"{compared} guesses compared at once"
        assert compared == expected, f"{compared} guesses compared, the throttle model says {expected}"
        account.failures += [now] * compared
        if compared:
            assert self.settle(account, ok=False), "the model does not lock after the burst"
        state = self.run(self.env.sidecar.parts.accounts.user(user))
        assert state.locked_until == account.locked_until, (state.locked_until, account.locked_until)
        steps = [s for s in range(self.step() - 1, self.step() + 2) if s > account.last_step]
        if not steps:
            return
        right = self.code(account.secret, steps[0])
        with mock.patch.object(totp, "match_step", wraps=totp.match_step) as compare:
            response = self.auth((credentials, ("x-otp", right)))
            assert compare.call_count == 0, "a code was compared while the user is locked"
        assert response.status_code == 401, "a right code was accepted after the guesses"
        assert response.headers.get("x-totp-error") == "otp_invalid", response.text

    # -- the guarantee --------------------------------------------------------------------
    @invariant()
    def only_verified_sessions_pass(self) -> None:
        for session in self.live():
            account = self.accounts[session.user]
            response = self.auth_session(session)
            if not account.enrolled:
                assert response.status_code == 200, response.status_code
                assert response.headers.get("remote-user") == session.user
                continue
            verified = self.verified(session)
            if response.status_code == 200:
                assert verified, f"{session.user} passed without a code in this app session"
                assert response.headers["remote-user"] == session.user
            else:
                assert response.status_code == 401
                assert not verified, f"{session.user} passed a code but is refused"
        sent, self.sent = self.sent, []
        for item in sent:
            self.judge(item)


TestTwoFactorInvariant = TwoFactorMachine.TestCase
TestTwoFactorInvariant.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
