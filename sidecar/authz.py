"""The forward-auth endpoints ``/auth/nginx`` and ``/auth/forward``: a lean ASGI path.

Handlers translate: proxy headers → facts → ``policy.decide`` → a response in the
proxy's dialect. With a valid 2FA cookie the answer needs neither storage nor network:
the cookie names the user, its signature check is cached, the user's generation is cached.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from sidecar import logs, policy
from sidecar.context import Sidecar, scope_headers
from sidecar.crypto import SecretUnreadable
from sidecar.errors import BadForwardedRequest, StorageUnavailable, UpstreamUnavailable
from sidecar.forwarded import Original, original_for_forward, original_for_nginx, wants_html
from sidecar.primary import Identity
from sidecar.service import Check

log = logging.getLogger("sidecar.authz")

Send = Callable[[dict[str, Any]], Awaitable[None]]
NO_STORE = [(b"cache-control", b"no-store, private"), (b"vary", b"Cookie, Authorization")]
ANSWER_CACHE_SECONDS = 1.0
ANSWER_CACHE_LIMIT = 4096  # a second of repeated calls; each key holds all the headers
NGINX = "nginx"
FORWARD = "forward"


@dataclass(frozen=True, slots=True)
class Answer:
    """A forward-auth response: status, headers, body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""

    async def send(self, send: Send) -> None:
        headers = [*self.headers, *NO_STORE, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_error(status: int, error: str, detail: str,
               extra: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    """A JSON error; its code also travels in ``X-Totp-Error`` for proxies that drop bodies."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    return Answer(status, ((b"content-type", b"application/json"),
                           (b"x-totp-error", error.encode()), *extra), body)


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
    """The forward-auth endpoints; answers of the verified hot path are cached for a second.

    The cache key is every header of the proxy's call plus the peer, so any difference
    (another cookie, another URL, another Accept) is a miss. A hit is still checked against
    the user's current 2FA generation, so a local disable or reset takes effect at once.
    """

    def __init__(self, sidecar: Sidecar) -> None:
        self.sc = sidecar
        self.prefix = sidecar.config.prefix
        self.otp_header = sidecar.config.api.otp_header.lower()
        self._bursts: dict[tuple[str, str], float] = {}  # (credential fingerprint, code) → until
        # key → (monotonic expiry, pass expiry on the sidecar clock, user, generation, answer)
        self._answers: dict[tuple[Any, ...], tuple[float, float, str, int, Answer]] = {}

    async def __call__(self, scope: dict[str, Any], send: Send, flavour: str) -> None:
        started = time.perf_counter()
        client = scope.get("client")
        key = (flavour, client[0] if client else None, tuple(scope["headers"]))
        hit = self._answers.get(key)
        if hit is not None and hit[0] > time.monotonic() and hit[1] > self.sc.clock() and \
                self.sc.service.generation_is(hit[2], hit[3]):
            self.sc.metrics.decided("allow", started)
            await hit[4].send(send)
            return
        outcome, answer, cacheable = await self._answer_for(scope, flavour)
        if cacheable is not None:
            if len(self._answers) >= ANSWER_CACHE_LIMIT:
                now = time.monotonic()
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
                if len(self._answers) >= ANSWER_CACHE_LIMIT:
                    self._answers.clear()
            self._answers[key] = (time.monotonic() + ANSWER_CACHE_SECONDS, *cacheable, answer)
        self.sc.metrics.decided(outcome, started)
        await answer.send(send)

    async def _answer_for(self, scope: dict[str, Any], flavour: str
                          ) -> tuple[str, Answer, tuple[float, str, int] | None]:
        """(outcome, answer, (pass expiry, user, generation) when the answer may be cached)."""
        sc = self.sc
        headers = scope_headers(scope)
        logs.request_id.set(logs.new_request_id(headers.get("x-request-id", "")))
        if not sc.trusted.trusted(sc.peer(scope)):
            log.warning("forward-auth call from untrusted peer %s refused", sc.peer(scope))
            return "untrusted_peer", json_error(
                403, "untrusted_peer", "this address is not in server.trusted_proxies"), None
        try:
            original = (original_for_nginx if flavour == NGINX else original_for_forward)(headers)
        except BadForwardedRequest as exc:
            log.warning("bad forward-auth request: %s", exc)
            return "bad_request", json_error(400, "bad_request", str(exc)), None
        try:
            return await self._decide(scope, headers, original, flavour)
        except (StorageUnavailable, UpstreamUnavailable, SecretUnreadable) as exc:
            log.error("forward-auth cannot decide: %s", exc)
            return "unavailable", json_error(
                503, "unavailable", "the 2FA service cannot decide right now"), None

    async def _decide(self, scope: dict[str, Any], headers: dict[str, str], original: Original,
                      flavour: str) -> tuple[str, Answer, tuple[float, str, int] | None]:
        sc = self.sc
        cred = sc.credential(headers)
        identity: Identity | None = None
        refresh: str | None = None
        item = await sc.verified_pass(headers, cred) if cred.present else None
        if item is not None:
            identity = Identity(item.user, item.email, item.name, item.groups)
            if sc.config.primary.resolver == "header":
                current = await sc.identity(headers, cred, trusted=True)
                if current is None or current.user != item.user:
                    identity, item = current, None
            refresh = sc.refreshed(item) if item is not None else None
        verified = item is not None
        code_at = item.code_at if item is not None else 0
        if not verified:
            identity = await sc.identity(headers, cred, trusted=True)
        user = identity.user if identity else None
        if not verified and identity is not None and user is not None:
            generation = await sc.device_vouches(headers, user)
            if generation is not None:  # a remembered device: the pass it earns goes along
                verified = True
                refresh = sc.new_pass(identity, cred, generation, code_typed=False)
        rule = policy.rule_for(sc.config.rules, sc.config.default_level, original.host,
                               original.path, original.method, user, own_prefix=self.prefix,
                               groups=identity.groups if identity else ())
        level = rule.level
        recent = not verified or policy.code_is_recent(rule, code_at, sc.clock())
        enrolled = verified
        if user is not None and not verified and level in ("optional", "required"):
            enrolled = (await sc.service.cached_state(user)).enrolled
        outcome = policy.decide(policy.Facts(
            level, user, enrolled, verified, credential_kind(cred.authorization),
            sc.config.api.bearer == "pass", recent))
        if outcome is policy.Outcome.OTP and user is not None:
            refused = await self._api_code(scope, headers, user, cred.key)
            if refused is not None:
                return refused
            outcome = policy.Outcome.ALLOW
        answer = self._answer(outcome, identity, original, headers, flavour, refresh)
        cacheable = None
        if item is not None and outcome is policy.Outcome.ALLOW and refresh is None:
            expiry = sc.pass_expiry(item)
            if rule.step_up:
                expiry = min(expiry, item.code_at + rule.step_up)
            cacheable = (expiry, item.user, item.generation)
        return outcome.value, answer, cacheable

    async def _api_code(self, scope: dict[str, Any], headers: dict[str, str], user: str,
                        credential_key: str) -> tuple[str, Answer, None] | None:
        """None when an API client's X-OTP code lets it pass, else the refusal."""
        sc = self.sc
        required = ((b"x-otp", b"required; app"),)
        code = headers.get(self.otp_header, "").strip()
        if not code:
            return "otp_required", json_error(
                401, "otp_required", "this account uses two-factor authentication: send a "
                f"current code in the {sc.config.api.otp_header} header", required), None
        now = sc.clock()
        burst = (sc.fingerprint_of(credential_key), code)
        until = self._bursts.get(burst)
        if until is not None and now < until:
            return None
        result = await sc.service.check(user, code, sc.client_address(scope, headers),
                                        allow_recovery=False)
        if result.check is Check.OK:
            if sc.config.api.burst_seconds:
                if len(self._bursts) > 10_000:
                    self._bursts = {k: v for k, v in self._bursts.items() if v > now}
                self._bursts[burst] = now + sc.config.api.burst_seconds
            return None
        detail = ("too many failed codes; try again later" if result.check is Check.LOCKED
                  else "the code is not valid (wrong, expired or already used)")
        return "otp_invalid", json_error(401, "otp_invalid", detail, required), None

    def _answer(self, outcome: policy.Outcome, identity: Identity | None, original: Original,
                headers: dict[str, str], flavour: str, refresh: str | None) -> Answer:
        sc = self.sc
        if outcome is policy.Outcome.ALLOW:
            out = identity_headers(identity) if identity else []
            if refresh:
                out.append((b"set-cookie",
                            sc.set_cookie(refresh, sc.secure(original.scheme)).encode()))
            return Answer(200, tuple(out))
        if outcome is policy.Outcome.DENY:
            return json_error(403, "forbidden", "access to this resource is denied")
        challenge = outcome in (policy.Outcome.CHALLENGE, policy.Outcome.STEP_UP)
        page = "challenge" if challenge else "enroll"
        error = {policy.Outcome.CHALLENGE: "2fa_required",
                 policy.Outcome.STEP_UP: "step_up_required"}.get(outcome, "2fa_enrollment_required")
        if wants_html(headers.get("accept", "")):
            why = "&why=step_up" if outcome is policy.Outcome.STEP_UP else ""
            location = (f"{original.scheme}://{original.host}{self.prefix}/{page}"
                        f"?rd={quote(original.url, safe='')}{why}").encode()
            if flavour == NGINX:
                return json_error(401, error, f"open {self.prefix}/{page} in a browser",
                                  ((b"location", location),))
            return Answer(302, ((b"location", location),))
        if challenge:
            return json_error(401, error,
                              f"open {self.prefix}/challenge in a browser to enter a code")
        return json_error(401, error,
                          f"two-factor authentication must be set up at {self.prefix}/settings")
