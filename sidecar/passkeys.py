"""Security keys and passkeys (WebAuthn) as a second factor beside TOTP, over py_webauthn.

Every protocol check is py_webauthn's (``webauthn``): no CBOR or COSE is read here. What this
module adds is the state around it:

* **Relying party**: the RP ID is the host the page was asked for (as the one door read it,
  without the port) and the expected origin is the request's original ``scheme://host[:port]``,
  so each app served by the sidecar has keys of its own.
* **Challenges** are random, stored server-side for the app session (its keyed fingerprint)
  that asked for them, expire after ``CHALLENGE_SECONDS`` and are used once: the challenge an
  answer names is taken (one conditional DELETE) before anything else is believed.
* **Sign counter**: a signed counter that does not grow (while either is above 0) is refused
  and audited (``key_counter_error``): a cloned key. Counters of 0 for both are allowed.
* **Ownership**: a sign-in names allowed credentials of the current user only, and the answer
  must come from one of them; a credential id is registered once, for one user.
* **Throttling**: a key answer is reserved as a failed attempt before it is verified, as a code
  is (``sidecar.throttle``).
* **First factor**: the first key of a user without 2FA turns 2FA on and issues the recovery
  codes (through ``Accounts``); removing the last factor turns 2FA off (``Accounts.disable``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.accounts import Accounts
from sidecar.core import recovery
from sidecar.storage import SIGNIN, Credential, Storage

if TYPE_CHECKING:  # py_webauthn is imported at the first ceremony: the hot path never needs it
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

log = logging.getLogger("sidecar")
CHALLENGE_SECONDS = 300
TIMEOUT_MS = 120_000
MAX_NAME = 64
REGISTER, SIGN_IN = "register", "signin"


def _bad_input() -> tuple[type[Exception], ...]:
    """What a malformed or refused answer raises."""
    from webauthn.helpers.exceptions import WebAuthnException

    return WebAuthnException, ValueError, TypeError, KeyError, AttributeError


class KeyCheck(enum.Enum):
    """How a key answer ended (the metrics label of ``totp_sidecar_key_checks``)."""

    OK = "ok"
    INVALID = "invalid"  # malformed, wrong signature, origin, RP ID or user presence
    NO_CHALLENGE = "no_challenge"  # unknown, used, expired or another session's challenge
    FOREIGN = "foreign"  # not a key of this user (unknown, or another user's)
    COUNTER = "counter"  # the signature counter went backwards: a cloned key
    DUPLICATE = "duplicate"  # registration of a credential id that exists
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class KeyResult:
    check: KeyCheck
    name: str = ""  # the key's name, on success
    locked_until: int = 0
    failures: int = 0
    codes: tuple[str, ...] = ()  # recovery codes, when a first key turned 2FA on
    generation: int = 0


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who asks: the app's host (RP ID), its origin, and the name shown by the browser."""

    rp_id: str
    origin: str
    name: str


def relying_party(scheme: str, host: str, name: str) -> RelyingParty:
    """The RP of a page read at ``scheme://host`` (``host`` canonical, maybe with a port)."""
    bare = host[1:host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return RelyingParty(bare, f"{scheme}://{host}", name)


def usable_here(rp: RelyingParty) -> bool:
    """Whether browsers take keys for this RP ID: a host name, never an IP address (WebAuthn
    wants a domain; on ``http://127.0.0.1`` the browser refuses with an unhelpful error)."""
    try:
        ipaddress.ip_address(rp.rp_id)
    except ValueError:
        return bool(rp.rp_id)
    return False


def clean_name(text: str, fallback: str) -> str:
    """A key's name as given: printable, single-spaced, at most ``MAX_NAME`` characters."""
    name = " ".join("".join(ch for ch in text if ch.isprintable()).split())[:MAX_NAME]
    return name or fallback


class Passkeys:
    def __init__(self, accounts: Accounts, storage: Storage) -> None:
        self.accounts = accounts
        self.storage = storage
        self.config = accounts.config

    def _now(self) -> int:
        return int(self.accounts.clock())

    def user_handle(self, user_id: str) -> bytes:
        """The user handle given to authenticators: keyed, so it does not reveal the user id."""
        return hmac.new(self.config.hash_key.encode(), b"webauthn-user\x00" + user_id.encode(),
                        hashlib.sha256).digest()

    async def _challenge(self, user_id: str, session: str, purpose: str) -> bytes:
        from webauthn.helpers import bytes_to_base64url

        challenge = secrets.token_bytes(32)
        now = self._now()
        await self.storage.add_challenge(bytes_to_base64url(challenge), user_id, session, purpose,
                                         now + CHALLENGE_SECONDS, now)
        return challenge

    @staticmethod
    def _descriptors(keys: list[Credential]) -> list[PublicKeyCredentialDescriptor]:
        from webauthn import base64url_to_bytes
        from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

        known = {t.value for t in AuthenticatorTransport}
        return [PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(k.credential_id),
            transports=[AuthenticatorTransport(t) for t in k.transports if t in known] or None)
            for k in keys]

    # -- registration -----------------------------------------------------------------------
    async def registration_options(self, user_id: str, account: str, session: str,
                                   rp: RelyingParty) -> str:
        """The options for ``navigator.credentials.create`` (JSON), with a fresh challenge."""
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers.structs import (
            AttestationConveyancePreference,
            AuthenticatorSelectionCriteria,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        options = generate_registration_options(
            rp_id=rp.rp_id, rp_name=rp.name, user_id=self.user_handle(user_id),
            user_name=account, user_display_name=account,
            challenge=await self._challenge(user_id, session, REGISTER), timeout=TIMEOUT_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED),
            exclude_credentials=self._descriptors(await self.storage.credentials(user_id)))
        return options_to_json(options)

    async def register(self, user_id: str, session: str, answer: str, name: str,
                       rp: RelyingParty, client: str, expect: int = 0) -> KeyResult:
        """Verify a new key's answer to this session's challenge and keep the key.

        The first factor of a user without 2FA turns it on: the result carries the new
        recovery codes (shown once) and the new generation.
        """
        from webauthn import verify_registration_response
        from webauthn.helpers import (
            bytes_to_base64url,
            parse_client_data_json,
            parse_registration_credential_json,
        )

        now = self._now()
        try:
            parsed = parse_registration_credential_json(answer)
            challenge = parse_client_data_json(parsed.response.client_data_json).challenge
        except _bad_input():
            return KeyResult(KeyCheck.INVALID)
        if not await self.storage.use_challenge(bytes_to_base64url(challenge), user_id, session,
                                                REGISTER, now):
            return KeyResult(KeyCheck.NO_CHALLENGE)
        try:
            verified = verify_registration_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=rp.rp_id,
                expected_origin=rp.origin, require_user_verification=False)
        except _bad_input() as exc:
            log.warning("security key registration refused for %s: %s", user_id, exc)
            return KeyResult(KeyCheck.INVALID)
        first = expect == 0  # the state the page decided on; storage checks it still holds
        codes = recovery.new_codes() if first else []
        key = Credential(bytes_to_base64url(verified.credential_id), user_id,
                         bytes_to_base64url(verified.credential_public_key), verified.sign_count,
                         clean_name(name, "Security key"),
                         tuple(t.value for t in parsed.response.transports or ()), now,
                         aaguid=verified.aaguid)
        generation = await self.storage.add_credential(key, self.accounts.hashes(user_id, codes),
                                                       now, expect)
        if generation is None:  # the id exists, or 2FA changed since the page was read
            self.accounts.forget(user_id)
            if await self.storage.credential(key.credential_id) is not None:
                return KeyResult(KeyCheck.DUPLICATE)
            return KeyResult(KeyCheck.NO_CHALLENGE)
        await self.accounts.audit("key_added", user_id, client, key=key.name)
        if first:
            await self.accounts.enabled(user_id, client, method="key")
        return KeyResult(KeyCheck.OK, key.name, codes=tuple(codes), generation=generation)

    # -- signing in -----------------------------------------------------------------------------
    async def authentication_options(self, user_id: str, session: str,
                                     rp: RelyingParty) -> str | None:
        """The options for ``navigator.credentials.get`` (JSON); None when the user has no key."""
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        keys = await self.storage.credentials(user_id)
        if not keys:
            return None
        options = generate_authentication_options(
            rp_id=rp.rp_id, challenge=await self._challenge(user_id, session, SIGN_IN),
            timeout=TIMEOUT_MS, allow_credentials=self._descriptors(keys),
            user_verification=UserVerificationRequirement.PREFERRED)
        return options_to_json(options)

    async def authenticate(self, user_id: str, session: str, answer: str, rp: RelyingParty,
                           client: str) -> KeyResult:
        """Accept a key's signed answer to this session's sign-in challenge, once."""
        now = self._now()
        throttle = self.accounts.throttle
        attempt = await throttle.reserve(user_id, client, now)
        if attempt.failure_id is None:
            return KeyResult(KeyCheck.LOCKED,
                             locked_until=throttle.refused_until(attempt, SIGNIN, now))
        check, key = await self._verify(user_id, session, answer, rp, now, client)
        if check is not KeyCheck.OK or key is None:
            until = await throttle.failed(user_id, client, now, attempt, SIGNIN)
            if until:
                return KeyResult(KeyCheck.LOCKED, locked_until=until, failures=attempt.by_user)
            return KeyResult(check, failures=attempt.by_user)
        await throttle.passed(user_id, SIGNIN, attempt)
        await self.accounts.audit("key_used", user_id, client, key=key.name)
        return KeyResult(KeyCheck.OK, key.name)

    async def _verify(self, user_id: str, session: str, answer: str, rp: RelyingParty, now: int,
                      client: str) -> tuple[KeyCheck, Credential | None]:
        from webauthn import base64url_to_bytes, verify_authentication_response
        from webauthn.helpers import (
            bytes_to_base64url,
            parse_authentication_credential_json,
            parse_client_data_json,
        )

        try:
            parsed = parse_authentication_credential_json(answer)
            challenge = parse_client_data_json(parsed.response.client_data_json).challenge
        except _bad_input():
            return KeyCheck.INVALID, None
        if not await self.storage.use_challenge(bytes_to_base64url(challenge), user_id, session,
                                                SIGN_IN, now):
            return KeyCheck.NO_CHALLENGE, None
        key = await self.storage.credential(bytes_to_base64url(parsed.raw_id))
        if key is None or not hmac.compare_digest(key.user_id.encode(), user_id.encode()):
            return KeyCheck.FOREIGN, None
        try:
            verified = verify_authentication_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=rp.rp_id,
                expected_origin=rp.origin, credential_public_key=base64url_to_bytes(key.public_key),
                credential_current_sign_count=0,  # compared below, so a decrease is audited
                require_user_verification=False)
        except _bad_input() as exc:
            log.warning("security key answer refused for %s: %s", user_id, exc)
            return KeyCheck.INVALID, None
        count = verified.new_sign_count
        if (count or key.sign_count) and count <= key.sign_count:
            await self.accounts.audit("key_counter_error", user_id, client, level=logging.WARNING,
                                      key=key.name, stored=key.sign_count, received=count)
            return KeyCheck.COUNTER, None
        if not await self.storage.use_credential(user_id, key.credential_id, key.sign_count,
                                                 count, now):
            return KeyCheck.COUNTER, None  # a concurrent answer moved the counter first
        return KeyCheck.OK, key

    # -- managing keys --------------------------------------------------------------------------
    async def keys(self, user_id: str) -> list[Credential]:
        return await self.storage.credentials(user_id)

    async def rename(self, user_id: str, credential_id: str, name: str) -> bool:
        return await self.storage.rename_credential(user_id, credential_id,
                                                    clean_name(name, "Security key"))

    async def is_last_factor(self, user_id: str) -> bool:
        """Whether the user's only factor is one key (removing it turns 2FA off)."""
        user = await self.storage.get_user(user_id)
        return user.secret is None and len(await self.storage.credentials(user_id)) <= 1

    async def remove(self, user_id: str, credential_id: str, client: str,
                     confirmed: bool = False) -> bool:
        """Remove a key of the user. Only a ``confirmed`` removal (a recovery code or a key's
        answer checked first) may take the last factor, and that turns 2FA off
        (``Accounts.disable``); an unconfirmed one removes the key only while another factor
        remains, checked by storage in the delete itself."""
        key = await self.storage.credential(credential_id)
        if key is None or key.user_id != user_id:
            return False
        if confirmed and await self.is_last_factor(user_id):
            await self.accounts.disable(user_id, client=client)
        elif not await self.storage.remove_credential(user_id, credential_id,
                                                      keep_a_factor=not confirmed):
            return False
        await self.accounts.audit("key_removed", user_id, client, key=key.name)
        return True
