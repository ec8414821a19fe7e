"""The account service over an in-memory storage and a fixed clock: enroll, check, disable."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.accounts import Accounts, Check
from sidecar.core import totp
from tests.conftest import FakeClock, make_config
from tests.fakes import MemoryStorage

pytestmark = pytest.mark.anyio


@pytest.fixture
def accounts(tmp_path: Path, clock: FakeClock) -> Accounts:
    return Accounts(make_config(tmp_path), MemoryStorage(), clock, monotonic=clock)


async def enroll(accounts: Accounts, clock: FakeClock, user: str = "alice") -> tuple[str, list[str]]:
    secret = await accounts.pending_secret(user, "session-1")
    result, codes, generation = await accounts.complete_enrollment(
        user, totp.code_at(secret, clock()), "c", "session-1")
    assert result.check is Check.OK and generation == 1 and len(codes) == 20
    return secret, codes


async def test_the_pending_secret_belongs_to_one_session(accounts: Accounts) -> None:
    first = await accounts.pending_secret("alice", "session-1")
    assert await accounts.pending_secret("alice", "session-1") == first
    assert await accounts.pending_secret("alice", "session-2") != first


async def test_a_code_is_accepted_once(accounts: Accounts, clock: FakeClock) -> None:
    secret, _ = await enroll(accounts, clock)
    clock.advance(30)
    code = totp.code_at(secret, clock())
    assert (await accounts.check("alice", code, "c")).check is Check.OK
    again = await accounts.check("alice", code, "c")  # told apart from a wrong code, and a failure
    assert again.check is Check.REPLAYED and again.failures == 1
    wrong = await accounts.check("alice", "000000" if code != "000000" else "111111", "c")
    assert wrong.check is Check.INVALID and wrong.failures == 2


async def test_a_recovery_code_is_accepted_once(accounts: Accounts, clock: FakeClock) -> None:
    _, codes = await enroll(accounts, clock)
    result = await accounts.check("alice", codes[0].upper(), "c")
    assert result.check is Check.OK and result.used_recovery and result.recovery_left == 19
    assert (await accounts.check("alice", codes[0], "c")).check is Check.INVALID
    assert (await accounts.check("alice", codes[1], "c", allow_recovery=False)).check is Check.INVALID


async def test_wrong_codes_lock_the_user(accounts: Accounts, clock: FakeClock) -> None:
    await enroll(accounts, clock)
    results = [await accounts.check("alice", "000000", "c") for _ in range(5)]
    assert [r.check for r in results] == [Check.INVALID] * 4 + [Check.LOCKED]
    assert results[-1].locked_until == int(clock()) + accounts.config.throttle.lockout
    assert await accounts.unlock("alice")


async def test_disable_ends_the_generation(accounts: Accounts, clock: FakeClock) -> None:
    await enroll(accounts, clock)
    assert accounts.generation_is("alice", 1) is False  # not read since enrolling
    state = await accounts.cached_state("alice")
    assert accounts.generation_is("alice", 1) is False  # the feed was never read: not kept
    await accounts.states.poll()
    state = await accounts.cached_state("alice")
    assert (state.enrolled, state.generation) == (True, 1)
    assert accounts.generation_is("alice", 1)
    assert await accounts.disable("alice")
    assert not accounts.generation_is("alice", 1)
    assert (await accounts.check("alice", "000000", "c")).check is Check.NOT_ENROLLED
    events = [e.event for e in await accounts.storage.events("alice")]
    assert events[:2] == ["disabled", "enabled"]


async def test_keys_rotate_to_the_newest(tmp_path: Path, clock: FakeClock) -> None:
    storage = MemoryStorage()
    old = Accounts(make_config(tmp_path), storage, clock)
    await enroll(old, clock)
    config = make_config(tmp_path, secrets={"signing_keys": ["k" * 40], "hash_key": "h" * 40,
                                            "encryption_keys": ["e" * 40, "n" * 40]})
    assert await Accounts(config, storage, clock).rotate_keys() == (1, 0)
    assert await Accounts(config, storage, clock).rotate_keys() == (0, 1)
