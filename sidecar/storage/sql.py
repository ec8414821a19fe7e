"""Every storage operation, written once as SQL that SQLite and PostgreSQL both run.

Every change that must not be half-done is one transaction; every "use once" is a single
conditional UPDATE whose row count says whether this caller won, so two processes (or
instances) sharing the database cannot both accept the same code.

Throttling reserves before it compares: ``reserve_attempt`` checks the lock and the failure
counts and records the attempt as a failure in one write transaction, so concurrent guesses
(from any number of instances) can never be compared more often than the limit allows.

A backend (``sqlite``, ``postgres``) supplies how statements run: ``_run`` (one transaction)
and ``_fetch`` (one query). Placeholders are ``?``. On SQLite, ``LOWER`` is Python's
``str.lower`` (every script, as PostgreSQL's), so an account names the same users on both.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any

from sidecar.storage.credentials import CredentialsSQL
from sidecar.storage.feed import FeedSQL, Statement
from sidecar.storage.records import SIGNIN, Attempt, Device, Event, Scope, UserState
from sidecar.storage.roles import Limits

FAILURES_KEPT = 86400  # failures older than this (or the window) are pruned


@dataclass(frozen=True, slots=True)
class Result:
    rowcount: int
    rows: list[Any]

    @property
    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class SQLStorage(FeedSQL, CredentialsSQL, abc.ABC):
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
        The other sessions' pending secrets of the user end too. Without ``code_hashes`` (the
        user has security keys, so 2FA is on already) the recovery codes stay as they are.
        """
        results = await self._run([
            ("INSERT INTO users (user_id, secret, enabled_at, last_step, generation)"
             " SELECT ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), 1 WHERE EXISTS (SELECT 1 FROM"
             " pending WHERE user_id = ? AND session = ? AND secret = ? AND expires_at > ?)"
             " ON CONFLICT (user_id) DO UPDATE SET"
             " secret = excluded.secret,"
             " enabled_at = COALESCE(users.enabled_at, excluded.enabled_at),"
             " last_step = excluded.last_step, generation = users.generation + 1"
             " WHERE users.secret IS NULL",
             (user_id, secret, now, step, user_id, session, secret, now)),
            ("DELETE FROM pending WHERE user_id = ?", (user_id,)),
            *([("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))] if code_hashes else []),
            *[("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)", (user_id, h))
              for h in code_hashes],
            *self._changed(user_id, "enabled"),
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
            " AND users.enabled_at IS NOT NULL)", (now, user_id, code_hash, user_id))])
        return result.rowcount == 1

    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        statements: list[Statement] = [
            ("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))]
        statements += [("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                        (user_id, h)) for h in code_hashes]
        await self._run([*statements, *self._changed(user_id, "codes")])

    async def disable(self, user_id: str) -> bool:
        """2FA off: secret, security keys and codes gone, generation bumped so every 2FA cookie ends."""
        results = await self._run([
            ("UPDATE users SET secret = NULL, enabled_at = NULL, generation = generation + 1,"
             " locked_until = 0 WHERE user_id = ? AND enabled_at IS NOT NULL", (user_id,)),
            ("DELETE FROM webauthn_credentials WHERE user_id = ?", (user_id,)),
            ("DELETE FROM webauthn_challenges WHERE user_id = ?", (user_id,)),
            ("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,)),
            ("DELETE FROM pending WHERE user_id = ?", (user_id,)),
            ("DELETE FROM failures WHERE user_id = ?", (user_id,)),
            ("DELETE FROM devices WHERE user_id = ?", (user_id,)),
            *self._changed(user_id, "disabled"),
        ])
        return results[0].rowcount == 1

    async def reserve_attempt(self, user_id: str, client: str, now: int, limits: Limits,
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
             (user_id, until)), *self._changed(user_id, "locked")])

    async def unlock(self, user_id: str) -> bool:
        results = await self._run([
            ("UPDATE users SET locked_until = 0 WHERE user_id = ? AND locked_until > 0", (user_id,)),
            ("DELETE FROM failures WHERE user_id = ?", (user_id,)),
            *self._changed(user_id, "unlocked"),
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

    async def count_enrolled(self) -> int:
        """How many users have 2FA on (one COUNT: the metrics gauge reads it now and then)."""
        rows = await self._fetch("SELECT COUNT(*) FROM users WHERE enabled_at IS NOT NULL", ())
        return int(rows[0][0])

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
        statement: Statement = (("DELETE FROM devices WHERE user_id = ?", (user_id,))
                                if device_id is None else
                                ("DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                                 (user_id, device_id)))
        results = await self._run([statement, *self._changed(user_id, "devices", device_id)])
        return int(results[0].rowcount)
