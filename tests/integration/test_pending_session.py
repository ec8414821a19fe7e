"""A secret being enrolled belongs to one app session: another session of the user never sees it.

Someone else who knows the password (another session of the same user) opening the set-up
page must not be shown the very secret the real user scans, nor complete set-up with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.accounts import Accounts, Check
from sidecar.config import parse_config
from sidecar.core import totp
from sidecar.storage import SQLStorage
from tests.conftest import ENCRYPTION_KEY, FakeClock, config_dict, new_key
from tests.integration.storage_backends import KINDS, Backend, backend_for

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as item:
        yield item


def service_for(storage: SQLStorage, tmp_path: Path, clock: FakeClock,
                keys: tuple[str, ...] = (ENCRYPTION_KEY,)) -> Accounts:
    data = config_dict(tmp_path)
    data["secrets"] = dict(data["secrets"], encryption_keys=list(keys))
    return Accounts(parse_config(data, environ={}), storage, clock)


def code(secret: str, clock: FakeClock) -> str:
    return totp.code_at(secret, clock())


async def test_each_session_gets_its_own_secret(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    service = service_for(await backend.open(), tmp_path, clock)
    mine = await service.pending_secret("alice", "session-A")
    theirs = await service.pending_secret("alice", "session-B")
    assert mine != theirs
    assert await service.pending_secret("alice", "session-A") == mine  # a reload
    other = service_for(await backend.open(), tmp_path, clock)  # another instance agrees
    assert await other.pending_secret("alice", "session-A") == mine


async def test_a_code_of_one_sessions_secret_does_not_complete_another(
        backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    service = service_for(await backend.open(), tmp_path, clock)
    mine = await service.pending_secret("alice", "session-A")
    theirs = await service.pending_secret("alice", "session-B")
    refused, codes, _ = await service.complete_enrollment("alice", code(mine, clock), "192.0.2.1",
                                                          session="session-B")
    assert refused.check is Check.INVALID and codes == []
    assert not (await service.user("alice")).enrolled
    done, codes, generation = await service.complete_enrollment(
        "alice", code(mine, clock), "192.0.2.1", session="session-A")
    assert done.check is Check.OK and len(codes) == 20 and generation == 1
    # session B's secret ended with it: it cannot replace the secret just enrolled
    late, _, _ = await service.complete_enrollment("alice", code(theirs, clock), "192.0.2.2",
                                                   session="session-B")
    assert late.check is not Check.OK
    user = await service.user("alice")
    assert service.box.open("alice", user.secret or "") == mine


async def test_disable_ends_the_pending_secrets_of_every_session(
        backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    service = service_for(await backend.open(), tmp_path, clock)
    first = await service.pending_secret("alice", "session-A")
    await service.complete_enrollment("alice", code(first, clock), "192.0.2.1", session="session-A")
    stale = await service.pending_secret("alice", "session-B")  # e.g. opened in a race
    await service.disable("alice")
    assert await service.pending_secret("alice", "session-B") != stale


async def test_key_rotation_keeps_each_sessions_secret(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    storage = await backend.open()
    old = service_for(storage, tmp_path, clock)
    mine = await old.pending_secret("alice", "session-A")
    theirs = await old.pending_secret("alice", "session-B")
    rotated = service_for(storage, tmp_path, clock, keys=(ENCRYPTION_KEY, new_key()))
    assert await rotated.rotate_keys() == (2, 0)
    assert await rotated.rotate_keys() == (0, 2)
    assert await rotated.pending_secret("alice", "session-A") == mine
    assert await rotated.pending_secret("alice", "session-B") == theirs


async def test_callers_without_a_session_keep_working(backend: Backend, tmp_path: Path) -> None:
    clock = FakeClock()
    service = service_for(await backend.open(), tmp_path, clock)
    secret = await service.pending_secret("alice")
    result, _, _ = await service.complete_enrollment("alice", code(secret, clock), "192.0.2.1")
    assert result.check is Check.OK
