"""The forward-auth endpoints ``/auth/nginx`` and ``/auth/forward``: a lean ASGI path.

Handlers translate: proxy headers → facts → ``policy.decide`` → a response in the
proxy's dialect. With a valid 2FA cookie the answer needs neither storage nor network:
the cookie names the user, its signature check is cached, the user's generation is cached.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from sidecar import policy
from sidecar.context import Sidecar, scope_headers
from sidecar.crypto import SecretUnreadable
from sidecar.errors import BadForwardedRequest, StorageUnavailable, UpstreamUnavailable
from sidecar.forwarded import Original, original_for_forward, original_for_nginx, wants_html
from sidecar.primary import Identity
from sidecar.service import Check

log = logging.getLogger("sidecar.authz")

Send = Callable[[dict[str, Any]], Awaitable[None]]
NO_STORE = [(b"cache-control", b"no-store, private"), (b"vary", b"Cookie, Authorization")]
NGINX = "nginx"
FORWARD = "forward"


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                  body: bytes = b"") -> None:
    headers = headers + NO_STORE + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def json_error(send: Send, status: int, error: str, detail: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error; its code also travels in ``X-Totp-Error`` for proxies that drop bodies."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-totp-error", error.encode())]
    await respond(send, status, headers + (extra or []), body)


def credential_kind(authorization: str) -> str:
    scheme = authorization.split(" ", 1)[0].lower()
    return scheme if scheme in ("basic", "bearer") else "session"


def identity_headers(identity: Identity) -> list[tuple[bytes, bytes]]:
    out = [(b"remote-user", identity.user.encode("utf-8"))]
    if identity.email:
        out.append((b"remote-email", identity.email.encode("utf-8")))
    if identity.name:
        out.append((b"remote-name", identity.name.encode("utf-8")))
    if identity.groups:
        out.append((b"remote-groups", ",".join(identity.groups).encode("utf-8")))
    return out


class ForwardAuth:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sc = sidecar
        self.prefix = sidecar.config.prefix
        self.otp_header = sidecar.config.api.otp_header.lower()
        self._bursts: dict[tuple[str, str], float] = {}  # (credential fingerprint, code) → until

    async def __call__(self, scope: dict[str, Any], send: Send, flavour: str) -> None:
        sc = self.sc
        headers = scope_headers(scope)
        if not sc.trusted.trusted(sc.peer(scope)):
            log.warning("forward-auth call from untrusted peer %s refused", sc.peer(scope))
            sc.metrics.decisions["untrusted_peer"] += 1
            await json_error(send, 403, "untrusted_peer",
                             "this address is not in server.trusted_proxies")
            return
        try:
            original = (original_for_nginx if flavour == NGINX else original_for_forward)(headers)
        except BadForwardedRequest as exc:
            log.warning("bad forward-auth request: %s", exc)
            sc.metrics.decisions["bad_request"] += 1
            await json_error(send, 400, "bad_request", str(exc))
            return
        try:
            await self._decide(scope, headers, original, send, flavour)
        except (StorageUnavailable, UpstreamUnavailable, SecretUnreadable) as exc:
            log.error("forward-auth cannot decide: %s", exc)
            sc.metrics.decisions["unavailable"] += 1
            await json_error(send, 503, "unavailable", "the 2FA service cannot decide right now")

    async def _decide(self, scope: dict[str, Any], headers: dict[str, str], original: Original,
                      send: Send, flavour: str) -> None:
        sc = self.sc
        cred = sc.credential(headers)
        identity: Identity | None = None
        verified = False
        refresh: str | None = None
        item = await sc.verified_pass(headers, cred) if cred.present else None
        if item is not None:
            identity = Identity(item.user, item.email, item.name, item.groups)
            if sc.config.primary.resolver == "header":
                current = await sc.identity(headers, cred, trusted=True)
                if current is None or current.user != item.user:
                    identity, item = current, None
            verified = item is not None
            refresh = sc.refreshed(item) if item is not None else None
        if not verified:
            identity = await sc.identity(headers, cred, trusted=True)
        user = identity.user if identity else None
        level = policy.level_for(sc.config.rules, sc.config.default_level, original.host,
                                 original.path, original.method, user, own_prefix=self.prefix,
                                 groups=identity.groups if identity else ())
        enrolled = verified
        if user is not None and not verified and level in ("optional", "required"):
            enrolled = (await sc.service.cached_state(user)).enrolled
        outcome = policy.decide(policy.Facts(
            level, user, enrolled, verified, credential_kind(cred.authorization),
            sc.config.api.bearer == "pass"))
        if outcome is policy.Outcome.OTP and user is not None:
            if not await self._api_code(scope, headers, user, cred.key, send):
                return
            outcome = policy.Outcome.ALLOW
        sc.metrics.decisions[outcome.value] += 1
        await self._answer(outcome, identity, original, headers, send, flavour, refresh)

    async def _api_code(self, scope: dict[str, Any], headers: dict[str, str], user: str,
                        credential_key: str, send: Send) -> bool:
        """Whether an API client's X-OTP code lets it pass; a 401 has been sent when not."""
        sc = self.sc
        required = [(b"x-otp", b"required; app")]
        code = headers.get(self.otp_header, "").strip()
        if not code:
            sc.metrics.decisions["otp_required"] += 1
            await json_error(send, 401, "otp_required",
                             f"this account uses two-factor authentication: send a current code "
                             f"in the {sc.config.api.otp_header} header", required)
            return False
        now = sc.clock()
        burst = (sc.fingerprint_of(credential_key), code)
        until = self._bursts.get(burst)
        if until is not None and now < until:
            return True
        result = await sc.service.check(user, code, sc.client_address(scope, headers),
                                        allow_recovery=False)
        if result.check is Check.OK:
            if sc.config.api.burst_seconds:
                if len(self._bursts) > 10_000:
                    self._bursts = {k: v for k, v in self._bursts.items() if v > now}
                self._bursts[burst] = now + sc.config.api.burst_seconds
            return True
        sc.metrics.decisions["otp_invalid"] += 1
        detail = ("too many failed codes; try again later" if result.check is Check.LOCKED
                  else "the code is not valid (wrong, expired or already used)")
        await json_error(send, 401, "otp_invalid", detail, required)
        return False

    async def _answer(self, outcome: policy.Outcome, identity: Identity | None,
                      original: Original, headers: dict[str, str], send: Send, flavour: str,
                      refresh: str | None) -> None:
        sc = self.sc
        if outcome is policy.Outcome.ALLOW:
            out = identity_headers(identity) if identity else []
            if refresh:
                out.append((b"set-cookie",
                            sc.set_cookie(refresh, sc.secure(original.scheme)).encode()))
            await respond(send, 200, out)
            return
        if outcome is policy.Outcome.DENY:
            await json_error(send, 403, "forbidden", "access to this resource is denied")
            return
        challenge = outcome is policy.Outcome.CHALLENGE
        page = "challenge" if challenge else "enroll"
        error = "2fa_required" if challenge else "2fa_enrollment_required"
        if wants_html(headers.get("accept", "")):
            location = (f"{original.scheme}://{original.host}{self.prefix}/{page}"
                        f"?rd={quote(original.url, safe='')}").encode()
            if flavour == NGINX:
                await json_error(send, 401, error, f"open {self.prefix}/{page} in a browser",
                                 [(b"location", location)])
            else:
                await respond(send, 302, [(b"location", location)])
            return
        if challenge:
            await json_error(send, 401, error,
                             f"open {self.prefix}/challenge in a browser to enter a code")
        else:
            await json_error(send, 401, error,
                             f"two-factor authentication must be set up at {self.prefix}/settings")
