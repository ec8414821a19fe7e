"""The ``Credentials`` role (security keys, their challenges) on both backends: SQLite and
PostgreSQL (see ``storage_backends``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.storage import Credential, SQLStorage
from tests.integration.storage_backends import KINDS, Backend, backend_for

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as item:
        yield item


@pytest.fixture
async def storage(backend: Backend) -> SQLStorage:
    return await backend.open()


def key(cid: str = "cred-1", user: str = "alice", count: int = 0) -> Credential:
    return Credential(cid, user, "pk", count, "YubiKey 5", ("usb", "nfc"), NOW, None, "aaguid")


async def test_a_first_key_turns_2fa_on_with_recovery_codes(storage: SQLStorage) -> None:
    generation = await storage.add_credential(key(), ["h1", "h2"], NOW)
    user = await storage.get_user("alice")
    assert generation == user.generation == 1
    assert user.enrolled and user.secret is None and user.recovery_left == 2
    assert await storage.credentials("alice") == [key()]
    assert await storage.count_enrolled() == 1
    assert await storage.add_credential(key("cred-2"), [], NOW + 1) == 1  # not a first factor
    assert (await storage.get_user("alice")).recovery_left == 2


async def test_a_credential_id_is_registered_once_for_anyone(storage: SQLStorage) -> None:
    assert await storage.add_credential(key(), ["h"], NOW) is not None
    assert await storage.add_credential(key(user="bob"), ["h"], NOW) is None
    assert not (await storage.get_user("bob")).enrolled
    assert await storage.credentials("bob") == []


async def test_a_challenge_is_used_once_by_its_session_before_it_expires(storage: SQLStorage) -> None:
    await storage.add_challenge("c1", "alice", "s1", "signin", NOW + 300, NOW)
    assert not await storage.use_challenge("c1", "alice", "s2", "signin", NOW)
    assert not await storage.use_challenge("c1", "bob", "s1", "signin", NOW)
    assert not await storage.use_challenge("c1", "alice", "s1", "register", NOW)
    assert not await storage.use_challenge("c1", "alice", "s1", "signin", NOW + 300)
    assert await storage.use_challenge("c1", "alice", "s1", "signin", NOW + 299)
    assert not await storage.use_challenge("c1", "alice", "s1", "signin", NOW + 299)


async def test_concurrent_uses_of_a_challenge_let_one_through(backend: Backend,
                                                              storage: SQLStorage) -> None:
    other = await backend.open()
    await storage.add_challenge("c1", "alice", "s1", "signin", NOW + 300, NOW)
    won = await asyncio.gather(*[s.use_challenge("c1", "alice", "s1", "signin", NOW)
                                 for s in (storage, other) * 5])
    assert sum(won) == 1


async def test_a_session_keeps_its_newest_challenges_only(storage: SQLStorage) -> None:
    for i in range(25):
        await storage.add_challenge(f"c{i}", "alice", "s1", "signin", NOW + 300 + i, NOW)
    assert not await storage.use_challenge("c0", "alice", "s1", "signin", NOW)
    assert await storage.use_challenge("c24", "alice", "s1", "signin", NOW)


async def test_the_counter_moves_only_from_the_value_read(storage: SQLStorage) -> None:
    await storage.add_credential(key(count=3), ["h"], NOW)
    assert not await storage.use_credential("bob", "cred-1", 3, 4, NOW)
    assert await storage.use_credential("alice", "cred-1", 3, 4, NOW + 5)
    assert not await storage.use_credential("alice", "cred-1", 3, 5, NOW + 6)
    found = await storage.credential("cred-1")
    assert found is not None and (found.sign_count, found.last_used) == (4, NOW + 5)


async def test_rename_and_remove_touch_the_users_own_keys_only(storage: SQLStorage) -> None:
    await storage.add_credential(key(), ["h"], NOW)
    assert not await storage.rename_credential("bob", "cred-1", "Mine")
    assert await storage.rename_credential("alice", "cred-1", "Phone")
    assert not await storage.remove_credential("bob", "cred-1")
    assert (await storage.credentials("alice"))[0].name == "Phone"
    assert await storage.remove_credential("alice", "cred-1")
    assert await storage.credentials("alice") == []


async def test_disable_removes_every_key_and_challenge(storage: SQLStorage) -> None:
    await storage.add_credential(key(), ["h"], NOW)
    await storage.add_credential(key("cred-2"), [], NOW)
    await storage.add_challenge("c1", "alice", "s1", "signin", NOW + 300, NOW)
    assert await storage.disable("alice")
    user = await storage.get_user("alice")
    assert not user.enrolled and user.generation == 2 and user.recovery_left == 0
    assert await storage.credentials("alice") == []
    assert not await storage.use_challenge("c1", "alice", "s1", "signin", NOW)
    assert not await storage.disable("alice")
