"""A cached enrollment state is good for STATE_CACHE_SECONDS, never longer, storage down or not.

The monotonic clock of the service is injected, so the age is crossed without sleeping;
"storage down" is the real storage closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.accounts import STATE_CACHE_SECONDS, Accounts
from sidecar.core import totp
from sidecar.errors import StorageUnavailable
from sidecar.storage import SQLStorage
from tests.conftest import FakeClock, make_config
from tests.integration.storage_backends import KINDS, Backend, backend_for

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as item:
        yield item


async def enrolled_service(storage: SQLStorage, tmp_path: Path, ticks: FakeClock) -> Accounts:
    clock = FakeClock()
    service = Accounts(make_config(tmp_path), storage, clock, monotonic=ticks)
    secret = await service.pending_secret("alice")
    result, _, _ = await service.complete_enrollment("alice", totp.code_at(secret, clock()), "c")
    assert result.check.value == "ok"
    return service


async def test_a_fresh_state_is_served_while_storage_is_down(backend: Backend, tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = await backend.open()
    service = await enrolled_service(storage, tmp_path, ticks)
    state = await service.cached_state("alice")
    assert state.enrolled and state.generation == 1
    await storage.close()
    ticks.advance(STATE_CACHE_SECONDS - 0.5)
    assert await service.cached_state("alice") == state
    assert service.generation_is("alice", 1)


async def test_a_stale_state_is_no_answer_while_storage_is_down(backend: Backend,
                                                                tmp_path: Path) -> None:
    ticks = FakeClock(1000.0)
    storage = await backend.open()
    service = await enrolled_service(storage, tmp_path, ticks)
    await service.cached_state("alice")
    await storage.close()
    ticks.advance(STATE_CACHE_SECONDS)
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


async def test_a_stale_state_is_read_again(backend: Backend, tmp_path: Path) -> None:
    """A revocation made elsewhere (another instance, the CLI) ends within the cache's age."""
    ticks = FakeClock(1000.0)
    service = await enrolled_service(await backend.open(), tmp_path, ticks)
    assert (await service.cached_state("alice")).generation == 1
    other = await backend.open()
    assert await other.disable("alice")
    ticks.advance(STATE_CACHE_SECONDS - 0.5)
    assert service.generation_is("alice", 1)  # still within the cache's age
    ticks.advance(0.5)
    assert not service.generation_is("alice", 1)
    state = await service.cached_state("alice")
    assert not state.enrolled and state.generation == 2
