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
from sidecar.errors import BadForwardedRequest, StorageUnavailable, UpstreamUnavailable
from sidecar.forwarded import Original, original_for_forward, original_for_nginx, wants_html
from sidecar.primary import Identity

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
    body = json.dumps({"error": error, "detail": detail}).encode()
    await respond(send, status, [(b"content-type", b"application/json")] + (extra or []), body)


def identity_headers(identity: Identity) -> list[tuple[bytes, bytes]]:
    out = [(b"remote-user", identity.user.encode("utf-8"))]
    if identity.email:
        out.append((b"remote-email", identity.email.encode("utf-8")))
    if identity.name:
        out.append((b"remote-name", identity.name.encode("utf-8")))
    return out


class ForwardAuth:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sc = sidecar
        self.prefix = sidecar.config.prefix

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
            await self._decide(headers, original, send, flavour)
        except (StorageUnavailable, UpstreamUnavailable) as exc:
            log.error("forward-auth cannot decide: %s", exc)
            sc.metrics.decisions["unavailable"] += 1
            await json_error(send, 503, "unavailable", "the 2FA service cannot decide right now")

    async def _decide(self, headers: dict[str, str], original: Original, send: Send,
                      flavour: str) -> None:
        sc = self.sc
        cred = sc.credential(headers)
        identity: Identity | None = None
        verified = False
        refresh: str | None = None
        item = await sc.verified_pass(headers, cred) if cred.present else None
        if item is not None:
            identity = Identity(item.user, item.email, item.name)
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
                                 original.path, original.method, user, own_prefix=self.prefix)
        enrolled = verified
        if user is not None and not verified and level in ("optional", "required"):
            enrolled = (await sc.service.cached_state(user)).enrolled
        outcome = policy.decide(policy.Facts(level, user, enrolled, verified))
        sc.metrics.decisions[outcome.value] += 1
        await self._answer(outcome, identity, original, headers, send, flavour, refresh)

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
        page = "challenge" if outcome is policy.Outcome.CHALLENGE else "enroll"
        if wants_html(headers.get("accept", "")):
            location = (f"{original.scheme}://{original.host}{self.prefix}/{page}"
                        f"?rd={quote(original.url, safe='')}").encode()
            if flavour == NGINX:
                await json_error(send, 401, "2fa_required", "two-factor authentication required",
                                 [(b"location", location)])
            else:
                await respond(send, 302, [(b"location", location)])
            return
        if outcome is policy.Outcome.CHALLENGE:
            await json_error(send, 401, "2fa_required",
                             f"open {self.prefix}/challenge in a browser to enter a code")
        else:
            await json_error(send, 401, "2fa_enrollment_required",
                             f"two-factor authentication must be set up at {self.prefix}/settings")
