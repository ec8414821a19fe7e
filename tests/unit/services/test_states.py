"""The user states in memory: applied from the feed, vouched for while it is read, a lost
LISTEN connection drops them all (the in-memory storage of ``tests.fakes``, a fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecar.errors import StorageUnavailable
from sidecar.states import STALE_SECONDS, CachedState, States
from tests.conftest import FakeClock
from tests.fakes import MemoryStorage

pytestmark = pytest.mark.anyio


async def load(user: str) -> CachedState:
    return CachedState(enrolled=True, generation=1)


async def test_nothing_is_kept_before_the_feed_was_read() -> None:
    states = States(MemoryStorage(), 10, FakeClock(100.0))
    await states.get("alice", load)
    assert len(states) == 0 and not states.generation_is("alice", 1)
    await states.poll()
    await states.get("alice", load)
    assert len(states) == 1 and states.generation_is("alice", 1)


async def test_a_change_in_the_feed_forgets_that_user_only() -> None:
    storage = MemoryStorage()
    states = States(storage, 10, FakeClock(100.0))
    await states.poll()
    for user in ("alice", "bob"):
        await states.get(user, load)
    await storage.lock("alice", 5)  # any change of alice
    await states.poll()
    assert not states.generation_is("alice", 1) and states.generation_is("bob", 1)


async def test_memory_is_no_answer_once_the_feed_is_old() -> None:
    ticks = FakeClock(100.0)
    states = States(MemoryStorage(), 10, ticks)
    await states.poll()
    await states.get("alice", load)
    ticks.advance(STALE_SECONDS - 0.1)
    assert states.peek("alice") is not None
    ticks.advance(0.1)
    assert states.peek("alice") is None and not states.healthy()
    await states.poll()
    assert states.peek("alice") is not None  # read again: nothing was missed


class Listening(MemoryStorage):
    """A storage whose LISTEN connection is lost once, then comes back."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self.cut = asyncio.Event()

    @property
    def listens(self) -> bool:
        return True

    async def listen(self, wake: Callable[[], None], ready: Callable[[], None]) -> None:
        self.connections += 1
        ready()
        if self.connections == 1:
            await self.cut.wait()
            raise StorageUnavailable("connection lost")
        await asyncio.sleep(3600)


async def test_a_lost_listen_connection_drops_every_state_and_so_does_listening_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sidecar.states.RELISTEN_SECONDS", 0.01)
    storage = Listening()
    states = States(storage, 10)
    states.start()
    try:
        for _ in range(200):
            if states.healthy():
                break
            await asyncio.sleep(0.01)
        await states.get("alice", load)
        assert states.listening and len(states) == 1
        drops = states.drops
        storage.cut.set()
        for _ in range(200):
            if storage.connections >= 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)
        assert storage.connections == 2 and states.listening
        assert states.drops >= drops + 2 and len(states) == 0  # lost, and listening again
    finally:
        await states.stop()


class Swallowing(Listening):
    """Storage calls that swallow the first cancellations, as ``asyncio.wait_for`` of Python
    3.11 can when the cancel lands as its wait ends (the CLI once hung on ``stop``)."""

    swallow = 2

    async def _wait(self) -> None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if self.swallow <= 0:
                raise
            self.swallow -= 1

    async def feed_touched(self) -> bool:
        await self._wait()
        return await super().feed_touched()

    async def listen(self, wake: Callable[[], None], ready: Callable[[], None]) -> None:
        ready()
        await self._wait()  # a cancellation swallowed; then the connection is lost
        raise StorageUnavailable("connection lost")


async def test_stop_ends_the_feed_even_when_a_cancellation_is_swallowed() -> None:
    states = States(Swallowing(), 10, FakeClock(100.0))
    states.start()
    await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(states.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)  # stop used to wait forever
    assert stopping in done


async def test_the_feed_can_be_started_again_after_a_stop() -> None:
    storage = MemoryStorage()
    states = States(storage, 10, FakeClock(100.0))
    states.start()
    await states.stop()
    states.start()
    await asyncio.sleep(0.05)
    assert states.last_seq is not None  # read again
    await storage.lock("alice", 5)
    seq = states.last_seq
    for _ in range(100):
        await asyncio.sleep(0.01)
        if states.last_seq != seq:
            break
    assert states.last_seq != seq
    await states.stop()
