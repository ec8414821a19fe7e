"""The throttle over an in-memory Attempts role and a fixed clock: reserve, fail, lock, pass."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.audit import Audit
from sidecar.config import ThrottleConfig
from sidecar.storage import RESET, SIGNIN
from sidecar.throttle import Throttle
from tests.fakes import MemoryStorage

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000
LIMITS = ThrottleConfig(max_failures=3, window=300, lockout=900, max_failures_per_client=5)


def throttle(storage: MemoryStorage, seen: list[str] | None = None) -> Throttle:
    def on_event(event: str, user: str, detail: dict[str, Any]) -> None:
        if seen is not None:
            seen.append(event)

    return Throttle(storage, LIMITS, Audit(storage, lambda: NOW, on_event))


async def test_the_third_failure_locks_the_user_for_the_lockout() -> None:
    storage, seen = MemoryStorage(), list[str]()
    t = throttle(storage, seen)
    for expected in (0, 0, NOW + LIMITS.lockout):
        attempt = await t.reserve("alice", "10.0.0.1", NOW)
        assert attempt.failure_id is not None
        assert await t.failed("alice", "10.0.0.1", NOW, attempt, SIGNIN) == expected
    assert seen == ["challenge_failed", "challenge_failed", "challenge_failed", "locked"]
    refused = await t.reserve("alice", "10.0.0.1", NOW + 1)
    assert refused.failure_id is None
    assert t.refused_until(refused, SIGNIN, NOW + 1) == NOW + LIMITS.lockout


async def test_a_right_code_clears_the_failures() -> None:
    storage = MemoryStorage()
    t = throttle(storage)
    for _ in range(2):
        attempt = await t.reserve("alice", "c", NOW)
        await t.failed("alice", "c", NOW, attempt, SIGNIN)
    attempt = await t.reserve("alice", "c", NOW)
    await t.passed("alice", SIGNIN, attempt)
    assert (await t.reserve("alice", "c", NOW)).by_user == 1


async def test_the_reset_gate_closes_for_a_window_and_locks_nobody() -> None:
    storage = MemoryStorage()
    t = throttle(storage)
    for _ in range(LIMITS.max_failures):
        attempt = await t.reserve("alice", "c", NOW, RESET)
        until = await t.failed("alice", "c", NOW, attempt, RESET)
    assert until == NOW + LIMITS.window
    assert (await storage.get_user("alice")).locked_until == 0
    assert (await t.reserve("alice", "c", NOW)).failure_id is not None  # sign-in still open


async def test_one_client_guessing_many_users_is_refused() -> None:
    storage, seen = MemoryStorage(), list[str]()
    t = throttle(storage, seen)
    for user in ("a", "b", "c", "d", "e"):
        attempt = await t.reserve(user, "10.0.0.9", NOW)
        until = await t.failed(user, "10.0.0.9", NOW, attempt, SIGNIN)
    assert until == NOW + LIMITS.window and "client_throttled" in seen
    refused = await t.reserve("f", "10.0.0.9", NOW)
    assert refused.failure_id is None
    assert t.refused_until(refused, SIGNIN, NOW) == NOW + LIMITS.window
