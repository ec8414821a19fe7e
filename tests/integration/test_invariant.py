"""The guarantee, checked as a whole, by a stateful property test over the real ASGI app.

Random sequences of user and attacker steps — app login/logout, enroll, challenge with
right/wrong/replayed/old codes, recovery codes, disable, admin reset, a 2FA cookie copied to
another session, the clock moving — and after every step the invariant:

  no request of a user with 2FA on reaches a non-bypass path unless that user passed a code
  in the current app session, and no code or recovery code is ever accepted twice.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.conftest import Browser, Env, FakeClock, make_config, start_env

USERS = ("alice", "bob")
MAX_AGE = 3600


@dataclass
class Account:
    secret: str = ""
    codes: list[str] = field(default_factory=list)
    used_codes: set[str] = field(default_factory=set)
    last_step: int = -1
    accepted: set[tuple[str, int]] = field(default_factory=set)  # (code, step) ever accepted

    @property
    def enrolled(self) -> bool:
        return bool(self.secret)


@dataclass
class Session:
    user: str
    browser: Browser
    logged_in: bool = True
    verified_at: float | None = None  # when this app session passed a code; None = never
    own_pass: str | None = None  # the 2FA cookie this app session received when it passed


class TwoFactorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="sidecar-invariant-"))
        self.clock = FakeClock()
        config = make_config(self.tmp, cookie={"max_age": MAX_AGE},
                             throttle={"max_failures": 1000, "max_failures_per_client": 100_000})
        self._env_iter = start_env(config, self.clock)
        self.env: Env = self.run(self._env_iter.__anext__())
        self.accounts = {user: Account() for user in USERS}
        self.sessions: list[Session] = []

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

    def step(self) -> int:
        return int(self.clock()) // 30

    def code(self, secret: str, step: int) -> str:
        return pyotp.TOTP(secret).at(step * 30)

    def window_codes(self, secret: str) -> set[str]:
        now = self.step()
        return {self.code(secret, s) for s in (now - 1, now, now + 1)}

    def verified(self, session: Session) -> bool:
        return session.verified_at is not None and self.clock() - session.verified_at <= MAX_AGE

    def challenge(self, session: Session, code: str) -> bool | None:
        """Whether the code was accepted; None when the page did not ask (already verified)."""
        page = self.run(session.browser.get("/_2fa/challenge?rd=/"))
        if page.status_code == 303:
            assert self.verified(session), "the challenge was skipped for an unverified session"
            return None
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        response = self.run(session.browser.post("/_2fa/challenge",
                                                 {"csrf": csrf, "code": code, "rd": "/"}))
        status: int = response.status_code
        assert status in (303, 400), status
        return status == 303

    def passed(self, session: Session) -> None:
        session.verified_at = self.clock()
        session.own_pass = session.browser.cookies.get("totp_sidecar")

    def end_all_passes(self, user: str) -> None:
        for session in self.sessions:
            if session.user == user:
                session.verified_at = session.own_pass = None

    # -- steps ----------------------------------------------------------------------------
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
        session.verified_at = session.own_pass = None

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def log_out(self, index: int) -> None:
        session = self.pick(index)
        self.run(session.browser.logout())
        session.logged_in = False
        session.verified_at = session.own_pass = None

    @precondition(lambda self: self.sessions)
    @rule(index=st.integers(0, 50))
    def enroll(self, index: int) -> None:
        session = self.pick(index)
        account = self.accounts[session.user]
        if not session.logged_in or account.enrolled:
            return
        secret, codes = self.run(session.browser.enroll())
        account.secret, account.codes, account.used_codes = secret, codes, set()
        account.last_step = self.step()
        account.accepted = {(self.code(secret, self.step()), self.step())}
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
        csrf, _ = self.run(session.browser.form_token("/_2fa/settings"))
        response = self.run(session.browser.post("/_2fa/disable", {"csrf": csrf, "code": unused[0]}))
        assert response.status_code == 303, response.text
        self.accounts[session.user] = Account()
        self.end_all_passes(session.user)

    @rule(user=st.sampled_from(USERS))
    def admin_reset(self, user: str) -> None:
        changed = self.run(self.env.sidecar.parts.accounts.disable(user, actor="admin"))
        assert changed == self.accounts[user].enrolled
        self.accounts[user] = Account()
        self.end_all_passes(user)

    @precondition(lambda self: len(self.sessions) >= 2)
    @rule(src=st.integers(0, 50), dst=st.integers(0, 50))
    def copy_cookie_to_another_session(self, src: int, dst: int) -> None:
        source, target = self.pick(src), self.pick(dst)
        if source is target or "totp_sidecar" not in source.browser.cookies:
            return
        value = source.browser.cookies["totp_sidecar"]
        target.browser.cookies["totp_sidecar"] = value
        if value != target.own_pass:
            target.verified_at = None  # a pass belongs to the app session it was issued in

    @rule(seconds=st.sampled_from((1, 29, 30, 31, 95, MAX_AGE + 1)))
    def clock_moves(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # -- the guarantee --------------------------------------------------------------------
    @invariant()
    def only_verified_sessions_pass(self) -> None:
        for session in self.sessions:
            account = self.accounts[session.user]
            if not session.logged_in or not account.enrolled:
                continue
            response = self.run(session.browser.auth("/reports"))
            verified = self.verified(session)
            if response.status_code == 200:
                assert verified, f"{session.user} passed without a code in this app session"
                assert response.headers["remote-user"] == session.user
            else:
                assert response.status_code == 401
                assert not verified, f"{session.user} passed a code but is refused"


TestTwoFactorInvariant = TwoFactorMachine.TestCase
TestTwoFactorInvariant.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
