"""Throttling reserves before it compares: concurrent guesses never get more comparisons.

Two service instances, each on its own storage object (own SQLite connection / own PostgreSQL
pool) on one database, take 200 wrong guesses at once; the TOTP comparison is counted by
wrapping ``totp.match_step`` as the service module calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.accounts import Accounts, Check, CheckResult
from sidecar.core import totp
from sidecar.storage import RESET, SQLStorage
from tests.conftest import FakeClock, make_config
from tests.integration.storage_backends import KINDS, Backend, backend_for

pytestmark = pytest.mark.anyio
GUESSES = 200


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as item:
        yield item


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per TOTP comparison the service makes."""
    counted: list[int] = []
    real: Callable[..., Any] = totp.match_step

    def counting(*args: Any, **kwargs: Any) -> Any:
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("sidecar.accounts.totp.match_step", counting)
    return counted


def services(storages: list[SQLStorage], clock: FakeClock, tmp_path: Path) -> list[Accounts]:
    config = make_config(tmp_path)
    return [Accounts(config, storage, clock) for storage in storages]


async def enroll(service: Accounts, clock: FakeClock, user: str = "alice") -> str:
    secret = await service.pending_secret(user)
    result, _, _ = await service.complete_enrollment(user, code(service, secret, clock), "192.0.2.1")
    assert result.check is Check.OK
    clock.advance(30)  # the enrolling code's step is used
    return secret


def code(service: Accounts, secret: str, clock: FakeClock) -> str:
    return totp.code_at(secret, clock(), service.params)


def wrong(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


async def guess_all(instances: list[Accounts], text: str) -> list[CheckResult]:
    return list(await asyncio.gather(*(
        instances[i % 2].check("alice", text, f"198.51.100.{i % 250}") for i in range(GUESSES))))


async def test_concurrent_wrong_guesses_are_compared_at_most_max_failures_times(
        backend: Backend, tmp_path: Path, comparisons: list[int]) -> None:
    clock = FakeClock()
    instances = services([await backend.open(), await backend.open()], clock, tmp_path)
    secret = await enroll(instances[0], clock)
    comparisons.clear()
    right = code(instances[0], secret, clock)
    results = await guess_all(instances, wrong(right))
    limit = instances[0].config.throttle.max_failures
    assert len(comparisons) == limit
    assert [r.check for r in results].count(Check.INVALID) == limit - 1
    assert [r.check for r in results].count(Check.LOCKED) == GUESSES - limit + 1
    locked = await instances[1].check("alice", right, "203.0.113.9")
    assert locked.check is Check.LOCKED and locked.locked_until > clock()
    assert len(comparisons) == limit  # the right code was not even compared
    events = [e.event for e in await instances[0].storage.events("alice", limit=500)]
    assert events.count("locked") == 1 and events.count("challenge_failed") == limit


async def test_concurrent_wrong_enrollment_codes_are_compared_at_most_max_failures_times(
        backend: Backend, tmp_path: Path, comparisons: list[int]) -> None:
    clock = FakeClock()
    instances = services([await backend.open(), await backend.open()], clock, tmp_path)
    secret = await instances[0].pending_secret("alice")
    right = code(instances[0], secret, clock)
    results = await asyncio.gather(*(
        instances[i % 2].complete_enrollment("alice", wrong(right), f"198.51.100.{i}")
        for i in range(GUESSES)))
    assert len(comparisons) == instances[0].config.throttle.max_failures
    assert all(r[0].check in (Check.INVALID, Check.LOCKED) for r in results)
    assert (await instances[1].complete_enrollment("alice", right, "203.0.113.9"))[0].check \
        is Check.LOCKED


async def test_reset_failures_close_the_gate_but_not_the_sign_in(
        backend: Backend, tmp_path: Path, comparisons: list[int]) -> None:
    clock = FakeClock()
    (service,) = services([await backend.open()], clock, tmp_path)
    secret = await enroll(service, clock)
    limits = service.config.throttle
    right = code(service, secret, clock)
    results = [await service.check("alice", wrong(right), f"198.51.100.{i}", scope=RESET)
               for i in range(limits.max_failures)]
    assert [r.check for r in results] == [Check.INVALID] * (limits.max_failures - 1) + [Check.LOCKED]
    assert (await service.check("alice", right, "198.51.100.99", scope=RESET)).check is Check.LOCKED
    user = await service.storage.get_user("alice")
    assert user.locked_until == 0
    assert (await service.check("alice", right, "198.51.100.99")).check is Check.OK
    events = [e for e in await service.storage.events("alice", limit=50)]
    assert "locked" not in [e.event for e in events]
    assert {e.detail.get("scope") for e in events if e.event == "challenge_failed"} == {"reset"}
    clock.advance(limits.window + 30)  # the gate opens again once the failures leave the window
    assert (await service.check("alice", code(service, secret, clock), "198.51.100.99",
                                scope=RESET)).check is Check.OK


async def test_sign_in_failures_do_not_close_the_reset_gate(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    (service,) = services([await backend.open()], clock, tmp_path)
    secret = await enroll(service, clock)
    limits = service.config.throttle
    right = code(service, secret, clock)
    for i in range(limits.max_failures - 1):
        assert (await service.check("alice", wrong(right), f"198.51.100.{i}")).check is Check.INVALID
    assert (await service.check("alice", right, "198.51.100.9", scope=RESET)).check is Check.OK
    # the reset gate's success cleared its own scope only: one more sign-in failure locks
    clock.advance(30)
    last = await service.check("alice", wrong(code(service, secret, clock)), "198.51.100.8")
    assert last.check is Check.LOCKED


async def test_the_client_limit_counts_every_scope(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    (service,) = services([await backend.open()], clock, tmp_path)
    limits = service.config.throttle
    users = [f"user{i}" for i in range(limits.max_failures_per_client)]
    secrets = [await enroll(service, clock, user) for user in users]
    client = "198.51.100.1"
    for i, user in enumerate(users):  # one failure each, half of them at the reset gate
        result = await service.check(user, wrong(code(service, secrets[i], clock)), client,
                                     scope=RESET if i % 2 else "signin")
        assert result.check is (Check.LOCKED if i == len(users) - 1 else Check.INVALID)
    refused = await service.check(users[0], code(service, secrets[0], clock), client, scope=RESET)
    assert refused.check is Check.LOCKED
    events = [e.event for e in await service.storage.events(users[-1])]
    assert "client_throttled" in events


async def test_a_right_code_clears_earlier_failures(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    (service,) = services([await backend.open()], clock, tmp_path)
    secret = await enroll(service, clock)
    limits = service.config.throttle
    for _ in range(2):
        right = code(service, secret, clock)
        for i in range(limits.max_failures - 1):
            assert (await service.check("alice", wrong(right), f"198.51.100.{i}")).check \
                is Check.INVALID
        assert (await service.check("alice", right, "198.51.100.1")).check is Check.OK
        clock.advance(30)
