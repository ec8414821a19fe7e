"""The forward-auth answer cache: how long an allow answer is reused, and what ends it.

One ``ForwardAuth`` over in-memory parts (as tests/unit/web/test_authz.py), a resolver that
counts how often the app is asked (a reused answer asks nobody), the sidecar's fixed clock
and a fixed clock for the cache's own monotonic time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.clock import FixedClock
from sidecar.core.request import Reading
from sidecar.primary import Credential, Identity, Resolved
from sidecar.states import STALE_SECONDS
from sidecar.storage import UserState
from sidecar.web.authz import Dialect, ForwardAuth
from sidecar.web.cookies import Cookies
from sidecar.wiring import Parts, build_parts
from tests.conftest import FakeClock, make_config
from tests.fakes import MemoryStorage

pytestmark = pytest.mark.anyio
RULES = [{"path": "/wire", "level": "optional", "step_up": 300}]


class CountingResolver:
    """The app says the user named by the ``s`` session cookie is logged in; counts the asks."""

    def __init__(self) -> None:
        self.asked = 0
        self.until = math.inf  # how long the app's answer may be reused (monotonic)

    async def resolve(self, reading: Reading) -> Resolved:
        self.asked += 1
        user = reading.cookie("s")
        return Resolved(Identity(user) if user else None, self.until)

    async def resolve_credential(self, cred: Credential) -> Resolved:
        return Resolved(None)

    async def aclose(self) -> None:
        return None


class Setup:
    def __init__(self, tmp_path: Path, clock: FakeClock, **cache: Any) -> None:
        config = make_config(tmp_path, rules=RULES, cookie={"idle_timeout": 3600},
                             cache=cache, primary={"resolver": "introspect", "session_cookies": ["s"],
                                                   "introspect": {"url": "http://app.test/me"}})
        storage = MemoryStorage()
        storage.users["erin"] = UserState("erin", secret="sealed", enabled_at=1, generation=1)
        self.resolver = CountingResolver()
        self.parts: Parts = build_parts(config, storage=storage, resolver=self.resolver, clock=clock)
        self.monotonic = FixedClock(1000.0)
        self.auth = ForwardAuth(self.parts, Cookies(self.parts.config), self.monotonic)
        self.cookie = f"s=erin; totp_sidecar={self.parts.passes.issue('erin', 's=erin', 1)}"

    async def ask(self, path: str = "/", method: str = "GET",
                  cookie: str | None = None) -> tuple[int, dict[str, str]]:
        if self.parts.accounts.states.last_seq is None:
            await self.parts.accounts.states.poll()  # the change feed read: states vouched for
        headers = [(b"accept", b"text/html"), (b"cookie", (self.cookie if cookie is None
                                                          else cookie).encode()),
                   (b"x-original-url", f"https://app.test{path}".encode()),
                   (b"x-original-method", method.encode())]
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {"type": "http", "path": "/auth/nginx", "headers": headers,
                 "client": ("127.0.0.1", 50000)}
        await self.auth(scope, send, Dialect.NGINX)
        return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}


async def test_a_returning_user_is_answered_from_memory_until_answer_seconds(
        tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=60)
    assert (await s.ask())[0] == 200 and s.resolver.asked == 1
    s.monotonic.advance(30)
    clock.advance(30)
    status, headers = await s.ask()
    assert status == 200 and headers["remote-user"] == "erin" and s.resolver.asked == 1
    assert s.auth.cache_sizes()["answers"] == (1, 50_000)
    s.monotonic.advance(31)  # 61 s after the decision
    assert (await s.ask())[0] == 200 and s.resolver.asked == 2


async def test_answer_seconds_zero_keeps_nothing(tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=0)
    await s.ask()
    await s.ask()
    assert s.resolver.asked == 2


async def test_the_answer_ends_with_the_pass(tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=3600)
    assert (await s.ask())[0] == 200
    clock.advance(12 * 3600 + 1)  # the cache's own time has not moved: only the pass ended
    status, headers = await s.ask()
    assert status == 401 and "/_2fa/challenge" in headers["location"] and s.resolver.asked == 2


async def test_the_answer_ends_when_the_idle_timeout_refresh_is_due(
        tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=3600)
    assert (await s.ask())[0] == 200
    clock.advance(59)
    assert (await s.ask())[0] == 200 and s.resolver.asked == 1
    clock.advance(1)  # a refreshed 2FA cookie is due: the answer must carry it
    status, headers = await s.ask()
    assert status == 200 and headers["set-cookie"].startswith("totp_sidecar=")
    assert s.resolver.asked == 2


async def test_the_answer_ends_with_the_step_up_window(tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=3600)
    assert (await s.ask("/wire"))[0] == 200
    clock.advance(30)
    assert (await s.ask("/wire"))[0] == 200 and s.resolver.asked == 1
    clock.advance(271)  # 301 s after the code: the rule's 300 s window has ended
    status, headers = await s.ask("/wire")
    assert status == 401 and "why=step_up" in headers["location"] and s.resolver.asked == 2


async def test_an_unsafe_method_drops_the_credentials_answers(
        tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=3600)
    await s.ask("/")
    await s.ask("/reports")
    await s.ask("/")
    assert s.resolver.asked == 2
    await s.ask("/login", "POST")  # a login may give this session to someone else
    assert s.resolver.asked == 3 and s.auth.cache_sizes()["answers"][0] == 2  # not kept itself
    await s.ask("/")  # the answers from before the login are not served
    await s.ask("/login", "POST")  # again: never answered from memory
    assert s.resolver.asked == 5
    await s.ask("/")
    await s.ask("/reports")
    assert s.resolver.asked == 7
    await s.ask("/")
    await s.ask("/reports")  # answers worked out after the last login are kept again
    assert s.resolver.asked == 7


async def test_a_login_with_a_reworded_cookie_header_ends_the_sessions_answers(
        tmp_path: Path, clock: FakeClock) -> None:
    """What a login marks is the session cookie, not the Cookie header's bytes."""
    s = Setup(tmp_path, clock, answer_seconds=3600)
    status, _ = await s.ask("/")
    await s.ask("/")
    assert status == 200 and s.resolver.asked == 1  # kept
    pass_cookie = s.cookie.split("; ")[1]
    for reworded in (f"{s.cookie}; x=1", f"{pass_cookie}; s=erin", s.cookie.replace("; ", ";")):
        await s.ask("/login", "POST", cookie=reworded)
        asked = s.resolver.asked
        await s.ask("/")
        assert s.resolver.asked == asked + 1, reworded
    await s.ask("/login", "POST", cookie="s=someone-else")  # another session: nothing of erin's
    asked = s.resolver.asked
    await s.ask("/")
    assert s.resolver.asked == asked


async def test_a_new_generation_is_not_answered_from_memory(
        tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=3600)
    assert (await s.ask())[0] == 200
    await s.parts.accounts.disable("erin")
    status, _ = await s.ask()
    assert status == 200 and s.resolver.asked == 2  # decided again (2FA is off now)


async def test_no_answer_from_memory_while_the_feed_is_stale(
        tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=3600)
    assert (await s.ask())[0] == 200
    states = s.parts.accounts.states
    states.read_at -= STALE_SECONDS + 1  # the feed has not been read for too long
    assert not states.healthy()
    await s.ask()
    assert s.resolver.asked == 2


async def test_the_answers_kept_are_bounded(tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answers=2)
    for path in ("/a", "/b", "/c", "/d"):
        await s.ask(path)
    assert s.auth.cache_sizes()["answers"] == (2, 2)
    await s.ask("/d")
    await s.ask("/a")
    assert s.resolver.asked == 5  # /d kept, /a dropped first


async def test_an_anonymous_answer_is_reused_while_the_feed_is_fresh(
        tmp_path: Path, clock: FakeClock) -> None:
    s = Setup(tmp_path, clock, answer_seconds=60)
    assert (await s.ask(cookie="other=1"))[0] == 200 and s.resolver.asked == 1
    status, headers = await s.ask(cookie="other=1")
    assert status == 200 and "remote-user" not in headers and s.resolver.asked == 1
    await s.ask(cookie="s=erin")  # a session (no 2FA cookie): another answer, decided
    assert s.resolver.asked == 2
    s.parts.accounts.states.read_at -= STALE_SECONDS + 1
    await s.ask(cookie="other=1")
    assert s.resolver.asked == 3
    await s.ask("/login", "POST", cookie="other=1")  # never kept
    await s.ask("/login", "POST", cookie="other=1")
    assert s.resolver.asked == 5


async def test_ended_answers_are_dropped_even_behind_a_longer_one(
        tmp_path: Path, clock: FakeClock) -> None:
    """Answers end at different times (who-am-I's cache_seconds, answer_seconds, the pass): an
    ended one is dropped within a second even when an older one is still good."""
    s = Setup(tmp_path, clock, answer_seconds=300)
    await s.ask(cookie="other=1")  # anonymous: kept 300 s, first in the cache
    s.resolver.until = s.monotonic() + 5  # the app's who-am-I answers hold 5 s
    for path in ("/a", "/b", "/c", "/d"):
        await s.ask(path)
    assert s.auth.cache_sizes()["answers"][0] == 5
    s.monotonic.advance(6)
    s.resolver.until = math.inf
    await s.ask("/e")
    assert s.auth.cache_sizes()["answers"][0] == 2  # the anonymous answer and /e
