"""What one instance knows of its users' 2FA state, kept current by the change feed.

A bounded LRU of user states (enrolled? which generation? which remembered devices are still
valid?), with no time limit: an entry stays until the feed says the user changed (any
instance, the CLI: ``sidecar.storage.feed``), the LRU evicts it, or the whole cache is dropped
because changes may have been missed (a gap in the feed, a lost LISTEN connection). The user
id is an opaque key: whatever the caller names a user by.

Fail closed: entries are vouched for only while the feed was read within ``STALE_SECONDS``.
Beyond that, nothing is served from memory: each request reads storage (and, with storage
down, cannot be decided). A first sight of a user reads storage once, however many requests
ask at the same time (single flight); a read overtaken by a change of that user is served to
the requests that waited for it but not kept.

The feed is applied by ``run`` (started with the sidecar): woken by the storage's ``listen``
(PostgreSQL NOTIFY) when it can, and polled every ``POLL_SECONDS`` (``1 s`` while listening)
so a lost notification loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sidecar.core.clock import Monotonic
from sidecar.core.clock import monotonic as steady
from sidecar.errors import StorageUnavailable
from sidecar.storage import Change, Feed
from sidecar.storage.feed import wait_event

log = logging.getLogger("sidecar.states")

STALE_SECONDS = 5.0  # states are vouched for only while the feed was read this recently
POLL_SECONDS = 0.25  # between reads of the feed when no NOTIFY can wake us
LISTENING_POLL_SECONDS = 1.0  # between reads while NOTIFY wakes us at each change
FULL_READ_SECONDS = 1.0  # the feed is read at least this often, even when "untouched"
RELISTEN_SECONDS = 1.0  # between attempts to open the listening connection
DEVICES_PER_USER = 32  # remembered-device answers kept per user


@dataclass(frozen=True, slots=True)
class CachedState:
    """A user's 2FA state as storage last said (one shared object per distinct state)."""

    enrolled: bool
    generation: int


_SHARED: dict[tuple[bool, int], CachedState] = {}
SHARED_LIMIT = 1024


def cached_state(enrolled: bool, generation: int) -> CachedState:
    """The state object for (enrolled, generation): users in the same state share one."""
    state = _SHARED.get((enrolled, generation))
    if state is None:
        state = CachedState(enrolled, generation)
        if len(_SHARED) < SHARED_LIMIT:
            _SHARED[(enrolled, generation)] = state
    return state


Load = Callable[[str], Awaitable[CachedState]]


class States:
    """The user states of this instance: an LRU of ``limit`` users, applied from ``feed``."""

    def __init__(self, feed: Feed, limit: int, monotonic: Monotonic = steady) -> None:
        self.feed = feed
        self.limit = limit
        self.monotonic = monotonic
        self.read_at = -math.inf  # when the last successful read of the feed started
        self.last_seq: int | None = None  # the last change applied (None: never read)
        self.listening = False
        self.drops = 0  # whole-cache drops (a gap, a lost LISTEN connection)
        self._known: OrderedDict[str, CachedState] = OrderedDict()
        self._devices: dict[str, dict[str, bool]] = {}  # user → device id → still remembered?
        self._changes = 0  # counts every forgotten user: a device answer read across one is not kept
        self._loading: dict[str, asyncio.Task[CachedState]] = {}
        self._overtaken: set[str] = set()
        self._epoch = 0
        self._full_at = -math.inf
        self._must_read = True
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._listened = False
        self._stopping = False

    def __len__(self) -> int:
        return len(self._known)

    # -- the hot path -------------------------------------------------------------------
    def healthy(self) -> bool:
        """Whether the feed was read recently enough to vouch for what memory holds."""
        return self.monotonic() - self.read_at < STALE_SECONDS

    def peek(self, user: str) -> CachedState | None:
        """The user's state from memory, when it can be vouched for (no I/O)."""
        if not self.healthy():
            return None
        state = self._known.get(user)
        if state is not None:
            self._known.move_to_end(user)
        return state

    async def get(self, user: str, load: Load) -> CachedState:
        """The user's state: from memory, or read once by ``load`` (single flight)."""
        state = self.peek(user)
        if state is not None:
            return state
        if not self.healthy():  # nothing can be kept: every request reads storage
            return await load(user)
        task = self._loading.get(user)
        if task is None:
            task = asyncio.ensure_future(self._load(user, load))
            self._loading[user] = task
        return await asyncio.shield(task)

    async def _load(self, user: str, load: Load) -> CachedState:
        epoch = self._epoch
        try:
            state = await load(user)
        finally:
            del self._loading[user]
            overtaken = user in self._overtaken
            self._overtaken.discard(user)
        if epoch == self._epoch and not overtaken and self.healthy():
            self._known[user] = state
            self._known.move_to_end(user)
            if len(self._known) > self.limit:
                evicted, _ = self._known.popitem(last=False)
                self._devices.pop(evicted, None)
        return state

    def generation_is(self, user: str, generation: int) -> bool:
        """Whether the user's vouched-for state is enrolled at ``generation`` (no I/O)."""
        state = self.peek(user)
        return state is not None and state.enrolled and state.generation == generation

    def device(self, user: str, device_id: str) -> bool | None:
        """Whether a remembered device of the user is still valid, when memory knows."""
        if self.peek(user) is None:
            return None
        devices = self._devices.get(user)
        return None if devices is None else devices.get(device_id)

    def device_token(self) -> int:
        """Taken before reading a device from storage, handed to ``note_device`` after."""
        return self._changes

    def note_device(self, token: int, user: str, device_id: str, valid: bool) -> None:
        """Keep a device answer, unless any user was forgotten since ``token`` was taken (the
        answer may be older than a change) or the user's state is not kept."""
        if token == self._changes and user in self._known:
            devices = self._devices.setdefault(user, {})
            if len(devices) >= DEVICES_PER_USER:
                devices.clear()
            devices[device_id] = valid

    # -- changes ------------------------------------------------------------------------
    def forget(self, user: str) -> None:
        """The user changed: drop what memory holds (and do not keep a read in flight)."""
        self._known.pop(user, None)
        self._devices.pop(user, None)
        self._changes += 1
        if user in self._loading:
            self._overtaken.add(user)

    def drop_all(self, why: str) -> None:
        """Changes may have been missed: forget every user."""
        self._known.clear()
        self._devices.clear()
        self._changes += 1
        self._epoch += 1
        self.drops += 1
        log.info("user states dropped: %s", why)

    def apply(self, change: Change) -> None:
        self.forget(change.user_id)

    async def poll(self) -> None:
        """Read the feed once and apply what changed (StorageUnavailable when it cannot)."""
        started = self.monotonic()
        must = self._must_read or started - self._full_at >= FULL_READ_SECONDS
        self._must_read = True  # until this read succeeds
        if not await self.feed.feed_touched() and not must and self.last_seq is not None:
            self.read_at = started
            self._must_read = False
            return
        bounds = await self.feed.feed_bounds()
        last = self.last_seq
        if bounds is None:
            if last:
                self.drop_all("the feed is empty (a new database?)")
            elif last is None:
                self.drop_all("first read of the feed")
            self.last_seq = 0
        else:
            low, high = bounds
            if last is None:
                self.drop_all("first read of the feed")
            elif high < last:
                self.drop_all("the feed went back (a new database?)")
            elif low > last + 1:
                self.drop_all("changes were pruned before this instance read them")
            elif high > last:
                for change in await self.feed.feed_after(last, high):
                    self.apply(change)
            self.last_seq = high
        self.read_at = self._full_at = started
        self._must_read = False

    # -- running ------------------------------------------------------------------------
    def start(self) -> None:
        """Apply the feed in the background until ``stop``."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """End the background work; its loops also check ``_stopping``, so a cancellation that
        a library swallows cannot keep them (and this wait) going."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._woken()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        self._wake = asyncio.Event()
        listener = asyncio.ensure_future(self._listen()) if self.feed.listens else None
        failing = False
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self.poll()
                    if failing:
                        log.warning("the change feed can be read again")
                    failing = False
                except StorageUnavailable as exc:
                    if not failing:
                        log.error("cannot read the change feed (states are not served from "
                                  "memory after %.0f s): %s", STALE_SECONDS, exc)
                    failing = True
                wait = LISTENING_POLL_SECONDS if self.listening else POLL_SECONDS
                await wait_event(self._wake, wait)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self) -> None:
        """Keep a listening connection; each loss or reconnect drops every state."""
        while not self._stopping:
            try:
                await self.feed.listen(self._woken, self._listening)
            except StorageUnavailable as exc:
                if self.listening or not self._listened:
                    log.warning("change notifications stopped (polling goes on): %s", exc)
            if self.listening:
                self.listening = False
                self.drop_all("the listening connection was lost")
            await asyncio.sleep(RELISTEN_SECONDS)

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _listening(self) -> None:
        if self._listened:
            self.drop_all("listening again after a reconnect")
        self._listened = self.listening = True
        self._woken()
