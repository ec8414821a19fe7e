"""The two storage backends the storage tests run on: a SQLite file and a PostgreSQL database.

Each test gets a fresh database (a temp file; ``totp_sidecar_test_<random>`` on the server,
dropped afterwards). "Another instance" is another storage object on the same database: its
own connection (SQLite) or its own pool (PostgreSQL). Under ``CI=true`` PostgreSQL must be
there (``tests.pg``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from sidecar.storage import SQLiteStorage, SQLStorage
from sidecar.storage.postgres import PostgresStorage
from tests.pg import fresh_database

KINDS = ["sqlite", "postgres"]


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

    async def close(self) -> None:
        for storage in self.opened:
            await storage.close()


@contextlib.asynccontextmanager
async def backend_for(kind: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh database of this kind; every instance opened on it is closed afterwards."""
    if kind == "sqlite":
        item = Backend("sqlite", str(tmp_path / "sidecar.db"))
        try:
            yield item
        finally:
            await item.close()
        return
    async with fresh_database() as dsn:
        item = Backend("postgres", dsn)
        try:
            yield item
        finally:
            await item.close()
