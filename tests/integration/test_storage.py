"""The Storage contract, run against both backends: a SQLite file and a PostgreSQL database.

Each test gets a fresh database (see ``storage_backends``). "Another instance" is another
storage object on the same database: its own connection (SQLite) or its own pool (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ThrottleConfig
from sidecar.errors import StorageUnavailable
from sidecar.storage import RESET, SIGNIN, Attempt, Event, SQLiteStorage, SQLStorage, UserState
from sidecar.storage.migrations import migrations
from sidecar.storage.postgres import PostgresStorage
from tests.integration.storage_backends import KINDS, Backend, backend_for
from tests.ports import free_port

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000
TABLES = {
    "schema_version": ["version"],
    "users": ["user_id", "secret", "enabled_at", "last_step", "generation", "locked_until"],
    "pending": ["user_id", "session", "secret", "expires_at"],
    "recovery_codes": ["user_id", "code_hash", "used_at"],
    "failures": ["id", "user_id", "client", "at", "scope"],
    "events": ["id", "at", "event", "user_id", "client", "detail"],
    "grants": ["grant_id", "account", "expires_at", "used_at"],
}
INDEXES = {"failures_user_scope_at", "failures_client_at", "failures_at", "events_user_at"}
LIMITS = ThrottleConfig(max_failures=3, window=300, lockout=900, max_failures_per_client=5)

MIGRATIONS = migrations("sqlite")


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as item:
        yield item


@pytest.fixture
async def storage(backend: Backend) -> SQLStorage:
    return await backend.open()


async def enrolled(storage: SQLStorage, user: str = "alice", secret: str = "S1",
                   codes: tuple[str, ...] = ("h1", "h2", "h3"), step: int = 100) -> int:
    assert await storage.put_pending(user, "s", secret, NOW + 600, NOW) == secret
    generation = await storage.complete_enrollment(user, "s", secret, step, list(codes), NOW)
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
    assert len(migrations("postgres")) == len(MIGRATIONS)
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
    assert await storage.pending_secret("alice", "s", NOW) is None
    assert await storage.put_pending("alice", "s", "S1", NOW + 600, NOW) == "S1"
    assert await storage.put_pending("alice", "s", "S2", NOW + 700, NOW + 10) == "S1"  # a reload
    assert await storage.pending_secret("alice", "s", NOW + 599) == "S1"
    assert await storage.pending_secret("alice", "s", NOW + 600) is None
    assert await storage.put_pending("alice", "s", "S3", NOW + 1300, NOW + 600) == "S3"
    assert await storage.pending_secret("alice", "s", NOW + 601) == "S3"
    assert not (await storage.get_user("alice")).enrolled


async def test_each_session_has_its_own_pending_secret(backend: Backend, storage: SQLStorage) -> None:
    assert await storage.put_pending("alice", "A", "SA", NOW + 600, NOW) == "SA"
    assert await storage.put_pending("alice", "B", "SB", NOW + 600, NOW) == "SB"
    assert await storage.put_pending("bob", "A", "SC", NOW + 600, NOW) == "SC"
    assert await storage.pending_secret("alice", "A", NOW) == "SA"
    assert await storage.pending_secret("alice", "B", NOW) == "SB"
    assert await storage.pending_secret("alice", "C", NOW) is None
    # B's secret cannot complete A's enrollment, nor a session without a pending secret
    assert await storage.complete_enrollment("alice", "A", "SB", 5, ["h1"], NOW) is None
    assert await storage.complete_enrollment("alice", "C", "SA", 5, ["h1"], NOW) is None
    assert await storage.complete_enrollment("alice", "B", "SB", 5, ["h1"], NOW) == 1
    assert (await storage.get_user("alice")).secret == "SB"
    # enrolled: no other session of alice keeps a secret that could replace this one
    assert await storage.pending_secret("alice", "A", NOW) is None
    assert await storage.complete_enrollment("alice", "A", "SA", 6, ["h2"], NOW) is None
    assert await storage.pending_secret("bob", "A", NOW) == "SC"
    # expired rows of anyone go when a secret is put
    await storage.put_pending("carol", "A", "SD", NOW + 700, NOW + 650)
    assert await backend.sql("SELECT user_id, session FROM pending ORDER BY user_id") == [
        ("carol", "A")]


async def test_disable_ends_every_pending_secret_of_the_user(storage: SQLStorage) -> None:
    await enrolled(storage)
    await storage.put_pending("alice", "A", "SA", NOW + 600, NOW)
    await storage.put_pending("alice", "B", "SB", NOW + 600, NOW)
    await storage.put_pending("bob", "B", "SC", NOW + 600, NOW)
    assert await storage.disable("alice")
    assert await storage.pending_secret("alice", "A", NOW) is None
    assert await storage.pending_secret("alice", "B", NOW) is None
    assert await storage.pending_secret("bob", "B", NOW) == "SC"


async def test_concurrent_put_pending_agree_on_one_secret(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(3)]
    kept = await asyncio.gather(*(instances[i % 3].put_pending("alice", "s", f"S{i}", NOW + 600, NOW)
                                  for i in range(9)))
    assert len(set(kept)) == 1


async def test_complete_enrollment_only_with_the_pending_secret(storage: SQLStorage) -> None:
    assert await storage.complete_enrollment("alice", "s", "S1", 5, ["h1"], NOW) is None  # none pending
    await storage.put_pending("alice", "s", "S1", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "s", "OTHER", 5, ["h1"], NOW) is None
    assert await storage.complete_enrollment("alice", "s", "S1", 5, ["h1"], NOW + 600) is None  # expired
    assert (await storage.get_user("alice")) == UserState("alice")
    assert await storage.complete_enrollment("alice", "s", "S1", 5, ["h1", "h2"], NOW + 1) == 1
    user = await storage.get_user("alice")
    assert (user.secret, user.enabled_at, user.last_step, user.generation, user.recovery_left) == \
        ("S1", NOW + 1, 5, 1, 2)
    assert await storage.pending_secret("alice", "s", NOW + 2) is None
    assert await storage.complete_enrollment("alice", "s", "S1", 6, ["h3"], NOW + 2) is None  # used up
    # a secret that is on is never replaced by a set-up left open
    await storage.put_pending("alice", "s", "S2", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "s", "S2", 9, ["h9"], NOW + 3) is None
    assert (await storage.get_user("alice")).secret == "S1"
    # after turning 2FA off, enrolling again sets secret and codes and bumps the generation
    assert await storage.disable("alice")
    await storage.put_pending("alice", "s", "S2", NOW + 600, NOW)
    assert await storage.complete_enrollment("alice", "s", "S2", 9, ["h9"], NOW + 3) == 3
    assert not await storage.use_recovery_code("alice", "h1", NOW + 4)
    assert await storage.use_recovery_code("alice", "h9", NOW + 4)


async def test_concurrent_enrollments_complete_once(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(4)]
    await instances[0].put_pending("alice", "s", "S1", NOW + 600, NOW)
    done = await asyncio.gather(*(s.complete_enrollment("alice", "s", "S1", 5, [f"h{i}"], NOW)
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
    await storage.put_pending("alice", "s", "S2", NOW + 600, NOW)
    await storage.add_failure("alice", "192.0.2.1", NOW, 300)
    await storage.lock("alice", NOW + 900)
    assert await storage.disable("alice")
    user = await storage.get_user("alice")
    assert not user.enrolled and user.enabled_at is None
    assert user.generation == generation + 1 and user.recovery_left == 0 and user.locked_until == 0
    assert await storage.pending_secret("alice", "s", NOW) is None
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


async def test_reserve_attempt_counts_then_refuses_at_each_limit(storage: SQLStorage) -> None:
    first = await storage.reserve_attempt("alice", "c1", NOW, LIMITS)
    assert first.failure_id is not None and (first.by_user, first.by_client) == (1, 1)
    second = await storage.reserve_attempt("alice", "c2", NOW + 1, LIMITS)
    third = await storage.reserve_attempt("alice", "c1", NOW + 2, LIMITS)
    assert second.failure_id is not None and third.failure_id is not None
    assert first.failure_id < second.failure_id < third.failure_id
    assert (third.by_user, third.by_client) == (3, 2)
    assert await storage.reserve_attempt("alice", "c3", NOW + 3, LIMITS) == Attempt(None, 3, 0, 0)
    # the client limit counts every user: c1 has 2, bob adds 3 more, then c1 is refused
    for i in range(3):
        assert (await storage.reserve_attempt("bob", "c1", NOW + 3, LIMITS)).by_client == 3 + i
    assert await storage.reserve_attempt("carol", "c1", NOW + 3, LIMITS) == Attempt(None, 0, 5, 0)
    assert await storage.client_failures("c1", NOW - 300) == 5  # refusals are not failures
    # alice's first failure leaves the window at NOW + 300
    again = await storage.reserve_attempt("alice", "c4", NOW + 300, LIMITS)
    assert again.failure_id is not None and again.by_user == 3


async def test_a_locked_user_is_refused_before_anything_is_recorded(storage: SQLStorage) -> None:
    await storage.lock("alice", NOW + 900)
    assert await storage.reserve_attempt("alice", "c1", NOW, LIMITS) == Attempt(None, 0, 0, NOW + 900)
    assert await storage.client_failures("c1", NOW - 300) == 0
    allowed = await storage.reserve_attempt("alice", "c1", NOW + 900, LIMITS)
    assert allowed.failure_id is not None and allowed.locked_until == NOW + 900


async def test_reset_failures_count_apart_from_sign_in(storage: SQLStorage) -> None:
    await storage.lock("bob", NOW + 900)
    bob = await storage.reserve_attempt("bob", "c9", NOW, LIMITS, RESET)  # a lock is for sign-in
    assert bob.failure_id is not None and bob.locked_until == 0
    for i in range(3):
        attempt = await storage.reserve_attempt("alice", f"c{i}", NOW, LIMITS, RESET)
        assert attempt.failure_id is not None and attempt.by_user == i + 1
    assert (await storage.reserve_attempt("alice", "c5", NOW, LIMITS, RESET)).failure_id is None
    signin = await storage.reserve_attempt("alice", "c0", NOW, LIMITS, SIGNIN)
    assert signin.failure_id is not None and (signin.by_user, signin.by_client) == (1, 2)
    assert (await storage.get_user("alice")).locked_until == 0


async def test_a_right_code_clears_failures_up_to_its_own_reservation(
        backend: Backend, storage: SQLStorage) -> None:
    ids = [(await storage.reserve_attempt("alice", "c1", NOW, LIMITS)).failure_id for _ in range(2)]
    reset = await storage.reserve_attempt("alice", "c1", NOW, LIMITS, RESET)
    later = await storage.reserve_attempt("alice", "c1", NOW, LIMITS)  # still being compared
    bob = await storage.reserve_attempt("bob", "c1", NOW, LIMITS)
    assert ids[1] is not None and reset.failure_id and later.failure_id and bob.failure_id
    await storage.clear_failures_upto("alice", SIGNIN, ids[1])
    assert sorted(r[0] for r in await backend.sql("SELECT id FROM failures")) == sorted(
        [reset.failure_id, later.failure_id, bob.failure_id])


async def test_concurrent_reservations_across_instances_stop_at_the_limit(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(3)]
    attempts = await asyncio.gather(*(
        instances[i % 3].reserve_attempt("alice", f"10.0.0.{i}", NOW, LIMITS) for i in range(60)))
    granted = sorted(a.by_user for a in attempts if a.failure_id is not None)
    assert granted == [1, 2, 3]
    assert await backend.sql("SELECT COUNT(*) FROM failures") == [(3,)]


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


# -- password-reset accounts and grants ---------------------------------------------------

async def test_users_for_account_names_every_user_it_could_mean(storage: SQLStorage) -> None:
    await enrolled(storage, user="Alice")
    await enrolled(storage, user="alice")
    await storage.lock("ÄLICE", NOW)
    await storage.set_contact("bob", "Alice@Example.com")
    await storage.set_contact("carol", "alice@example.com")
    await storage.set_contact("dave", "dave@example.com")
    assert await storage.users_for_account(" ALICE ") == ["Alice", "alice"]
    assert await storage.users_for_account("älice") == ["ÄLICE"]
    assert await storage.users_for_account("ALICE@example.COM") == ["bob", "carol"]
    await storage.lock("dave@example.com", NOW)  # a user id that is also dave's address
    assert await storage.users_for_account("Dave@Example.com") == ["dave", "dave@example.com"]
    assert await storage.users_for_account("nobody") == []


async def test_a_grant_is_used_once_and_only_before_it_expires(backend: Backend,
                                                              storage: SQLStorage) -> None:
    await storage.add_grant("g1", "alice@example.com", NOW + 600)
    await storage.add_grant("g2", "bob", NOW + 600)
    assert not await storage.use_grant("unknown", NOW)
    assert await storage.use_grant("g1", NOW)
    assert not await storage.use_grant("g1", NOW + 1)
    assert not await storage.use_grant("g2", NOW + 600)  # expired
    await storage.add_grant("g3", "carol", NOW + 1200, now=NOW + 601)  # ended grants go
    assert await backend.sql("SELECT grant_id FROM grants") == [("g3",)]


async def test_one_grant_used_once_across_instances(backend: Backend) -> None:
    instances = [await backend.open() for _ in range(4)]
    await instances[0].add_grant("g1", "alice", NOW + 600)
    won = await all_at_once(12, lambda i: instances[i % 4].use_grant("g1", NOW))
    assert won.count(True) == 1


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
    await storage.put_pending("bob", "B1", "SEALED-B", NOW + 600, NOW)
    await storage.put_pending("bob", "B2", "SEALED-B", NOW + 600, NOW)  # the same text in two sessions
    assert sorted(await storage.sealed_secrets()) == [("pending", "bob", "B1", "SEALED-B"),
                                                       ("pending", "bob", "B2", "SEALED-B"),
                                                       ("users", "alice", "", "SEALED-A")]
    assert await storage.replace_sealed("users", "alice", "", "SEALED-A", "NEW-A")
    assert not await storage.replace_sealed("users", "alice", "", "SEALED-A", "NEWER")  # changed since
    assert await storage.replace_sealed("pending", "bob", "B1", "SEALED-B", "NEW-B")
    assert not await storage.replace_sealed("pending", "bob", "B3", "SEALED-B", "NEW-B")
    assert sorted(await storage.sealed_secrets()) == [("pending", "bob", "B1", "NEW-B"),
                                                       ("pending", "bob", "B2", "SEALED-B"),
                                                       ("users", "alice", "", "NEW-A")]
    assert await storage.use_step("alice", "NEW-A", 101)
    assert await storage.pending_secret("bob", "B1", NOW) == "NEW-B"
    with pytest.raises(ValueError):
        await storage.replace_sealed("events", "alice", "", "x", "y")


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


async def test_old_databases_are_migrated(backend: Backend) -> None:
    """A database at the schema before per-session pending secrets and failure scopes."""
    old = migrations(backend.kind)[:4]
    script = [*(sql for step in old for sql in step),
              "CREATE TABLE schema_version (version INTEGER NOT NULL)",
              "INSERT INTO schema_version (version) VALUES (4)",
              f"INSERT INTO pending (user_id, secret, expires_at) VALUES ('alice', 'S0', {NOW + 600})",
              f"INSERT INTO failures (user_id, client, at) VALUES ('alice', 'c1', {NOW})"]
    if backend.kind == "sqlite":
        with sqlite3.connect(backend.target) as db:
            for sql in script:
                db.execute(sql)
    else:
        for sql in script:
            await backend.sql(sql)
    storage = await backend.open()
    assert await backend.sql("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert await backend.sql("SELECT user_id, client, scope FROM failures") == [("alice", "c1", "signin")]
    assert await storage.pending_secret("alice", "", NOW) is None  # dropped: it would expire soon
    assert (await storage.reserve_attempt("alice", "c2", NOW, LIMITS)).by_user == 2


class FailingDisk:
    """A SQLite connection whose disk fails on writes: SQLite then ends the transaction itself."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.startswith(("INSERT", "UPDATE", "DELETE")):
            await self.db.execute("ROLLBACK")  # what SQLite does on an I/O error in a write
            raise sqlite3.OperationalError("disk I/O error")
        return await self.db.execute(sql, params)


async def test_a_failing_disk_is_named_in_the_error(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "sidecar.db"))
    await storage.open()
    real = storage._db
    try:
        storage._db = FailingDisk(real)  # type: ignore[assignment]
        with pytest.raises(StorageUnavailable, match="disk I/O error"):
            await storage.lock("alice", NOW)
        with pytest.raises(StorageUnavailable, match="disk I/O error"):
            await storage.reserve_attempt("alice", "c1", NOW, LIMITS)
        storage._db = real
        await storage.lock("alice", NOW)  # usable again: no transaction was left open
        assert (await storage.get_user("alice")).locked_until == NOW
    finally:
        storage._db = real
        await storage.close()


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
