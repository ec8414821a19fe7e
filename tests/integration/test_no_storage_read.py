"""No storage read on the hot path: 10,000 forward-auth requests from 1,000 known users.

The sidecar runs on a real SQLite file wrapped in a proxy that counts every storage call
(the change feed's own reads aside). 1,000 users: 700 with 2FA on and a 2FA cookie, 100 with
2FA on and only a remembered device, 200 without 2FA ("not enrolled" is a state too). After
one request each (the warm-up: each user's first sight reads storage once), 10,000 more,
each with another URL so the one-second answer cache never answers: not one storage call.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.accounts import Accounts
from sidecar.core import totp
from sidecar.storage import SQLiteStorage
from sidecar.web.app import create_app
from tests.conftest import FakeClock, make_config, sqlite_path

pytestmark = pytest.mark.anyio

FEED = ("feed_touched", "feed_bounds", "feed_after", "listens", "listen", "prune_feed")
USERS, DEVICES, ANONYMOUS, REQUESTS = 700, 100, 200, 10_000


class Counting:
    """The storage, counting each call by name (the change feed's reads are not counted)."""

    def __init__(self, inner: SQLiteStorage) -> None:
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name in FEED or not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            self.calls[name] += 1
            return value(*args, **kwargs)  # type: ignore[no-any-return]

        return counted


async def test_ten_thousand_requests_of_known_users_read_no_storage(tmp_path: Path,
                                                                    clock: FakeClock) -> None:
    config = make_config(tmp_path, primary={"resolver": "header", "session_cookies": ["s"]},
                         remember_device={"enabled": True},
                         rules=[{"path": "/reports", "level": "required"}])
    seeding = SQLiteStorage(sqlite_path(config))
    await seeding.open()
    accounts = Accounts(config, seeding, clock)
    for n in range(USERS + DEVICES):
        secret = await accounts.pending_secret(f"u{n}")
        result, _, _ = await accounts.complete_enrollment(f"u{n}", totp.code_at(secret, clock()), "c")
        assert result.check.value == "ok"
    await seeding.close()

    storage = Counting(SQLiteStorage(sqlite_path(config)))
    app = create_app(config, storage=storage, clock=clock)
    await app.parts.open()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar")
    cookies = {}
    for n in range(USERS):
        value = app.parts.passes.issue(f"u{n}", f"s=session-{n}", 1)
        cookies[f"u{n}"] = f"s=session-{n}; {config.cookie.name}={value}"
    assert app.parts.devices is not None
    for n in range(USERS, USERS + DEVICES):
        value = await app.parts.devices.remember(f"u{n}", 1, "Firefox/120 Linux", int(clock()))
        cookies[f"u{n}"] = f"s=session-{n}; {config.remember_device.cookie_name}={value}"
    for n in range(USERS + DEVICES, USERS + DEVICES + ANONYMOUS):
        cookies[f"u{n}"] = f"s=session-{n}"
    users = sorted(cookies)
    sent = 0

    async def ask(user: str) -> None:
        nonlocal sent
        sent += 1
        answer = await client.get("/auth/nginx", headers={
            "remote-user": user, "cookie": cookies[user], "accept": "application/json",
            "x-original-url": f"http://app.test/reports?n={sent}", "x-original-method": "GET"})
        expected = 401 if int(user[1:]) >= USERS + DEVICES else 200  # required: set up 2FA first
        assert answer.status_code == expected, (user, answer.status_code, answer.text)

    async def rounds(count: int, each: Callable[[str], Awaitable[None]]) -> None:
        for start in range(0, count, 100):
            await asyncio.gather(*(each(users[(start + k) % len(users)]) for k in range(100)))

    try:
        deadline = time.monotonic() + 10
        while not app.parts.accounts.states.healthy():  # the feed read once
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        # The feed vouches for memory while it was read in the last 5 s; a machine busy enough
        # to starve its poll that long rightly sends requests to storage (tested in
        # tests/unit/services/test_states.py). Here the states' steady clock stands still, so
        # only the hot path's own reads are counted.
        states = app.parts.accounts.states
        states.monotonic = lambda: states.read_at
        await rounds(len(users), ask)  # warm-up: each user once
        warm = dict(storage.calls)
        assert warm.get("get_user", 0) <= len(users)  # single flight: at most once per user
        storage.calls.clear()
        await rounds(REQUESTS, ask)
        assert sent == len(users) + REQUESTS
        assert dict(storage.calls) == {}, "storage was read on the hot path"
        assert len(app.parts.accounts.states) == len(users)
    finally:
        await client.aclose()
        await app.parts.aclose()
