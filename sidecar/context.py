"""The parts one running sidecar shares between its forward-auth endpoints and its pages."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any
from collections.abc import Callable

from sidecar import cookies
from sidecar.config import Config
from sidecar.errors import StorageUnavailable
from sidecar.cookies import Pass, PassCodec
from sidecar.forwarded import TrustedProxies
from sidecar import reset
from sidecar.devices import Devices
from sidecar.metrics import Metrics
from sidecar.notify import Notifier
from sidecar.primary import Credential, Identity, Resolver, credential, make_resolver, parse_cookies
from sidecar.service import TwoFactor
from sidecar.storage import Storage, make_storage

log = logging.getLogger("sidecar")
REFRESH_AFTER = 60  # seconds between idle-timeout refreshes of a 2FA cookie


def scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """Request headers as a dict of lower-case names (first occurrence wins)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


class Sidecar:
    def __init__(self, config: Config, storage: Storage | None = None,
                 resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.storage: Storage = storage or make_storage(config)
        self.resolver: Resolver = resolver or make_resolver(config)
        self.metrics = Metrics()
        self.notifier = Notifier(config.notify, config.totp.issuer, contact=self.storage.contact)
        self.service = TwoFactor(config, self.storage, clock, on_event=self.on_event)
        self.codec = PassCodec(config.signing_keys)
        self.trusted = TrustedProxies(config.server.trusted_proxies)
        remember = config.remember_device
        self.devices = (Devices(self.storage, config.signing_keys, remember.max_days)
                        if remember.enabled else None)
        self.own_cookies = (config.cookie.name, remember.cookie_name, *reset.OWN_COOKIES)

    def on_event(self, event: str, user: str, detail: dict[str, Any]) -> None:
        self.metrics.event(event)
        self.notifier.notify(event, user, detail)

    # -- request facts ------------------------------------------------------------------
    def peer(self, scope: Mapping[str, Any]) -> str:
        client = scope.get("client")
        return str(client[0]) if client else ""

    def client_address(self, scope: Mapping[str, Any], headers: dict[str, str]) -> str:
        """The user's address: the proxy's last X-Forwarded-For hop when the peer is trusted."""
        peer = self.peer(scope)
        forwarded = headers.get("x-forwarded-for", "")
        if forwarded and self.trusted.trusted(peer):
            return forwarded.split(",")[-1].strip()[:64] or peer
        return peer

    def credential(self, headers: dict[str, str]) -> Credential:
        return credential(headers, self.own_cookies, self.config.primary.session_cookies)

    def fingerprint(self, cred: Credential) -> str:
        return self.fingerprint_of(cred.key)

    def fingerprint_of(self, key: str) -> str:
        return cookies.fingerprint(self.config.hash_key, key)

    async def identity(self, headers: dict[str, str], cred: Credential,
                       trusted: bool) -> Identity | None:
        return await self.resolver.resolve(headers, cred, trusted)

    # -- the 2FA cookie -----------------------------------------------------------------
    def read_pass(self, headers: dict[str, str], cred: Credential) -> Pass | None:
        """A fresh pass bound to this primary session, before the generation check."""
        value = parse_cookies(headers.get("cookie", "")).get(self.config.cookie.name)
        if not value:
            return None
        item = self.codec.loads(value)
        if item is None:
            return None
        settings = self.config.cookie
        if not cookies.pass_is_fresh(item, self.clock(), settings.max_age, settings.idle_timeout):
            return None
        if not hmac.compare_digest(item.fingerprint, self.fingerprint(cred)):
            return None
        return item

    async def verified_pass(self, headers: dict[str, str], cred: Credential) -> Pass | None:
        """The pass, when it is also of the user's current 2FA generation (cached state)."""
        item = self.read_pass(headers, cred)
        if item is None:
            return None
        try:
            state = await self.service.cached_state(item.user)
        except StorageUnavailable:
            # Fail static: a signed, fresh pass bound to this session keeps working while the
            # database is down; only revocation (which needs the database) waits for it.
            log.warning("storage unavailable: honouring a valid 2FA cookie without a generation check")
            return item
        if not state.enrolled or state.generation != item.generation:
            return None
        return item

    def pass_expiry(self, item: Pass) -> float:
        """When ``item`` stops being fresh, on the sidecar's clock."""
        settings = self.config.cookie
        end = item.issued_at + settings.max_age
        if settings.idle_timeout:
            end = min(end, item.seen_at + settings.idle_timeout)
        return float(end)

    def new_pass(self, identity: Identity, cred: Credential, generation: int,
                 code_typed: bool = True) -> str:
        """A pass for this app session; ``code_typed`` False when a remembered device vouched."""
        now = int(self.clock())
        return self.codec.dumps(Pass(identity.user, self.fingerprint(cred), now, now, generation,
                                     identity.email, identity.name, identity.groups,
                                     now if code_typed else 0))

    def refreshed(self, item: Pass) -> str | None:
        """A re-signed cookie with a new last-seen time, when an idle timeout needs it."""
        now = int(self.clock())
        if not self.config.cookie.idle_timeout or now - item.seen_at < REFRESH_AFTER:
            return None
        return self.codec.dumps(Pass(item.user, item.fingerprint, item.issued_at, now,
                                     item.generation, item.email, item.name, item.groups,
                                     item.code_at))

    async def device_vouches(self, headers: dict[str, str], user: str) -> int | None:
        """The user's generation when a remembered-device cookie vouches for them, else None."""
        if self.devices is None:
            return None
        value = parse_cookies(headers.get("cookie", "")).get(self.config.remember_device.cookie_name)
        if not value:
            return None
        state = await self.service.cached_state(user)
        if state.enrolled and await self.devices.vouches(value, user, state.generation,
                                                         self.clock()):
            return state.generation
        return None

    def device_cookie(self, value: str, secure: bool) -> str:
        remember = self.config.remember_device
        parts = [f"{remember.cookie_name}={value}", "Path=/",
                 f"Max-Age={remember.max_days * 86400}", "HttpOnly", "SameSite=Lax"]
        return "; ".join(parts + (["Secure"] if secure else []))

    def set_cookie(self, value: str, secure: bool) -> str:
        settings = self.config.cookie
        parts = [f"{settings.name}={value}", "Path=/", f"Max-Age={settings.max_age}",
                 "HttpOnly", "SameSite=Lax"]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)

    def clear_cookie(self, secure: bool) -> str:
        parts = [f"{self.config.cookie.name}=", "Path=/", "Max-Age=0", "HttpOnly", "SameSite=Lax"]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)

    def secure(self, scheme: str) -> bool:
        mode = self.config.cookie.secure
        return mode == "always" or (mode == "auto" and scheme == "https")

    def csrf(self, user: str, cred: Credential) -> str:
        return cookies.csrf_token(self.config.signing_keys, user, self.fingerprint(cred))

    def csrf_ok(self, user: str, cred: Credential, token: str) -> bool:
        return cookies.csrf_valid(self.config.signing_keys, user, self.fingerprint(cred), token)
