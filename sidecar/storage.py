"""Storage: a narrow interface and its SQLite implementation (aiosqlite, WAL, migrations).

Every change that must not be half-done is one transaction; every "use once" is a single
conditional UPDATE whose row count says whether this caller won, so two processes sharing
the database file cannot both accept the same code.

Throttling reserves before it compares: ``reserve_attempt`` checks the lock and the failure
counts and records the attempt as a failure in one write transaction, so concurrent guesses
(from any number of instances) can never be compared more often than the limit allows.

The operations are written once, as SQL with ``?`` placeholders, in ``SQLStorage``; a backend
supplies how statements run (``_run``: one transaction, ``_fetch``: one query). SQLite is
here; PostgreSQL (``storage_pg``, for several instances on one database) runs the same SQL.
On SQLite, ``LOWER`` is Python's ``str.lower`` (every script, as PostgreSQL's), so an account
names the same users on both backends.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosqlite

from sidecar.config import Config, PostgresConfig, ThrottleConfig
from sidecar.errors import StorageUnavailable

BUSY_TIMEOUT_MS = 3000
FAILURES_KEPT = 86400  # failures older than this (or the window) are pruned
Statement = tuple[str, tuple[Any, ...]]
Scope = Literal["signin", "reset"]  # what a failed code counts against
SIGNIN: Scope = "signin"  # the user's own sign-in: failures lock the user
RESET: Scope = "reset"  # the public password-reset gate: failures close the gate only

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            secret TEXT,
            enabled_at INTEGER,
            last_step INTEGER NOT NULL DEFAULT -1,
            generation INTEGER NOT NULL DEFAULT 0,
            locked_until INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE pending (
            user_id TEXT PRIMARY KEY,
            secret TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        )""",
        """CREATE TABLE recovery_codes (
            user_id TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            used_at INTEGER,
            PRIMARY KEY (user_id, code_hash)
        )""",
        """CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            client TEXT NOT NULL,
            at INTEGER NOT NULL
        )""",
        "CREATE INDEX failures_user_at ON failures (user_id, at)",
    ),
    (
        "CREATE INDEX failures_client_at ON failures (client, at)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            event TEXT NOT NULL,
            user_id TEXT NOT NULL,
            client TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_user_at ON events (user_id, at)",
    ),
    (
        "CREATE TABLE contacts (user_id TEXT PRIMARY KEY, email TEXT NOT NULL)",
    ),
    (
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            last_seen BIGINT NOT NULL,
            browser TEXT NOT NULL
        )""",
        "CREATE INDEX devices_user ON devices (user_id)",
    ),
    (
        "DROP TABLE pending",  # rows keyed by user alone; they expire within minutes anyway
        """CREATE TABLE pending (
            user_id TEXT NOT NULL,
            session TEXT NOT NULL,
            secret TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (user_id, session)
        )""",
        "ALTER TABLE failures ADD COLUMN scope TEXT NOT NULL DEFAULT 'signin'",
        "DROP INDEX failures_user_at",
        "CREATE INDEX failures_user_scope_at ON failures (user_id, scope, at)",
        "CREATE INDEX failures_at ON failures (at)",  # pruning runs at every attempt
        """CREATE TABLE grants (
            grant_id TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_at BIGINT
        )""",
    ),
)


@dataclass(frozen=True, slots=True)
class Result:
    rowcount: int
    rows: list[Any]

    @property
    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


@dataclass(frozen=True, slots=True)
class Device:
    """A browser the user asked to remember (a second factor for ``max_days``)."""

    device_id: str
    user_id: str
    created_at: int
    last_seen: int
    browser: str


@dataclass(frozen=True, slots=True)
class Event:
    at: int
    event: str
    user_id: str
    client: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A code attempt reserved as a failure before the code is compared, or refused.

    ``failure_id`` is the reservation (None: refused, compare nothing); the counts are the
    failures within the window of the user (in the attempt's scope) and of the client (every
    scope), a reservation included; ``locked_until`` is the user's sign-in lock (scope signin).
    """

    failure_id: int | None
    by_user: int
    by_client: int
    locked_until: int = 0


@dataclass(frozen=True, slots=True)
class UserState:
    user_id: str
    secret: str | None = None
    enabled_at: int | None = None
    last_step: int = -1
    generation: int = 0
    locked_until: int = 0
    recovery_left: int = 0

    @property
    def enrolled(self) -> bool:
        return self.secret is not None


class Storage(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def get_user(self, user_id: str) -> UserState: ...
    async def pending_secret(self, user_id: str, session: str, now: int) -> str | None: ...
    async def put_pending(self, user_id: str, session: str, secret: str, expires_at: int,
                          now: int) -> str: ...
    async def complete_enrollment(self, user_id: str, session: str, secret: str, step: int,
                                  code_hashes: list[str], now: int) -> int | None: ...
    async def use_step(self, user_id: str, secret: str, step: int) -> bool: ...
    async def use_recovery_code(self, user_id: str, code_hash: str, now: int) -> bool: ...
    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None: ...
    async def disable(self, user_id: str) -> bool: ...
    async def reserve_attempt(self, user_id: str, client: str, now: int, limits: ThrottleConfig,
                              scope: Scope = SIGNIN) -> Attempt: ...
    async def clear_failures_upto(self, user_id: str, scope: Scope, failure_id: int) -> None: ...
    async def add_failure(self, user_id: str, client: str, now: int, window: int,
                          scope: Scope = SIGNIN) -> tuple[int, int]: ...
    async def client_failures(self, client: str, since: int) -> int: ...
    async def add_event(self, event: Event) -> None: ...
    async def events(self, user_id: str, limit: int = 50) -> list[Event]: ...
    async def sealed_secrets(self) -> list[tuple[str, str, str, str]]: ...
    async def replace_sealed(self, table: str, user_id: str, session: str, old: str,
                             new: str) -> bool: ...
    async def lock(self, user_id: str, until: int) -> None: ...
    async def unlock(self, user_id: str) -> bool: ...
    async def clear_failures(self, user_id: str) -> None: ...
    async def list_users(self) -> list[UserState]: ...
    async def set_contact(self, user_id: str, email: str) -> None: ...
    async def contact(self, user_id: str) -> str: ...
    async def users_for_account(self, account: str) -> list[str]: ...
    async def add_grant(self, grant_id: str, account: str, expires_at: int,
                        now: int | None = None) -> None: ...
    async def use_grant(self, grant_id: str, now: int) -> bool: ...
    async def add_device(self, device: Device) -> None: ...
    async def device_seen(self, user_id: str, device_id: str, now: int) -> bool: ...
    async def devices(self, user_id: str) -> list[Device]: ...
    async def forget_devices(self, user_id: str, device_id: str | None = None) -> int: ...


class SQLStorage(abc.ABC):
    """Every Storage operation, written once in SQL that SQLite and PostgreSQL both run.

    A backend provides ``_run`` (statements as one transaction; with ``guard``, rolled back
    and ``[]`` returned when the first statement changes no row) and ``_fetch`` (one query);
    both turn every database error into StorageUnavailable. Placeholders are ``?``.
    """

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _run(self, statements: list[Statement], write: bool = True,
                   guard: bool = False) -> list[Result]: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]: ...

    async def ping(self) -> None:
        await self._fetch("SELECT 1", ())

    async def get_user(self, user_id: str) -> UserState:
        rows = await self._fetch(
            "SELECT secret, enabled_at, last_step, generation, locked_until,"
            " (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = u.user_id"
            "  AND r.used_at IS NULL) FROM users u WHERE user_id = ?", (user_id,))
        if not rows:
            return UserState(user_id)
        secret, enabled_at, last_step, generation, locked_until, left = rows[0]
        return UserState(user_id, secret, enabled_at, last_step, generation, locked_until, left)

    async def pending_secret(self, user_id: str, session: str, now: int) -> str | None:
        """The unexpired secret being enrolled in this app session of the user, if any."""
        rows = await self._fetch(
            "SELECT secret FROM pending WHERE user_id = ? AND session = ? AND expires_at > ?",
            (user_id, session, now))
        return str(rows[0][0]) if rows else None

    async def put_pending(self, user_id: str, session: str, secret: str, expires_at: int,
                          now: int) -> str:
        """Keep ``secret`` pending in this session unless an unexpired one exists; the one in force.

        Expired rows (of anyone) go first, so each session of a user holds at most one row.
        """
        results = await self._run([
            ("DELETE FROM pending WHERE expires_at <= ?", (now,)),
            ("INSERT INTO pending (user_id, session, secret, expires_at) VALUES (?, ?, ?, ?)"
             " ON CONFLICT (user_id, session) DO NOTHING", (user_id, session, secret, expires_at)),
            ("SELECT secret FROM pending WHERE user_id = ? AND session = ?", (user_id, session)),
        ])
        current = results[2].scalar
        return str(current) if current is not None else secret

    async def complete_enrollment(self, user_id: str, session: str, secret: str, step: int,
                                  code_hashes: list[str], now: int) -> int | None:
        """Turn 2FA on with ``secret``, still pending in this session; the new generation.

        Only while the user has no secret: a set-up page left open (on another instance, whose
        cached state said "not enrolled") never replaces a secret that was turned on since.
        The other sessions' pending secrets of the user end too.
        """
        results = await self._run([
            ("INSERT INTO users (user_id, secret, enabled_at, last_step, generation)"
             " SELECT ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), 1 WHERE EXISTS (SELECT 1 FROM"
             " pending WHERE user_id = ? AND session = ? AND secret = ? AND expires_at > ?)"
             " ON CONFLICT (user_id) DO UPDATE SET"
             " secret = excluded.secret, enabled_at = excluded.enabled_at,"
             " last_step = excluded.last_step, generation = users.generation + 1"
             " WHERE users.secret IS NULL",
             (user_id, secret, now, step, user_id, session, secret, now)),
            ("DELETE FROM pending WHERE user_id = ?", (user_id,)),
            ("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,)),
            *[("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)", (user_id, h))
              for h in code_hashes],
            ("SELECT generation FROM users WHERE user_id = ?", (user_id,)),
        ], guard=True)
        return int(results[-1].scalar) if results and results[-1].rows else None

    async def use_step(self, user_id: str, secret: str, step: int) -> bool:
        (result,) = await self._run([(
            "UPDATE users SET last_step = ? WHERE user_id = ? AND secret = ? AND last_step < ?",
            (step, user_id, secret, step))])
        return result.rowcount == 1

    async def use_recovery_code(self, user_id: str, code_hash: str, now: int) -> bool:
        (result,) = await self._run([(
            "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ?"
            " AND used_at IS NULL AND EXISTS (SELECT 1 FROM users WHERE users.user_id = ?"
            " AND users.secret IS NOT NULL)", (now, user_id, code_hash, user_id))])
        return result.rowcount == 1

    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        statements: list[Statement] = [
            ("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))]
        statements += [("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                        (user_id, h)) for h in code_hashes]
        await self._run(statements)

    async def disable(self, user_id: str) -> bool:
        """2FA off: secret and codes gone, generation bumped so every 2FA cookie ends."""
        results = await self._run([
            ("UPDATE users SET secret = NULL, enabled_at = NULL, generation = generation + 1,"
             " locked_until = 0 WHERE user_id = ? AND secret IS NOT NULL", (user_id,)),
            ("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,)),
            ("DELETE FROM pending WHERE user_id = ?", (user_id,)),
            ("DELETE FROM failures WHERE user_id = ?", (user_id,)),
            ("DELETE FROM devices WHERE user_id = ?", (user_id,)),
        ])
        return results[0].rowcount == 1

    async def reserve_attempt(self, user_id: str, client: str, now: int, limits: ThrottleConfig,
                              scope: Scope = SIGNIN) -> Attempt:
        """Reserve a code attempt as a failure, unless the user or the client may not try now.

        One write transaction reads the user's sign-in lock (scope signin only), the user's
        failures of ``scope`` and the client's failures of every scope within the window, and
        inserts the failure row only while each is below its limit. The caller compares the
        code afterwards and, when it was right, clears the reservation (``clear_failures_upto``).
        """
        since = now - limits.window
        locked = ("NOT EXISTS (SELECT 1 FROM users WHERE user_id = ? AND locked_until > ?) AND "
                  if scope == SIGNIN else "")
        results = await self._run([
            ("DELETE FROM failures WHERE at <= ?", (now - max(limits.window, FAILURES_KEPT),)),
            ("INSERT INTO failures (user_id, client, at, scope) SELECT ?, ?, CAST(? AS BIGINT), ?"
             f" WHERE {locked}"
             "(SELECT COUNT(*) FROM failures WHERE user_id = ? AND scope = ? AND at > ?) < ?"
             " AND (SELECT COUNT(*) FROM failures WHERE client = ? AND at > ?) < ? RETURNING id",
             (user_id, client, now, scope, *((user_id, now) if locked else ()),
              user_id, scope, since, limits.max_failures, client, since,
              limits.max_failures_per_client)),
            ("SELECT COALESCE((SELECT locked_until FROM users WHERE user_id = ?), 0),"
             " (SELECT COUNT(*) FROM failures WHERE user_id = ? AND scope = ? AND at > ?),"
             " (SELECT COUNT(*) FROM failures WHERE client = ? AND at > ?)",
             (user_id, user_id, scope, since, client, since)),
        ])
        locked_until, by_user, by_client = results[2].rows[0]
        failure_id = int(results[1].rows[0][0]) if results[1].rows else None
        return Attempt(failure_id, int(by_user), int(by_client),
                       int(locked_until) if scope == SIGNIN else 0)

    async def clear_failures_upto(self, user_id: str, scope: Scope, failure_id: int) -> None:
        """After a right code: the user's failures of ``scope`` up to its reservation end.

        Reservations made after it (attempts still being compared) stay.
        """
        await self._run([("DELETE FROM failures WHERE user_id = ? AND scope = ? AND id <= ?",
                          (user_id, scope, failure_id))])

    async def add_failure(self, user_id: str, client: str, now: int, window: int,
                          scope: Scope = SIGNIN) -> tuple[int, int]:
        """Record a failure; those within ``window`` of this user (in ``scope``) and this client."""
        results = await self._run([
            ("DELETE FROM failures WHERE at <= ?", (now - max(window, FAILURES_KEPT),)),
            ("INSERT INTO failures (user_id, client, at, scope) VALUES (?, ?, ?, ?)",
             (user_id, client, now, scope)),
            ("SELECT COUNT(*) FROM failures WHERE user_id = ? AND scope = ? AND at > ?",
             (user_id, scope, now - window)),
            ("SELECT COUNT(*) FROM failures WHERE client = ? AND at > ?", (client, now - window)),
        ])
        return int(results[2].scalar or 0), int(results[3].scalar or 0)

    async def client_failures(self, client: str, since: int) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM failures WHERE client = ? AND at > ?",
                                 (client, since))
        return int(rows[0][0])

    async def add_event(self, event: Event) -> None:
        await self._run([("INSERT INTO events (at, event, user_id, client, detail)"
                          " VALUES (?, ?, ?, ?, ?)",
                          (event.at, event.event, event.user_id, event.client,
                           json.dumps(event.detail, sort_keys=True)))])

    async def events(self, user_id: str, limit: int = 50) -> list[Event]:
        rows = await self._fetch("SELECT at, event, user_id, client, detail FROM events"
                                 " WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit))
        return [Event(at, event, user, client, json.loads(detail))
                for at, event, user, client, detail in rows]

    async def sealed_secrets(self) -> list[tuple[str, str, str, str]]:
        """(table, user id, session, sealed value) of every stored TOTP secret, for key rotation.

        The session is the pending secret's; ``""`` for an enrolled one.
        """
        rows = await self._fetch(
            "SELECT 'users', user_id, '', secret FROM users WHERE secret IS NOT NULL"
            " UNION ALL SELECT 'pending', user_id, session, secret FROM pending", ())
        return [(str(t), str(u), str(n), str(s)) for t, u, n, s in rows]

    async def replace_sealed(self, table: str, user_id: str, session: str, old: str,
                             new: str) -> bool:
        """Replace one sealed secret while it is still ``old``."""
        params: tuple[Any, ...]
        if table == "users":
            sql, params = ("UPDATE users SET secret = ? WHERE user_id = ? AND secret = ?",
                           (new, user_id, old))
        elif table == "pending":
            sql, params = ("UPDATE pending SET secret = ? WHERE user_id = ? AND session = ?"
                           " AND secret = ?", (new, user_id, session, old))
        else:
            raise ValueError(table)
        (result,) = await self._run([(sql, params)])
        return result.rowcount == 1

    async def lock(self, user_id: str, until: int) -> None:
        await self._run([
            ("INSERT INTO users (user_id, locked_until) VALUES (?, ?) ON CONFLICT (user_id)"
             " DO UPDATE SET locked_until = excluded.locked_until",
             (user_id, until))])

    async def unlock(self, user_id: str) -> bool:
        results = await self._run([
            ("UPDATE users SET locked_until = 0 WHERE user_id = ? AND locked_until > 0", (user_id,)),
            ("DELETE FROM failures WHERE user_id = ?", (user_id,)),
        ])
        return results[0].rowcount == 1

    async def clear_failures(self, user_id: str) -> None:
        await self._run([("DELETE FROM failures WHERE user_id = ?", (user_id,))])

    async def list_users(self) -> list[UserState]:
        rows = await self._fetch(
            "SELECT user_id, secret, enabled_at, last_step, generation, locked_until,"
            " (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = u.user_id"
            "  AND r.used_at IS NULL) FROM users u ORDER BY user_id", ())
        return [UserState(*row) for row in rows]

    async def set_contact(self, user_id: str, email: str) -> None:
        """The e-mail address notices go to (as the app last reported it)."""
        await self._run([("INSERT INTO contacts (user_id, email) VALUES (?, ?)"
                          " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email",
                          (user_id, email))])

    async def contact(self, user_id: str) -> str:
        rows = await self._fetch("SELECT email FROM contacts WHERE user_id = ?", (user_id,))
        return str(rows[0][0]) if rows else ""

    async def users_for_account(self, account: str) -> list[str]:
        """Every user a password-reset form could mean by ``account`` (stripped, in any case).

        User ids equal to it and users whose e-mail address is it, ``LOWER`` on both sides;
        sorted, each once.
        """
        text = account.strip()
        rows = await self._fetch(
            "SELECT user_id FROM users WHERE LOWER(user_id) = LOWER(?)"
            " UNION SELECT user_id FROM contacts WHERE LOWER(email) = LOWER(?)"
            " ORDER BY user_id", (text, text))
        return [str(row[0]) for row in rows]

    async def add_grant(self, grant_id: str, account: str, expires_at: int,
                        now: int | None = None) -> None:
        """A password-reset grant for ``account``, usable once until ``expires_at``.

        Given ``now``, grants that have ended are removed first.
        """
        statements: list[Statement] = [] if now is None else [
            ("DELETE FROM grants WHERE expires_at <= ?", (now,))]
        statements.append(("INSERT INTO grants (grant_id, account, expires_at) VALUES (?, ?, ?)",
                           (grant_id, account, expires_at)))
        await self._run(statements)

    async def use_grant(self, grant_id: str, now: int) -> bool:
        """Use a grant: True exactly once, False when it is unknown, used or expired."""
        results = await self._run([
            ("UPDATE grants SET used_at = ? WHERE grant_id = ? AND used_at IS NULL"
             " AND expires_at > ?", (now, grant_id, now)),
            ("DELETE FROM grants WHERE expires_at <= ?", (now,)),
        ])
        return results[0].rowcount == 1

    async def add_device(self, device: Device) -> None:
        await self._run([("INSERT INTO devices (device_id, user_id, created_at, last_seen, browser)"
                          " VALUES (?, ?, ?, ?, ?)", (device.device_id, device.user_id,
                                                      device.created_at, device.last_seen,
                                                      device.browser))])

    async def device_seen(self, user_id: str, device_id: str, now: int) -> bool:
        """Whether the device is still remembered for the user (and note that it was seen)."""
        (result,) = await self._run([("UPDATE devices SET last_seen = ? WHERE device_id = ?"
                                      " AND user_id = ?", (now, device_id, user_id))])
        return result.rowcount == 1

    async def devices(self, user_id: str) -> list[Device]:
        rows = await self._fetch("SELECT device_id, user_id, created_at, last_seen, browser"
                                 " FROM devices WHERE user_id = ? ORDER BY last_seen DESC",
                                 (user_id,))
        return [Device(str(a), str(b), int(c), int(d), str(e)) for a, b, c, d, e in rows]

    async def forget_devices(self, user_id: str, device_id: str | None = None) -> int:
        """Forget one device of the user, or all of them; how many were forgotten."""
        if device_id is None:
            (result,) = await self._run([("DELETE FROM devices WHERE user_id = ?", (user_id,))])
        else:
            (result,) = await self._run([("DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                                          (user_id, device_id))])
        return int(result.rowcount)


class SQLiteStorage(SQLStorage):
    """SQLite through aiosqlite; safe for several processes on one file (WAL, busy timeout)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

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


def make_storage(config: Config) -> Storage:
    """The storage the config names: a SQLite file, or a PostgreSQL database."""
    if isinstance(config.storage, PostgresConfig):
        from sidecar.storage_pg import PostgresStorage  # asyncpg is loaded only when used

        return PostgresStorage(config.storage.dsn)
    return SQLiteStorage(config.storage.path)
