"""User states in memory, kept current by the change feed, vouched for only while it is read.

The monotonic clock of the service is injected, so the feed's age is crossed without
sleeping; the feed is read by calling ``poll`` (what the background task does); "storage
down" is the real storage closed; "another instance" is a second storage on the same database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.accounts import Accounts
from sidecar.core import totp
from sidecar.errors import StorageUnavailable
from sidecar.states import STALE_SECONDS
from sidecar.storage import SQLStorage
from tests.conftest import FakeClock, make_config
from tests.integration.storage_backends import KINDS, Backend, backend_for

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as item:
        yield item


async def enrolled_service(storage: SQLStorage, tmp_path: Path, ticks: FakeClock,
                           **overrides: object) -> Accounts:
    clock = FakeClock()
    service = Accounts(make_config(tmp_path, **overrides), storage, clock, monotonic=ticks)
    secret = await service.pending_secret("alice")
    result, _, _ = await service.complete_enrollment("alice", totp.code_at(secret, clock()), "c")
    assert result.check.value == "ok"
    await service.states.poll()
    return service


class Counting:
    """The storage, counting the user reads (``get_user``) it is asked for."""

    def __init__(self, inner: SQLStorage) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get_user(self, user_id: str) -> object:
        self.reads += 1
        await asyncio.sleep(0.01)  # a slow read: concurrent requests overlap it
        return await self.inner.get_user(user_id)


async def test_a_state_is_served_while_the_feed_was_read_recently(backend: Backend,
                                                                  tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = await backend.open()
    service = await enrolled_service(storage, tmp_path, ticks)
    state = await service.cached_state("alice")
    assert state.enrolled and state.generation == 1
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await service.states.poll()
    ticks.advance(STALE_SECONDS - 0.5)
    assert await service.cached_state("alice") is state  # no read: storage is closed
    assert service.generation_is("alice", 1)


async def test_no_state_is_served_once_the_feed_could_not_be_read_for_long(backend: Backend,
                                                                           tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = await backend.open()
    service = await enrolled_service(storage, tmp_path, ticks)
    await service.cached_state("alice")
    await storage.close()
    ticks.advance(STALE_SECONDS)
    with pytest.raises(StorageUnavailable):
        await service.cached_state("alice")
    assert not service.generation_is("alice", 1)  # the answer cache must ask again
    ticks.advance(3600)
    with pytest.raises(StorageUnavailable):
        await service.cached_state("alice")


async def test_an_unknown_user_is_no_answer_while_storage_is_down(backend: Backend,
                                                                  tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = await backend.open()
    service = await enrolled_service(storage, tmp_path, ticks)
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await service.cached_state("bob")
    assert not service.generation_is("bob", 0)


async def test_a_change_made_elsewhere_arrives_with_the_next_read_of_the_feed(
        backend: Backend, tmp_path: Path) -> None:
    """No time passes: the feed, not an age, ends the state in memory."""
    ticks = FakeClock(1000.0)
    service = await enrolled_service(await backend.open(), tmp_path, ticks)
    assert (await service.cached_state("alice")).generation == 1
    assert service.generation_is("alice", 1)
    other = await backend.open()
    assert await other.disable("alice")
    assert service.generation_is("alice", 1)  # not read yet
    await service.states.poll()
    assert not service.generation_is("alice", 1)
    state = await service.cached_state("alice")
    assert not state.enrolled and state.generation == 2


async def test_a_known_user_costs_no_read_and_a_first_sight_one_read(backend: Backend,
                                                                     tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = Counting(await backend.open())
    service = Accounts(make_config(tmp_path), storage, FakeClock(), monotonic=ticks)  # type: ignore[arg-type]
    await service.states.poll()
    states = await asyncio.gather(*(service.cached_state("bob") for _ in range(50)))
    assert storage.reads == 1 and all(s is states[0] for s in states)
    assert not states[0].enrolled  # "not enrolled" is a state too, kept like any other
    for _ in range(100):
        await service.cached_state("bob")
    assert storage.reads == 1


async def test_a_read_overtaken_by_a_change_is_served_but_not_kept(backend: Backend,
                                                                   tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = Counting(await backend.open())
    service = Accounts(make_config(tmp_path), storage, FakeClock(), monotonic=ticks)  # type: ignore[arg-type]
    await service.states.poll()
    reading = asyncio.ensure_future(service.cached_state("bob"))
    await asyncio.sleep(0)  # the read has begun
    service.states.forget("bob")  # what the feed does when bob changes meanwhile
    assert not (await reading).enrolled
    await service.cached_state("bob")
    assert storage.reads == 2


async def test_the_cache_is_bounded_least_recently_seen_first(backend: Backend,
                                                              tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = Counting(await backend.open())
    service = Accounts(make_config(tmp_path, cache={"users": 100}), storage, FakeClock(),  # type: ignore[arg-type]
                       monotonic=ticks)
    await service.states.poll()
    for n in range(150):
        await service.cached_state(f"u{n}")
        await service.cached_state("kept")  # seen again and again: never the oldest
    assert len(service.states) == 100
    reads = storage.reads
    await service.cached_state("kept")
    await service.cached_state("u149")
    assert storage.reads == reads
    await service.cached_state("u0")  # evicted long ago
    assert storage.reads == reads + 1


async def test_missed_changes_drop_every_state(backend: Backend, tmp_path: Path) -> None:
    """An instance that did not read the feed before its rows were pruned knows nothing."""
    ticks = FakeClock(1000.0)
    service = await enrolled_service(await backend.open(), tmp_path, ticks)
    await service.cached_state("alice")
    other = await backend.open()
    await other.replace_recovery_codes("alice", ["x"])
    await other.replace_recovery_codes("alice", ["y"])
    await other.prune_feed(before=2**40)  # every row but the newest
    drops = service.states.drops
    await service.states.poll()
    assert service.states.drops == drops + 1 and len(service.states) == 0
    await service.cached_state("alice")
    await service.states.poll()  # nothing new: nothing dropped
    assert service.states.drops == drops + 1 and len(service.states) == 1
