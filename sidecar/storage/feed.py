"""The change feed and the shared X-OTP bursts, as SQL both backends run (a part of ``SQLStorage``).

Every change to a user's 2FA state adds a feed row in the very transaction of the change
(``_changed``): instances read the feed by sequence number and drop what they keep of that
user. Sequence numbers commit in order: SQLite writes one transaction at a time, and on
PostgreSQL every transaction with more than one statement first takes the write lock (so a
reader never sees seq N+1 before seq N). Old rows are pruned now and then, always keeping the
newest, so a reader that finds the oldest kept row beyond the one it expects knows it missed
some. A backend may wake readers at commit (``NOTIFY_STATEMENTS``: PostgreSQL's ``pg_notify``).
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from sidecar.errors import StorageUnavailable
from sidecar.storage.records import Change

FEED_KEEP_SECONDS = 300  # feed rows younger than this are kept (and always the newest one)
PRUNE_EVERY_SECONDS = 60.0
FEED_CHANNEL = "totp_sidecar_feed"
Statement = tuple[str, tuple[Any, ...]]


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set, ``seconds`` at most. Unlike ``asyncio.wait_for`` of Python
    3.11, a cancellation arriving as the wait ends is never swallowed (a loop that relies on
    being cancelled would otherwise go on, and whoever waits for it would wait forever)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()


class FeedSQL(abc.ABC):
    """Writing and reading the feed, and the shared burst windows."""

    NOTIFY_STATEMENTS: tuple[Statement, ...] = ()
    #: The database's own clock, in whole seconds: rows are stamped and pruned by one clock,
    #: so a writer whose clock is off cannot get an unread row pruned early (a lost revocation).
    DB_NOW = "CAST(strftime('%s', 'now') AS INTEGER)"
    _pruned_at: float = -math.inf

    @abc.abstractmethod
    async def _run(self, statements: list[Statement], write: bool = True,
                   guard: bool = False) -> list[Any]: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]: ...

    def _changed(self, user_id: str, kind: str, device_id: str | None = None) -> list[Statement]:
        """The statements that record a change of ``user_id`` (in the change's transaction)."""
        statements: list[Statement] = [
            (f"INSERT INTO feed (user_id, kind, device_id, at) VALUES (?, ?, ?, {self.DB_NOW})",
             (user_id, kind, device_id))]
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
            self._pruned_at = time.monotonic()
            statements.append((f"DELETE FROM feed WHERE at < {self.DB_NOW} - {FEED_KEEP_SECONDS}"
                               " AND seq < (SELECT MAX(seq) FROM feed)", ()))
        return [*statements, *self.NOTIFY_STATEMENTS]

    @property
    def listens(self) -> bool:
        """Whether ``listen`` can wait for changes (without, the feed is polled only)."""
        return False

    async def listen(self, wake: Callable[[], None], ready: Callable[[], None]) -> None:
        """Call ``wake`` at every change committed until the connection is lost."""
        raise StorageUnavailable("this storage cannot listen for changes")

    async def prune_feed(self, before: int) -> None:
        """Drop feed rows written before ``before`` (the newest row stays)."""
        await self._run([("DELETE FROM feed WHERE at < ? AND seq < (SELECT MAX(seq) FROM feed)",
                          (before,))])

    async def feed_touched(self) -> bool:
        """Whether the feed may have changed since the last call (a backend may know cheaply)."""
        return True

    async def feed_bounds(self) -> tuple[int, int] | None:
        """The oldest and the newest sequence number kept; None while the feed is empty."""
        rows = await self._fetch("SELECT MIN(seq), MAX(seq) FROM feed", ())
        if not rows or rows[0][1] is None:
            return None
        return int(rows[0][0]), int(rows[0][1])

    async def feed_after(self, after: int, upto: int) -> list[Change]:
        """The changes numbered after ``after`` up to ``upto``, in order."""
        rows = await self._fetch("SELECT seq, user_id, kind, device_id FROM feed"
                                 " WHERE seq > ? AND seq <= ? ORDER BY seq", (after, upto))
        return [Change(int(seq), str(user), str(kind), device)
                for seq, user, kind, device in rows]

    async def burst_until(self, burst_key: str, now: int) -> int | None:
        """Until when the burst ``burst_key`` lets calls through, when it still does."""
        rows = await self._fetch("SELECT until FROM bursts WHERE burst_key = ? AND until > ?",
                                 (burst_key, now))
        return int(rows[0][0]) if rows else None

    async def add_burst(self, burst_key: str, until: int, now: int) -> None:
        """Open a burst window until ``until``; windows that ended go first."""
        await self._run([
            ("DELETE FROM bursts WHERE until <= ?", (now,)),
            ("INSERT INTO bursts (burst_key, until) VALUES (?, ?) ON CONFLICT (burst_key)"
             " DO UPDATE SET until = excluded.until", (burst_key, until)),
        ])
