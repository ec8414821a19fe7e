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
    assert await storage.add_credential(key("cred-2"), [], NOW + 1, expect=1) == 1  # a second key
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


async def test_unconfirmed_removals_sent_at_once_leave_a_factor(backend: Backend,
                                                                 storage: SQLStorage) -> None:
    """Two instances each remove one of alice's two keys at once, neither confirmed: one
    wins, one key stays; a confirmed removal may take the last."""
    other = await backend.open()
    for n in range(3):
        ids = [f"k{n}-a", f"k{n}-b"]
        user = f"user{n}"
        await storage.add_credential(key(ids[0], user), ["h"], NOW)
        await storage.add_credential(key(ids[1], user), [], NOW, expect=1)
        won = await asyncio.gather(storage.remove_credential(user, ids[0], keep_a_factor=True),
                                   other.remove_credential(user, ids[1], keep_a_factor=True))
        assert sorted(won) == [False, True]
        (kept,) = await storage.credentials(user)
        assert not await storage.remove_credential(user, kept.credential_id, keep_a_factor=True)
        assert await storage.remove_credential(user, kept.credential_id)  # confirmed
    await storage.put_pending("carol", "s", "SECRET", NOW + 600, NOW)  # the app, then a key
    assert await storage.complete_enrollment("carol", "s", "SECRET", 5, ["h"], NOW) == 1
    await storage.add_credential(key("k-carol", "carol"), [], NOW, expect=1)
    assert await storage.remove_credential("carol", "k-carol", keep_a_factor=True)


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


async def test_a_page_read_before_2fa_was_turned_on_adds_no_key(storage: SQLStorage) -> None:
    """An attacker with the password opened settings while alice had 2FA off; alice then
    turned it on (an app) before his key's answer arrived: his key is not added, her recovery
    codes stay hers, nothing else changes."""
    await storage.put_pending("alice", "victim", "SECRET", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "victim", "SECRET", 5, ["mine"], NOW) == 1
    assert await storage.add_credential(key("attacker"), ["his"], NOW + 1, expect=0) is None
    assert await storage.credentials("alice") == []
    user = await storage.get_user("alice")
    assert (user.generation, user.recovery_left) == (1, 1)
    assert await storage.use_recovery_code("alice", "mine", NOW + 2)


async def test_a_key_is_added_only_at_the_generation_the_page_was_verified_at(
        storage: SQLStorage) -> None:
    assert await storage.add_credential(key("first"), ["h"], NOW) == 1
    await storage.disable("alice")  # an admin reset: generation 2, 2FA off
    assert await storage.add_credential(key("late"), [], NOW + 1, expect=1) is None
    assert await storage.credentials("alice") == []
    assert not (await storage.get_user("alice")).enrolled


async def test_an_app_is_not_set_up_over_a_key_turned_on_since(storage: SQLStorage) -> None:
    """The app route: a set-up page read while 2FA was off (``expect`` 0) adds no secret once
    a key turned 2FA on; a verified page (``expect`` = the generation) adds it without a new
    generation (other sessions and remembered devices keep working)."""
    await storage.put_pending("alice", "attacker", "HIS", NOW + 600, NOW)
    assert await storage.add_credential(key("hers"), ["h"], NOW) == 1
    assert await storage.complete_enrollment("alice", "attacker", "HIS", 5, ["x"], NOW + 1) is None
    assert (await storage.get_user("alice")).secret is None
    await storage.put_pending("alice", "owner", "MINE", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "owner", "MINE", 5, [], NOW + 2,
                                             expect=1) == 1
    user = await storage.get_user("alice")
    assert user.secret == "MINE" and user.generation == 1 and user.recovery_left == 1


async def test_feed_rows_are_stamped_by_the_database_clock(storage: SQLStorage,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer whose clock is 400 s behind (``users reset`` from another host) stamps its
    change with the database's time, so another writer's prune (rows older than 300 s) keeps
    it until every instance has read it: a revocation is never pruned unread."""
    import time as clock

    real = clock.time
    monkeypatch.setattr(clock, "time", lambda: real() - 400)
    assert await storage.add_credential(key(), ["h"], NOW) == 1  # writes a feed row
    await storage.disable("alice")  # another feed row, from the late clock
    monkeypatch.setattr(clock, "time", real)
    bounds = await storage.feed_bounds()
    assert bounds is not None
    rows = await storage._fetch("SELECT at FROM feed", ())
    assert rows and all(abs(int(at) - real()) < 60 for (at,) in rows), rows
