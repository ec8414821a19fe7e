"""SQLite through aiosqlite: one file (WAL, busy timeout), safe for several processes on one host.

Migrations (``storage/migrations/V000N.Name.sqlite.up.sql``) are applied at open, in one
transaction; an up-to-date database is only read, so a read-only file still opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from sidecar.errors import StorageUnavailable
from sidecar.storage.feed import Statement
from sidecar.storage.migrations import migrations
from sidecar.storage.sql import Result, SQLStorage

BUSY_TIMEOUT_MS = 3000
MIGRATIONS = migrations("sqlite")


class SQLiteStorage(SQLStorage):
    """SQLite through aiosqlite; safe for several processes on one file (WAL, busy timeout)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._data_version: int | None = None

    @staticmethod
    def check_path(path: str) -> None:
        """Refuse a database whose folder does not exist (a typo, not a fresh install)."""
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise StorageUnavailable(f"the folder of the database does not exist: "
                                     f"{Path(path).parent}")

    async def open(self) -> None:
        self.check_path(self.path)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None,
                                         timeout=BUSY_TIMEOUT_MS / 1000)
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.create_function("lower", 1, _lower, deterministic=True)
            self._db = db
            await self._migrate()
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open the database {self.path}: {exc}") from None

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        """Apply the migrations this file lacks, in one transaction; none when up to date.

        An up-to-date database is only read here, so a read-only file still opens (pages
        that would write then answer 503).
        """
        db = self._conn()
        if await self._version(db) == len(MIGRATIONS):
            return
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = await self._version(db)
            if version == 0:
                await db.execute("DELETE FROM schema_version")
                await db.execute("INSERT INTO schema_version (version) VALUES (0)")
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    await db.execute(statement)
                await db.execute("UPDATE schema_version SET version = ?", (number,))
            await db.execute("COMMIT")
        except BaseException:
            await self._rollback(db)
            raise

    @staticmethod
    async def _rollback(db: aiosqlite.Connection) -> None:
        """Roll back; quietly when SQLite already did (a disk error ends the transaction)."""
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")

    @staticmethod
    async def _version(db: aiosqlite.Connection) -> int:
        try:
            rows = list(await (await db.execute("SELECT version FROM schema_version")).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        return int(rows[0][0]) if rows else 0

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageUnavailable("the database is not open")
        if self.path != ":memory:" and not os.path.exists(self.path):
            raise StorageUnavailable(f"the database file is missing: {self.path}")
        return self._db

    async def _run(self, statements: list[Statement], write: bool = True,
                   guard: bool = False) -> list[Result]:
        """Run statements as one transaction; any SQLite error becomes StorageUnavailable.

        Rows are read before COMMIT: a statement left open would hold an old snapshot, and
        the next write of this connection would fail at once instead of waiting its turn.
        When a statement fails, the error told is that one (a full or failing disk), not the
        ROLLBACK's "no transaction is active" after SQLite already ended the transaction.
        """
        async with self._lock:
            db = self._conn()
            results = []
            try:
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    for sql, params in statements:
                        cursor = await db.execute(sql, params)
                        rows = list(await cursor.fetchall())
                        results.append(Result(cursor.rowcount, rows))
                        await cursor.close()
                        if guard and len(results) == 1 and results[0].rowcount == 0:
                            await db.execute("ROLLBACK")
                            return []
                    await db.execute("COMMIT")
                except BaseException:
                    await self._rollback(db)  # so the error that ended it is the one told
                    raise
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"database error: {exc}") from None
            return results

    async def feed_touched(self) -> bool:
        """Whether another connection committed since the last call (``PRAGMA data_version``:
        no table is read). This connection's own commits are applied by the process itself."""
        rows = await self._fetch("PRAGMA data_version", ())
        version = int(rows[0][0])
        touched, self._data_version = version != self._data_version, version
        return touched

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._lock:
            db = self._conn()
            try:
                return list(await (await db.execute(sql, params)).fetchall())
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"database error: {exc}") from None


def _lower(value: Any) -> Any:
    """SQLite's ``LOWER`` as Python's (and PostgreSQL's): every script, not only ASCII."""
    return value.lower() if isinstance(value, str) else value
