"""The Storage contract, run against both backends: a SQLite file and a PostgreSQL database.

Each test gets a fresh database (a temp file; ``totp_sidecar_test_<random>`` on the server,
dropped afterwards). "Another instance" is another storage object on the same database: its
own connection (SQLite) or its own pool (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sidecar import storage_pg
from sidecar.errors import StorageUnavailable
from sidecar.storage import MIGRATIONS, Event, SQLiteStorage, SQLStorage, UserState
from sidecar.storage_pg import PostgresStorage
from tests.e2e.conftest import free_port
from tests.pg import fresh_database

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000
TABLES = {
    "schema_version": ["version"],
    "users": ["user_id", "secret", "enabled_at", "last_step", "generation", "locked_until"],
    "pending": ["user_id", "secret", "expires_at"],
    "recovery_codes": ["user_id", "code_hash", "used_at"],
    "failures": ["id", "user_id", "client", "at"],
    "events": ["id", "at", "event", "user_id", "client", "detail"],
}
INDEXES = {"failures_user_at", "failures_client_at", "events_user_at"}


@dataclass
class Backend:
    kind: str  # sqlite | postgres
    target: str  # file path or DSN
    opened: list[SQLStorage] = field(default_factory=list)

    async def open(self) -> SQLStorage:
        """One more instance on the same database, opened (migrations applied)."""
        storage: SQLStorage = (SQLiteStorage(self.target) if self.kind == "sqlite"
                               else PostgresStorage(self.target))
        self.opened.append(storage)
        await storage.open()
        return storage

    async def sql(self, query: str) -> list[tuple[Any, ...]]:
        """A query on a plain connection of its own, outside the storage under test."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as db:
                return list(db.execute(query).fetchall())
        conn = await asyncpg.connect(self.target)
        try:
            return [tuple(row) for row in await conn.fetch(query)]
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        item = Backend("sqlite", str(tmp_path / "sidecar.db"))
        yield item
        for storage in item.opened:
            await storage.close()
        return
    async with fresh_database() as dsn:
        item = Backend("postgres", dsn)
        try:
            yield item
        finally:
            for storage in item.opened:
                await storage.close()


@pytest.fixture
async def storage(backend: Backend) -> SQLStorage:
    return await backend.open()


async def enrolled(storage: SQLStorage, user: str = "alice", secret: str = "S1",
                   codes: tuple[str, ...] = ("h1", "h2", "h3"), step: int = 100) -> int:
    assert await storage.put_pending(user, secret, NOW + 600, NOW) == secret
    generation = await storage.complete_enrollment(user, secret, step, list(codes), NOW)
    assert generation is not None
    return generation


async def all_at_once(count: int, call: Callable[[int], Awaitable[bool]]) -> list[bool]:
    return list(await asyncio.gather(*(call(i) for i in range(count))))


# -- schema -------------------------------------------------------------------------------

async def test_migrations_create_the_same_schema_and_are_idempotent(backend: Backend) -> None:
    first = await backend.open()
    await first.close()
    second, third = await asyncio.gather(backend.open(), backend.open())  # instances starting together
    assert await backend.sql("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert len(storage_pg.MIGRATIONS) == len(MIGRATIONS)
    for table, columns in TABLES.items():
        if backend.kind == "sqlite":
            found = [row[1] for row in await backend.sql(f"PRAGMA table_info({table})")]
        else:
            found = [row[0] for row in await backend.sql(
                "SELECT column_name FROM information_schema.columns WHERE table_name ="
                f" '{table}' ORDER BY ordinal_position")]
        assert found == columns, table
    if backend.kind == "sqlite":
        indexes = {r[0] for r in await backend.sql("SELECT name FROM sqlite_master WHERE type='index'")}
    else:
        indexes = {r[0] for r in await backend.sql("SELECT indexname FROM pg_indexes")}
    assert indexes >= INDEXES
    await enrolled(second)
    assert (await third.get_user("alice")).enrolled


async def test_ping(storage: SQLStorage) -> None:
    await storage.ping()


async def test_unknown_user(storage: SQLStorage) -> None:
    assert await storage.get_user("nobody") == UserState("nobody")
    assert await storage.list_users() == []
    assert await storage.events("nobody") == []
    assert not await storage.disable("nobody")
    assert not await storage.unlock("nobody")
    assert not await storage.use_step("nobody", "S1", 1)
    assert not await storage.use_recovery_code("nobody", "h1", NOW)


# -- enrollment ---------------------------------------------------------------------------

async def test_pending_secret_kept_until_it_expires(storage: SQLStorage) -> None:
    assert await storage.pending_secret("alice", NOW) is None
    assert await storage.put_pending("alice", "S1", NOW + 600, NOW) == "S1"
    assert await storage.put_pending("alice", "S2", NOW + 700, NOW + 10) == "S1"  # a reload
    assert await storage.pending_secret("alice", NOW + 599) == "S1"
    assert await storage.pending_secret("alice", NOW + 600) is None
    assert await storage.put_pending("alice", "S3", NOW + 1300, NOW + 600) == "S3"
    assert await storage.pending_secret("alice", NOW + 601) == "S3"
    assert not (await storage.get_user("alice")).enrolled


async def test_concurrent_put_pending_agree_on_one_secret(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(3)]
    kept = await asyncio.gather(*(instances[i % 3].put_pending("alice", f"S{i}", NOW + 600, NOW)
                                  for i in range(9)))
    assert len(set(kept)) == 1


async def test_complete_enrollment_only_with_the_pending_secret(storage: SQLStorage) -> None:
    assert await storage.complete_enrollment("alice", "S1", 5, ["h1"], NOW) is None  # none pending
    await storage.put_pending("alice", "S1", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "OTHER", 5, ["h1"], NOW) is None
    assert await storage.complete_enrollment("alice", "S1", 5, ["h1"], NOW + 600) is None  # expired
    assert (await storage.get_user("alice")) == UserState("alice")
    assert await storage.complete_enrollment("alice", "S1", 5, ["h1", "h2"], NOW + 1) == 1
    user = await storage.get_user("alice")
    assert (user.secret, user.enabled_at, user.last_step, user.generation, user.recovery_left) == \
        ("S1", NOW + 1, 5, 1, 2)
    assert await storage.pending_secret("alice", NOW + 2) is None
    assert await storage.complete_enrollment("alice", "S1", 6, ["h3"], NOW + 2) is None  # used up
    # re-enrolling replaces secret and codes and bumps the generation
    await storage.put_pending("alice", "S2", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "S2", 9, ["h9"], NOW + 3) == 2
    assert not await storage.use_recovery_code("alice", "h1", NOW + 4)
    assert await storage.use_recovery_code("alice", "h9", NOW + 4)


async def test_concurrent_enrollments_complete_once(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(4)]
    await instances[0].put_pending("alice", "S1", NOW + 600, NOW)
    done = await asyncio.gather(*(s.complete_enrollment("alice", "S1", 5, [f"h{i}"], NOW)
                                  for i, s in enumerate(instances)))
    assert sorted(done, key=str) == [1, None, None, None]
    assert (await instances[0].get_user("alice")).recovery_left == 1


# -- codes --------------------------------------------------------------------------------

async def test_use_step_is_monotonic_and_conditional(storage: SQLStorage) -> None:
    await enrolled(storage, step=100)
    assert not await storage.use_step("alice", "S1", 100)  # the enrolling code's step
    assert not await storage.use_step("alice", "S1", 99)
    assert not await storage.use_step("alice", "WRONG", 101)  # secret changed meanwhile
    assert await storage.use_step("alice", "S1", 101)
    assert not await storage.use_step("alice", "S1", 101)
    assert await storage.use_step("alice", "S1", 103)
    assert not await storage.use_step("alice", "S1", 102)
    assert (await storage.get_user("alice")).last_step == 103


async def test_one_step_accepted_once_across_instances(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(5)]
    await enrolled(instances[0])
    won = await all_at_once(10, lambda i: instances[i % 5].use_step("alice", "S1", 101))
    assert won.count(True) == 1


async def test_recovery_code_used_once(storage: SQLStorage) -> None:
    await enrolled(storage)
    assert not await storage.use_recovery_code("alice", "nope", NOW)
    assert not await storage.use_recovery_code("bob", "h1", NOW)  # bound to the user
    assert await storage.use_recovery_code("alice", "h1", NOW)
    assert not await storage.use_recovery_code("alice", "h1", NOW + 1)
    assert (await storage.get_user("alice")).recovery_left == 2


async def test_ten_concurrent_uses_of_one_recovery_code(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(5)]
    await enrolled(instances[0])
    won = await all_at_once(10, lambda i: instances[i % 5].use_recovery_code("alice", "h2", NOW))
    assert won.count(True) == 1
    single = instances[0]  # and on one instance (its pool, or its one connection)
    won = await all_at_once(10, lambda i: single.use_recovery_code("alice", "h3", NOW))
    assert won.count(True) == 1
    assert (await single.get_user("alice")).recovery_left == 1


async def test_replace_recovery_codes(storage: SQLStorage) -> None:
    await enrolled(storage)
    await storage.replace_recovery_codes("alice", ["n1", "n2", "n3", "n4"])
    assert (await storage.get_user("alice")).recovery_left == 4
    assert not await storage.use_recovery_code("alice", "h1", NOW)
    assert await storage.use_recovery_code("alice", "n4", NOW)
    assert (await storage.get_user("alice")).recovery_left == 3


async def test_disable_bumps_generation_and_removes_everything(storage: SQLStorage) -> None:
    generation = await enrolled(storage)
    await storage.put_pending("alice", "S2", NOW + 600, NOW)
    await storage.add_failure("alice", "192.0.2.1", NOW, 300)
    await storage.lock("alice", NOW + 900)
    assert await storage.disable("alice")
    user = await storage.get_user("alice")
    assert not user.enrolled and user.enabled_at is None
    assert user.generation == generation + 1 and user.recovery_left == 0 and user.locked_until == 0
    assert await storage.pending_secret("alice", NOW) is None
    assert await storage.client_failures("192.0.2.1", NOW - 300) == 0
    assert not await storage.use_recovery_code("alice", "h2", NOW)
    assert not await storage.use_step("alice", "S1", 200)
    assert not await storage.disable("alice")
    assert (await storage.get_user("alice")).generation == generation + 1


async def test_recovery_code_refused_once_disabled(storage: SQLStorage) -> None:
    await enrolled(storage)
    await storage.disable("alice")
    await storage.replace_recovery_codes("alice", ["n1"])  # a stray row without a secret
    assert not await storage.use_recovery_code("alice", "n1", NOW)


# -- throttling ---------------------------------------------------------------------------

async def test_failures_counted_by_user_and_client_within_the_window(storage: SQLStorage) -> None:
    assert await storage.add_failure("alice", "10.0.0.1", NOW, 300) == (1, 1)
    assert await storage.add_failure("alice", "10.0.0.2", NOW + 1, 300) == (2, 1)
    assert await storage.add_failure("bob", "10.0.0.1", NOW + 2, 300) == (1, 2)
    assert await storage.client_failures("10.0.0.1", NOW - 300) == 2
    assert await storage.client_failures("10.0.0.1", NOW + 1) == 1
    # NOW's failures fall out of the window at NOW + 300
    assert await storage.add_failure("alice", "10.0.0.1", NOW + 300, 300) == (2, 2)
    await storage.clear_failures("alice")
    assert await storage.add_failure("alice", "10.0.0.3", NOW + 301, 300) == (1, 1)
    assert await storage.client_failures("10.0.0.1", NOW) == 1  # bob's remains


async def test_old_failures_are_pruned(backend: Backend, storage: SQLStorage) -> None:
    await storage.add_failure("alice", "10.0.0.1", NOW, 300)
    await storage.add_failure("alice", "10.0.0.1", NOW + 86_401, 300)
    assert await backend.sql("SELECT COUNT(*) FROM failures") == [(1,)]


async def test_concurrent_failures_are_counted_exactly(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(5)]
    counts = await asyncio.gather(*(instances[i % 5].add_failure("alice", "10.0.0.1", NOW, 300)
                                    for i in range(10)))
    assert sorted(counts) == [(n, n) for n in range(1, 11)]


async def test_lock_and_unlock(storage: SQLStorage) -> None:
    await storage.lock("carol", NOW + 900)  # also a user the sidecar never saw
    assert (await storage.get_user("carol")).locked_until == NOW + 900
    assert not (await storage.get_user("carol")).enrolled
    await enrolled(storage)
    await storage.add_failure("alice", "10.0.0.1", NOW, 300)
    await storage.lock("alice", NOW + 900)
    assert (await storage.get_user("alice")).locked_until == NOW + 900
    assert await storage.unlock("alice")
    assert (await storage.get_user("alice")).locked_until == 0
    assert await storage.client_failures("10.0.0.1", NOW - 1) == 0
    assert not await storage.unlock("alice")
    assert (await storage.get_user("alice")).enrolled  # a lock never touches the secret


# -- audit, key rotation, listing ---------------------------------------------------------

async def test_events_newest_first(storage: SQLStorage) -> None:
    for i in range(5):
        await storage.add_event(Event(NOW + i, f"e{i}", "alice", "10.0.0.1", {"n": i, "k": "v"}))
    await storage.add_event(Event(NOW, "other", "bob", "", {}))
    events = await storage.events("alice")
    assert [e.event for e in events] == ["e4", "e3", "e2", "e1", "e0"]
    assert events[0] == Event(NOW + 4, "e4", "alice", "10.0.0.1", {"k": "v", "n": 4})
    assert [e.event for e in await storage.events("alice", limit=2)] == ["e4", "e3"]
    assert await storage.events("bob") == [Event(NOW, "other", "bob", "", {})]


async def test_sealed_secrets_and_replace_sealed(storage: SQLStorage) -> None:
    await enrolled(storage, secret="SEALED-A")
    await storage.put_pending("bob", "SEALED-B", NOW + 600, NOW)
    assert sorted(await storage.sealed_secrets()) == [("pending", "bob", "SEALED-B"),
                                                       ("users", "alice", "SEALED-A")]
    assert await storage.replace_sealed("users", "alice", "SEALED-A", "NEW-A")
    assert not await storage.replace_sealed("users", "alice", "SEALED-A", "NEWER")  # changed since
    assert await storage.replace_sealed("pending", "bob", "SEALED-B", "NEW-B")
    assert sorted(await storage.sealed_secrets()) == [("pending", "bob", "NEW-B"),
                                                       ("users", "alice", "NEW-A")]
    assert await storage.use_step("alice", "NEW-A", 101)
    with pytest.raises(ValueError):
        await storage.replace_sealed("events", "alice", "x", "y")


async def test_list_users(storage: SQLStorage) -> None:
    await enrolled(storage, user="carol")
    await storage.lock("bob", NOW + 60)
    await enrolled(storage, user="alice", codes=("a1",))
    users = await storage.list_users()
    assert [u.user_id for u in users] == ["alice", "bob", "carol"]
    assert [(u.enrolled, u.recovery_left, u.locked_until) for u in users] == [
        (True, 1, 0), (False, 0, NOW + 60), (True, 3, 0)]
    assert users[0] == await storage.get_user("alice")


# -- failures -----------------------------------------------------------------------------

async def test_closed_storage_is_unavailable(backend: Backend) -> None:
    storage = await backend.open()
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await storage.get_user("alice")
    with pytest.raises(StorageUnavailable):
        await storage.ping()


async def test_database_errors_become_storage_unavailable(backend: Backend,
                                                           storage: SQLStorage) -> None:
    await backend.sql("DROP TABLE events")
    with pytest.raises(StorageUnavailable, match="events"):
        await storage.add_event(Event(NOW, "e", "alice", "", {}))
    with pytest.raises(StorageUnavailable):
        await storage.events("alice")
    await storage.ping()  # the rest keeps working
    assert (await storage.get_user("alice")) == UserState("alice")


async def test_unreachable_postgres_is_unavailable_without_the_password() -> None:
    port = free_port()  # nothing listens there
    storage = PostgresStorage(f"postgresql://sidecar:pa55-word@127.0.0.1:{port}/totp"
                              "?password=pa55-word")
    with pytest.raises(StorageUnavailable) as info:
        await storage.open()
    message = str(info.value)
    assert f"the PostgreSQL database 127.0.0.1:{port}/totp" in message
    assert "pa55" not in message and "sidecar:" not in message
    with pytest.raises(StorageUnavailable, match="not open"):
        await storage.ping()
    await storage.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_connections_ended_by_the_server_are_replaced(backend: Backend) -> None:
    """A database restart or failover ends every pooled connection; later calls reconnect."""
    storage = await backend.open()
    await asyncio.gather(*(storage.ping() for _ in range(5)))
    ended = await backend.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE application_name = 'totp-sidecar'"
                              " AND datname = current_database()")
    assert ended and all(row == (True,) for row in ended)
    deadline = asyncio.get_running_loop().time() + 2
    while True:  # a call racing the disconnect may fail (StorageUnavailable), none after it
        try:
            await storage.ping()
            break
        except StorageUnavailable:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    await enrolled(storage)
    assert (await storage.get_user("alice")).enrolled
