"""A fresh PostgreSQL database per test (or module), dropped afterwards.

The server is ``$TOTP_SIDECAR_TEST_POSTGRES`` (a maintenance DSN), by default
``postgresql://postgres@127.0.0.1:5432/postgres``. When it cannot be reached the tests that
need it are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sidecar.storage.postgres import describe

MAINTENANCE_DSN = os.environ.get("TOTP_SIDECAR_TEST_POSTGRES",
                                 "postgresql://postgres@127.0.0.1:5432/postgres")


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (PostgreSQL must be running in CI)")
    pytest.skip(reason)


def dsn_for(database: str) -> str:
    parts = urlsplit(MAINTENANCE_DSN)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _maintenance() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(MAINTENANCE_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        unavailable(f"PostgreSQL not reachable at {describe(MAINTENANCE_DSN)}: {exc}")
        raise  # not reached: unavailable() skips or fails


async def create_database() -> str:
    """A new empty database ``totp_sidecar_test_<random>``; its name."""
    name = f"totp_sidecar_test_{secrets.token_hex(6)}"
    conn = await _maintenance()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await _maintenance()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The DSN of a new database, dropped on exit."""
    name = await create_database()
    try:
        yield dsn_for(name)
    finally:
        await drop_database(name)


@contextlib.contextmanager
def fresh_database_sync() -> Iterator[str]:
    """``fresh_database`` for code outside an event loop (process-level tests)."""
    name = asyncio.run(create_database())
    try:
        yield dsn_for(name)
    finally:
        asyncio.run(drop_database(name))
