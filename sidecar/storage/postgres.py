"""PostgreSQL storage (asyncpg, a small pool): one database shared by several instances.

Runs the very SQL of ``sidecar.storage.sql``  (``?`` placeholders numbered to ``$1, $2, …``), so each
operation means the same on both backends. What differs is how transactions are kept apart:

* A use-once UPDATE (TOTP step, recovery code, pending secret) is one statement; PostgreSQL
  re-checks its WHERE on the newest row version after waiting for a concurrent writer, so of
  two concurrent uses exactly one changes a row, as on SQLite.
* A write transaction of several statements first takes one transaction-scoped advisory
  lock, so those run one at a time, as SQLite's ``BEGIN IMMEDIATE`` makes them: the failure
  counts read before a reservation (``reserve_attempt``) and after an insert are exact, and a
  delete-then-insert never interleaves.
* Migrations (``storage/migrations/V000N.Name.postgres.up.sql``) run at open under their own
  advisory lock, so instances starting together apply each one once.
* Nothing is kept in a session: locks are transaction-level (``pg_advisory_xact_lock``), so a
  pooler in transaction mode (PgBouncer) may hand each transaction another server connection.
  Behind one (``pgbouncer``), asyncpg keeps no prepared statements and no reset query runs.
* A change's transaction ends with ``pg_notify`` (delivered at commit); ``listen`` waits for
  those on a dedicated connection to ``listen_dsn`` (direct, never through a pooler).

Every asyncpg, network or timeout error becomes StorageUnavailable; messages name the
database as ``host:port/dbname``, never with the DSN's user, password or options.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from sidecar.errors import StorageUnavailable
from sidecar.storage.feed import FEED_CHANNEL, Statement, wait_event
from sidecar.storage.migrations import migrations
from sidecar.storage.sql import Result, SQLStorage

POOL_MIN, POOL_MAX = 1, 10
TIMEOUT_SECONDS = 3.0  # connecting, waiting for a pooled connection, one statement
LISTEN_CHECK_SECONDS = 2.0  # how often the idle listening connection is checked
_WRITE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('totp_sidecar.write', 0))"
_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('totp_sidecar.migrate', 0))"
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
           OSError, TimeoutError)

MIGRATIONS = migrations("postgres")


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, …`` (the shared SQL has no other ``?``)."""
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def describe(dsn: str) -> str:
    """``host:port/dbname`` of a DSN: no user, password or query (which may hold one)."""
    try:
        parts = urlsplit(dsn)
        where = parts.netloc.rpartition("@")[2] + parts.path
    except ValueError:
        where = ""
    return where or "(default host)"


def _passwords(dsn: str) -> list[str]:
    try:
        parts = urlsplit(dsn)
        found = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k == "password"]
    except ValueError:
        found = []
    return [p for p in found if p]


class _Unchanged(Exception):
    """The guard statement changed no row: the transaction is rolled back."""


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 1`` or ``INSERT 0 1``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PostgresStorage(SQLStorage):
    """PostgreSQL through an asyncpg pool; any number of instances may share the database."""

    NOTIFY_STATEMENTS = ((f"SELECT pg_notify('{FEED_CHANNEL}', '')", ()),)
    DB_NOW = "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"

    def __init__(self, dsn: str, listen_dsn: str = "", pgbouncer: bool = False) -> None:
        self.dsn = dsn
        self.where = describe(dsn)
        self.listen_dsn = listen_dsn or ("" if pgbouncer else dsn)
        self.pgbouncer = pgbouncer
        self._secrets = _passwords(dsn) + _passwords(listen_dsn)
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:
        return f"PostgresStorage({self.where!r})"

    def _unavailable(self, doing: str, exc: BaseException) -> StorageUnavailable:
        text = str(exc) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return StorageUnavailable(f"{doing} the PostgreSQL database {self.where}: {text}")

    async def open(self) -> None:
        try:
            pooler: dict[str, Any] = ({"statement_cache_size": 0, "reset": _no_reset}
                                      if self.pgbouncer else {})
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=POOL_MIN, max_size=POOL_MAX, timeout=TIMEOUT_SECONDS,
                command_timeout=TIMEOUT_SECONDS,
                server_settings={"application_name": "totp-sidecar"}, **pooler)
            await self._migrate()
        except (*_ERRORS, ValueError) as exc:
            await self.close()
            raise self._unavailable("cannot open", exc) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:  # a connection still held (a cancelled call) would keep close waiting
                await asyncio.wait_for(pool.close(), TIMEOUT_SECONDS)
            except (*_ERRORS, TimeoutError):
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageUnavailable("the database is not open")
        try:
            async with self._pool.acquire(timeout=TIMEOUT_SECONDS) as conn:
                yield conn
        except _ERRORS as exc:
            raise self._unavailable("error in", exc) from None

    async def _migrate(self) -> None:
        """Apply the migrations the database lacks, in one transaction under a lock.

        An up-to-date database is only read, as on SQLite.
        """
        async with self._connection() as conn:
            if await self._version(conn) == len(MIGRATIONS):
                return
            async with conn.transaction():
                await conn.execute(_MIGRATE_LOCK)  # a second instance waits here, then finds it done
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version"
                                   " (version INTEGER NOT NULL)")
                version = await self._version(conn)
                if version == 0:
                    await conn.execute("DELETE FROM schema_version")
                    await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute("UPDATE schema_version SET version = $1", number)

    @staticmethod
    async def _version(conn: asyncpg.Connection) -> int:
        try:
            async with conn.transaction():  # a savepoint when inside one: a miss must not end it
                value = await conn.fetchval("SELECT version FROM schema_version")
        except asyncpg.UndefinedTableError:
            return 0
        return int(value) if value is not None else 0

    async def _run(self, statements: list[Statement], write: bool = True,
                   guard: bool = False) -> list[Result]:
        results: list[Result] = []
        async with self._connection() as conn:
            try:
                async with conn.transaction(readonly=not write):
                    if write and len(statements) > 1:
                        await conn.execute(_WRITE_LOCK)
                    for sql, params in statements:
                        if sql.startswith("SELECT") or " RETURNING " in sql:
                            rows = [tuple(row) for row in await conn.fetch(numbered(sql), *params)]
                            results.append(Result(len(rows), rows))
                        else:
                            status = await conn.execute(numbered(sql), *params)
                            results.append(Result(_rowcount(status), []))
                        if guard and len(results) == 1 and results[0].rowcount == 0:
                            raise _Unchanged
            except _Unchanged:
                return []
        return results

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._connection() as conn:
            return [tuple(row) for row in await conn.fetch(numbered(sql), *params)]

    @property
    def listens(self) -> bool:
        """Whether ``listen`` can wait for changes (without, the feed is polled only)."""
        return bool(self.listen_dsn)

    async def listen(self, wake: Callable[[], None], ready: Callable[[], None]) -> None:
        """Call ``wake`` at every change committed, until the listening connection is lost
        (then StorageUnavailable). ``ready`` is called once it listens."""
        if not self.listen_dsn:
            raise StorageUnavailable("no connection to listen on (storage.postgres.listen_dsn)")
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(
                self.listen_dsn, timeout=TIMEOUT_SECONDS, command_timeout=TIMEOUT_SECONDS,
                server_settings={"application_name": "totp-sidecar feed"})
        except (*_ERRORS, ValueError) as exc:
            raise self._unavailable("cannot listen to", exc) from None
        try:
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(FEED_CHANNEL, lambda *_: wake())
            ready()
            while not lost.is_set():
                await wait_event(lost, LISTEN_CHECK_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1")
        except _ERRORS as exc:
            raise self._unavailable("lost the listening connection to", exc) from None
        finally:
            conn.terminate()
        raise StorageUnavailable(f"lost the listening connection to {describe(self.listen_dsn)}")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Behind a pooler nothing is kept in a session, so nothing is reset at release."""
