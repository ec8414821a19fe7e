"""Security keys and passkeys (WebAuthn credentials) and their challenges, in SQL both backends run.

A credential id is unique across all users: registering an id that exists (for anyone) changes
nothing. A challenge is stored server-side for the app session (fingerprint) that asked for
it and is used once: ``use_challenge`` is one conditional DELETE whose row count says whether
this caller won. A sign counter only moves by a conditional UPDATE from the value that was
read, so two concurrent uses of one assertion cannot both pass.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

Statement = tuple[str, tuple[Any, ...]]
CHALLENGES_PER_SESSION = 20  # older challenges of one session and purpose are dropped


@dataclass(frozen=True, slots=True)
class Credential:
    """A registered security key or passkey (ids and the public key as base64url)."""

    credential_id: str
    user_id: str
    public_key: str
    sign_count: int
    name: str
    transports: tuple[str, ...]
    created_at: int
    last_used: int | None = None
    aaguid: str = ""


_COLUMNS = ("credential_id, user_id, public_key, sign_count, name, transports, created_at,"
            " last_used, aaguid")


def _credential(row: Any) -> Credential:
    cid, user, key, count, name, transports, created, used, aaguid = row
    return Credential(str(cid), str(user), str(key), int(count), str(name),
                      tuple(t for t in str(transports).split(",") if t), int(created),
                      None if used is None else int(used), str(aaguid or ""))


class CredentialsSQL(abc.ABC):
    """The ``Credentials`` role over ``_run``/``_fetch`` (mixed into ``SQLStorage``)."""

    @abc.abstractmethod
    async def _run(self, statements: list[Statement], write: bool = True,
                   guard: bool = False) -> list[Any]: ...  # sql.Result

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]: ...

    @abc.abstractmethod
    def _changed(self, user_id: str, kind: str, device_id: str | None = None) -> list[Statement]:
        """The change feed's statements for ``user_id`` (``sidecar.storage.feed``)."""

    async def add_challenge(self, challenge: str, user_id: str, session: str, purpose: str,
                            expires_at: int, now: int) -> None:
        """Keep a challenge for this session; expired ones (of anyone) go first."""
        await self._run([
            ("DELETE FROM webauthn_challenges WHERE expires_at <= ?", (now,)),
            ("DELETE FROM webauthn_challenges WHERE user_id = ? AND session = ? AND purpose = ?"
             " AND challenge NOT IN (SELECT challenge FROM webauthn_challenges WHERE user_id = ?"
             " AND session = ? AND purpose = ? ORDER BY expires_at DESC LIMIT ?)",
             (user_id, session, purpose, user_id, session, purpose, CHALLENGES_PER_SESSION - 1)),
            ("INSERT INTO webauthn_challenges (challenge, user_id, session, purpose, expires_at)"
             " VALUES (?, ?, ?, ?, ?)", (challenge, user_id, session, purpose, expires_at)),
        ])

    async def use_challenge(self, challenge: str, user_id: str, session: str, purpose: str,
                            now: int) -> bool:
        """True exactly once for an unexpired challenge of this user, session and purpose."""
        (result,) = await self._run([(
            "DELETE FROM webauthn_challenges WHERE challenge = ? AND user_id = ? AND session = ?"
            " AND purpose = ? AND expires_at > ?", (challenge, user_id, session, purpose, now))])
        return bool(result.rowcount == 1)

    async def credentials(self, user_id: str) -> list[Credential]:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM webauthn_credentials WHERE user_id = ?"
                                 " ORDER BY created_at, credential_id", (user_id,))
        return [_credential(row) for row in rows]

    async def credential(self, credential_id: str) -> Credential | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM webauthn_credentials"
                                 " WHERE credential_id = ?", (credential_id,))
        return _credential(rows[0]) if rows else None

    async def add_credential(self, credential: Credential, code_hashes: list[str],
                             now: int, expect: int = 0) -> int | None:
        """Register a key; None (nothing changed) when its id is registered already, or when
        the user's 2FA is no longer what the page decided on (``expect``: 0, 2FA off — the key
        is the first factor and ``code_hashes`` its recovery codes; else 2FA on at that
        generation). So a page read before the user turned 2FA on (an attacker's, with the
        password) adds no key, and a first key never replaces codes another factor just made.
        Returns the user's generation.
        """
        c = credential
        first: list[Statement] = [
            ("INSERT INTO users (user_id, enabled_at, generation) VALUES (?, ?, 1)"
             " ON CONFLICT (user_id) DO UPDATE SET enabled_at = excluded.enabled_at,"
             " generation = users.generation + 1 WHERE users.enabled_at IS NULL", (c.user_id, now)),
            ("DELETE FROM recovery_codes WHERE user_id = ?", (c.user_id,)),
            *[("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)", (c.user_id, h))
              for h in code_hashes],
            *self._changed(c.user_id, "enabled"),  # 2FA on: every instance learns it
        ] if expect == 0 else []
        results = await self._run([
            ("INSERT INTO webauthn_credentials (credential_id, user_id, public_key, sign_count,"
             " name, transports, created_at, aaguid) SELECT ?, ?, ?, CAST(? AS BIGINT), ?, ?,"
             " CAST(? AS BIGINT), ? WHERE CASE WHEN CAST(? AS BIGINT) = 0"
             " THEN NOT EXISTS (SELECT 1 FROM users WHERE user_id = ? AND enabled_at IS NOT NULL)"
             " ELSE EXISTS (SELECT 1 FROM users WHERE user_id = ? AND enabled_at IS NOT NULL"
             " AND generation = CAST(? AS BIGINT)) END"
             " ON CONFLICT (credential_id) DO NOTHING",
             (c.credential_id, c.user_id, c.public_key, c.sign_count, c.name,
              ",".join(c.transports), c.created_at, c.aaguid or None, expect, c.user_id,
              c.user_id, expect)),
            *first,
            ("SELECT generation FROM users WHERE user_id = ?", (c.user_id,)),
        ], guard=True)
        return int(results[-1].scalar or 0) if results else None

    async def use_credential(self, user_id: str, credential_id: str, old_count: int,
                             new_count: int, now: int) -> bool:
        """Note a use: the counter moves from ``old_count`` only (False: someone else moved it)."""
        (result,) = await self._run([(
            "UPDATE webauthn_credentials SET sign_count = ?, last_used = ? WHERE credential_id = ?"
            " AND user_id = ? AND sign_count = ?", (new_count, now, credential_id, user_id,
                                                     old_count))])
        return bool(result.rowcount == 1)

    async def rename_credential(self, user_id: str, credential_id: str, name: str) -> bool:
        (result,) = await self._run([(
            "UPDATE webauthn_credentials SET name = ? WHERE credential_id = ? AND user_id = ?",
            (name, credential_id, user_id))])
        return bool(result.rowcount == 1)

    async def remove_credential(self, user_id: str, credential_id: str,
                                keep_a_factor: bool = False) -> bool:
        """Remove a key of the user; with ``keep_a_factor``, only while another key or the
        app remains, decided in the delete's own write transaction (two removals sent at once
        cannot both see "another key remains" and leave none)."""
        if not keep_a_factor:
            (result,) = await self._run([(
                "DELETE FROM webauthn_credentials WHERE credential_id = ? AND user_id = ?",
                (credential_id, user_id))])
            return bool(result.rowcount == 1)
        results = await self._run([
            ("DELETE FROM webauthn_credentials WHERE credential_id = ? AND user_id = ? AND ("
             "EXISTS (SELECT 1 FROM users WHERE user_id = ? AND secret IS NOT NULL) OR EXISTS ("
             "SELECT 1 FROM webauthn_credentials WHERE user_id = ? AND credential_id <> ?))",
             (credential_id, user_id, user_id, user_id, credential_id)),
            *self._changed(user_id, "key_removed"),  # several statements: the write lock
        ], guard=True)
        return bool(results)
