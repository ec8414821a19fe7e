"""An in-memory storage for unit tests: every role of ``sidecar.storage.Storage``, no database.

It keeps the contract the SQL backends keep (use-once updates, reservations counted before
comparing, generations bumped on disable), in plain dicts, so the account service and the
throttle can be tested without I/O. ``tests/integration/test_storage.py`` holds the real
backends to the same contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import count

from sidecar.errors import StorageUnavailable
from sidecar.storage import SIGNIN, Attempt, Change, Credential, Device, Event, Limits, Scope, UserState


@dataclass
class Failure:
    id: int
    user_id: str
    client: str
    at: int
    scope: Scope


@dataclass
class MemoryStorage:
    users: dict[str, UserState] = field(default_factory=dict)
    pending: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    codes: dict[str, dict[str, int | None]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    events_: list[Event] = field(default_factory=list)
    contacts: dict[str, str] = field(default_factory=dict)
    devices_: dict[str, Device] = field(default_factory=dict)
    grants: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)
    credentials_: dict[str, Credential] = field(default_factory=dict)
    challenges: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)
    ids: count[int] = field(default_factory=lambda: count(1))
    feed: list[Change] = field(default_factory=list)
    bursts: dict[str, int] = field(default_factory=dict)
    opened: bool = False

    # -- life ---------------------------------------------------------------------------
    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def ping(self) -> None:
        return None

    # -- the change feed and bursts -----------------------------------------------------
    def _changed(self, user_id: str, kind: str, device_id: str | None = None) -> None:
        seq = self.feed[-1].seq + 1 if self.feed else 1
        self.feed.append(Change(seq, user_id, kind, device_id))

    @property
    def listens(self) -> bool:
        return False

    async def listen(self, wake: Callable[[], None], ready: Callable[[], None]) -> None:
        raise StorageUnavailable("the memory storage cannot listen")

    async def feed_touched(self) -> bool:
        return True

    async def feed_bounds(self) -> tuple[int, int] | None:
        return (self.feed[0].seq, self.feed[-1].seq) if self.feed else None

    async def feed_after(self, after: int, upto: int) -> list[Change]:
        return [c for c in self.feed if after < c.seq <= upto]

    async def prune_feed(self, before: int) -> None:
        self.feed = self.feed[-1:]

    async def burst_until(self, burst_key: str, now: int) -> int | None:
        until = self.bursts.get(burst_key)
        return until if until is not None and until > now else None

    async def add_burst(self, burst_key: str, until: int, now: int) -> None:
        self.bursts[burst_key] = until

    # -- users --------------------------------------------------------------------------
    def _user(self, user_id: str) -> UserState:
        return self.users.get(user_id, UserState(user_id))

    async def get_user(self, user_id: str) -> UserState:
        left = sum(1 for used in self.codes.get(user_id, {}).values() if used is None)
        return replace(self._user(user_id), recovery_left=left)

    async def list_users(self) -> list[UserState]:
        return [await self.get_user(u) for u in sorted(self.users)]

    async def count_enrolled(self) -> int:
        return sum(1 for user in self.users.values() if user.enrolled)

    async def disable(self, user_id: str) -> bool:
        user = self._user(user_id)
        self._changed(user_id, "disabled")
        if not user.enrolled:
            return False
        self.credentials_ = {k: c for k, c in self.credentials_.items() if c.user_id != user_id}
        self.challenges = {k: c for k, c in self.challenges.items() if c[0] != user_id}
        self.users[user_id] = replace(user, secret=None, enabled_at=None,
                                      generation=user.generation + 1, locked_until=0)
        self.codes.pop(user_id, None)
        self.pending = {k: v for k, v in self.pending.items() if k[0] != user_id}
        self.failures = [f for f in self.failures if f.user_id != user_id]
        self.devices_ = {k: d for k, d in self.devices_.items() if d.user_id != user_id}
        return True

    async def lock(self, user_id: str, until: int) -> None:
        self.users[user_id] = replace(self._user(user_id), locked_until=until)
        self._changed(user_id, "locked")

    async def unlock(self, user_id: str) -> bool:
        user = self._user(user_id)
        self.failures = [f for f in self.failures if f.user_id != user_id]
        self._changed(user_id, "unlocked")
        if user.locked_until <= 0:
            return False
        self.users[user_id] = replace(user, locked_until=0)
        return True

    async def set_contact(self, user_id: str, email: str) -> None:
        self.contacts[user_id] = email

    async def contact(self, user_id: str) -> str:
        return self.contacts.get(user_id, "")

    async def users_for_account(self, account: str) -> list[str]:
        text = account.strip().lower()
        found = {u for u in self.users if u.lower() == text}
        found |= {u for u, e in self.contacts.items() if e.lower() == text}
        return sorted(found)

    # -- keys ---------------------------------------------------------------------------
    async def pending_secret(self, user_id: str, session: str, now: int) -> str | None:
        found = self.pending.get((user_id, session))
        return found[0] if found and found[1] > now else None

    async def put_pending(self, user_id: str, session: str, secret: str, expires_at: int,
                          now: int) -> str:
        self.pending = {k: v for k, v in self.pending.items() if v[1] > now}
        return self.pending.setdefault((user_id, session), (secret, expires_at))[0]

    async def complete_enrollment(self, user_id: str, session: str, secret: str, step: int,
                                  code_hashes: list[str], now: int, expect: int = 0) -> int | None:
        found = self.pending.get((user_id, session))
        if found is None or found[0] != secret or found[1] <= now:
            return None
        user = self._user(user_id)
        if user.secret is not None or not self._as_expected(user, expect):
            return None
        self.pending = {k: v for k, v in self.pending.items() if k[0] != user_id}
        generation = user.generation + (0 if user.enrolled else 1)
        self.users[user_id] = replace(user, secret=secret, enabled_at=user.enabled_at or now,
                                      last_step=step, generation=generation)
        if code_hashes:
            self.codes[user_id] = dict.fromkeys(code_hashes)
        self._changed(user_id, "enabled")
        return generation

    async def use_step(self, user_id: str, secret: str, step: int) -> bool:
        user = self._user(user_id)
        if user.secret != secret or user.last_step >= step:
            return False
        self.users[user_id] = replace(user, last_step=step)
        return True

    async def use_recovery_code(self, user_id: str, code_hash: str, now: int) -> bool:
        codes = self.codes.get(user_id, {})
        if not self._user(user_id).enrolled or code_hash not in codes or codes[code_hash]:
            return False
        codes[code_hash] = now
        return True

    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        self.codes[user_id] = dict.fromkeys(code_hashes)
        self._changed(user_id, "codes")

    async def sealed_secrets(self) -> list[tuple[str, str, str, str]]:
        enrolled = [("users", u.user_id, "", u.secret) for u in self.users.values() if u.secret]
        return enrolled + [("pending", u, s, v[0]) for (u, s), v in self.pending.items()]

    async def replace_sealed(self, table: str, user_id: str, session: str, old: str,
                             new: str) -> bool:
        if table == "users" and self._user(user_id).secret == old:
            self.users[user_id] = replace(self._user(user_id), secret=new)
            return True
        found = self.pending.get((user_id, session))
        if table == "pending" and found and found[0] == old:
            self.pending[(user_id, session)] = (new, found[1])
            return True
        return False

    # -- attempts -----------------------------------------------------------------------
    def _counts(self, user_id: str, client: str, scope: Scope, since: int) -> tuple[int, int]:
        by_user = sum(1 for f in self.failures if f.user_id == user_id and f.scope == scope
                      and f.at > since)
        by_client = sum(1 for f in self.failures if f.client == client and f.at > since)
        return by_user, by_client

    async def reserve_attempt(self, user_id: str, client: str, now: int, limits: Limits,
                              scope: Scope = SIGNIN) -> Attempt:
        since = now - limits.window
        locked = self._user(user_id).locked_until if scope == SIGNIN else 0
        by_user, by_client = self._counts(user_id, client, scope, since)
        failure_id = None
        if locked <= now and by_user < limits.max_failures and by_client < limits.max_failures_per_client:
            failure_id = next(self.ids)
            self.failures.append(Failure(failure_id, user_id, client, now, scope))
            by_user, by_client = by_user + 1, by_client + 1
        return Attempt(failure_id, by_user, by_client, locked)

    async def clear_failures_upto(self, user_id: str, scope: Scope, failure_id: int) -> None:
        self.failures = [f for f in self.failures if not (
            f.user_id == user_id and f.scope == scope and f.id <= failure_id)]

    async def add_failure(self, user_id: str, client: str, now: int, window: int,
                          scope: Scope = SIGNIN) -> tuple[int, int]:
        self.failures.append(Failure(next(self.ids), user_id, client, now, scope))
        return self._counts(user_id, client, scope, now - window)

    async def client_failures(self, client: str, since: int) -> int:
        return sum(1 for f in self.failures if f.client == client and f.at > since)

    async def clear_failures(self, user_id: str) -> None:
        self.failures = [f for f in self.failures if f.user_id != user_id]

    # -- events, devices, grants --------------------------------------------------------
    async def add_event(self, event: Event) -> None:
        self.events_.append(event)

    async def events(self, user_id: str, limit: int = 50) -> list[Event]:
        return [e for e in reversed(self.events_) if e.user_id == user_id][:limit]

    async def add_device(self, device: Device) -> None:
        self.devices_[device.device_id] = device

    async def device_seen(self, user_id: str, device_id: str, now: int) -> bool:
        device = self.devices_.get(device_id)
        if device is None or device.user_id != user_id:
            return False
        self.devices_[device_id] = replace(device, last_seen=now)
        return True

    async def devices(self, user_id: str) -> list[Device]:
        return sorted((d for d in self.devices_.values() if d.user_id == user_id),
                      key=lambda d: -d.last_seen)

    async def forget_devices(self, user_id: str, device_id: str | None = None) -> int:
        gone = [k for k, d in self.devices_.items()
                if d.user_id == user_id and device_id in (None, k)]
        for key in gone:
            del self.devices_[key]
        self._changed(user_id, "devices", device_id)
        return len(gone)

    async def add_grant(self, grant_id: str, account: str, expires_at: int,
                        now: int | None = None) -> None:
        self.grants[grant_id] = (account, expires_at, None)

    async def use_grant(self, grant_id: str, now: int) -> bool:
        found = self.grants.get(grant_id)
        if found is None or found[2] is not None or found[1] <= now:
            return False
        self.grants[grant_id] = (found[0], found[1], now)
        return True

    # -- security keys ------------------------------------------------------------------
    async def add_challenge(self, challenge: str, user_id: str, session: str, purpose: str,
                            expires_at: int, now: int) -> None:
        self.challenges = {k: c for k, c in self.challenges.items() if c[3] > now}
        self.challenges[challenge] = (user_id, session, purpose, expires_at)

    async def use_challenge(self, challenge: str, user_id: str, session: str, purpose: str,
                            now: int) -> bool:
        found = self.challenges.get(challenge)
        if found is None or found[:3] != (user_id, session, purpose) or found[3] <= now:
            return False
        del self.challenges[challenge]
        return True

    async def credentials(self, user_id: str) -> list[Credential]:
        return sorted((c for c in self.credentials_.values() if c.user_id == user_id),
                      key=lambda c: (c.created_at, c.credential_id))

    async def credential(self, credential_id: str) -> Credential | None:
        return self.credentials_.get(credential_id)

    @staticmethod
    def _as_expected(user: UserState, expect: int) -> bool:
        """2FA off (``expect`` 0), or on at generation ``expect``: what the page decided on."""
        return not user.enrolled if expect == 0 else (user.enrolled and user.generation == expect)

    async def add_credential(self, credential: Credential, code_hashes: list[str],
                             now: int, expect: int = 0) -> int | None:
        user = self._user(credential.user_id)
        if credential.credential_id in self.credentials_ or not self._as_expected(user, expect):
            return None
        self.credentials_[credential.credential_id] = credential
        if expect == 0:
            user = replace(user, enabled_at=now, generation=user.generation + 1)
            self.users[user.user_id] = user
            self.codes[user.user_id] = dict.fromkeys(code_hashes)
            self._changed(user.user_id, "enabled")
        return user.generation

    async def use_credential(self, user_id: str, credential_id: str, old_count: int,
                             new_count: int, now: int) -> bool:
        found = self.credentials_.get(credential_id)
        if found is None or found.user_id != user_id or found.sign_count != old_count:
            return False
        self.credentials_[credential_id] = replace(found, sign_count=new_count, last_used=now)
        return True

    async def rename_credential(self, user_id: str, credential_id: str, name: str) -> bool:
        found = self.credentials_.get(credential_id)
        if found is None or found.user_id != user_id:
            return False
        self.credentials_[credential_id] = replace(found, name=name)
        return True

    async def remove_credential(self, user_id: str, credential_id: str,
                                keep_a_factor: bool = False) -> bool:
        found = self.credentials_.get(credential_id)
        if found is None or found.user_id != user_id:
            return False
        if keep_a_factor and (await self.get_user(user_id)).secret is None and not any(
                c.user_id == user_id and c.credential_id != credential_id
                for c in self.credentials_.values()):
            return False
        del self.credentials_[credential_id]
        return True
