"""The forward-auth endpoints ``/auth/nginx`` and ``/auth/forward``: a lean ASGI path.

Handlers translate: the one reading of the request (``sidecar.core.request``) and the original
method/host/path the proxy forwarded → ``Decision.evaluate`` (which asks ``policy.decide``) →
a response in the proxy's dialect. With warm caches the answer needs neither storage nor
network: the app's who-am-I answer is cached per credential, the 2FA cookie's signature check
and the user's generation are cached.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import marshal
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sidecar import logs
from sidecar.accounts import Check
from sidecar.bursts import Bursts
from sidecar.core import policy
from sidecar.core.forwarded import Original, original_for_forward, original_for_nginx, wants_html
from sidecar.core.logins import Tokens, session_tokens
from sidecar.core.policy import Target
from sidecar.core.request import SAFE_METHODS, Reading
from sidecar.errors import Ambiguous, BadForwardedRequest, StorageUnavailable, Unavailable
from sidecar.primary import Identity
from sidecar.web.cookies import Cookies
from sidecar.wiring import Parts

log = logging.getLogger("sidecar.authz")

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
NO_STORE = [(b"cache-control", b"no-store, private"), (b"vary", b"Cookie, Authorization")]
AMBIGUOUS = "ambiguous_request"
SWEEP_SECONDS = 1.0  # how often every kept answer is looked at (ended ones dropped)


class Dialect(enum.Enum):
    """How a proxy asks, and what it understands back."""

    NGINX = "nginx"  # auth_request: the original URL in X-Original-*; a browser gets 401 + Location
    FORWARD = "forward"  # Traefik, Caddy: X-Forwarded-*; a browser gets 302


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


@dataclass(frozen=True, slots=True)
class Cached:
    """An allow answer kept for reuse: until (monotonic), the pass's end (sidecar clock), and
    the user and generation it was decided for ("" for an anonymous request: no pass, no
    user state; reused only while the change feed is fresh, like every answer)."""

    until: float
    pass_end: float
    user: str
    generation: int
    answer: Answer
    tokens: Tokens  # the session it was decided for (``sidecar.core.logins``)
    since: int  # the unsafe requests marked when it was worked out (``Logins.seq``)


def digest(value: Any) -> bytes:
    """A collision-resistant key for ``value`` (bytes, str, tuples, lists of them): marshal is
    reversible, so two different values never serialize alike."""
    return hashlib.blake2b(marshal.dumps(value), digest_size=32).digest()


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
    """The forward-auth endpoints; answers of the verified hot path are kept for reuse.

    The cache key is a digest of every header of the proxy's call plus the peer, so any
    difference (another cookie, another URL, another Accept) is a miss. An answer lives at
    most ``cache.answer_seconds`` and never outlives the app's who-am-I answer, the 2FA
    cookie (expiry, next idle-timeout refresh) or the step-up window it rests on. A hit is
    still checked against the user's current 2FA generation as the change feed keeps it (and
    served only while the feed is fresh), so a disable or reset on any instance ends it; a
    request with an unsafe method marks its session (``Logins``): no answer of that session
    worked out before is served or kept any more.
    """

    def __init__(self, parts: Parts, cookies: Cookies,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.parts = parts
        self.monotonic = monotonic  # the answer cache's clock
        self.cookies = cookies
        self.prefix = parts.config.prefix
        self.otp_header = parts.config.api.otp_header.lower()
        self.bursts = Bursts(parts.storage, parts.config.hash_key)
        self.answer_limit = parts.config.cache.answers
        self.answer_seconds = float(parts.config.cache.answer_seconds)
        self._answers: dict[bytes, Cached] = {}  # oldest stored first
        self.logins = parts.decision.logins
        self._swept = monotonic()  # when ended answers were last dropped wherever they were

    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        return {"answers": (len(self._answers), self.answer_limit)}

    async def __call__(self, scope: MutableMapping[str, Any], send: Send, dialect: Dialect) -> None:
        started = time.perf_counter()
        client = scope.get("client")
        key = digest((dialect.value, client[0] if client else None, scope["headers"]))
        hit = self._answers.get(key)
        if hit is not None:
            accounts = self.parts.accounts
            if hit.until > self.monotonic() and hit.pass_end > self.parts.clock() and (
                    accounts.generation_is(hit.user, hit.generation) if hit.user
                    else accounts.states.healthy()) and self.logins.keeps(hit.tokens, hit.since):
                self.parts.metrics.decided("allow", started)
                await hit.answer.send(send)
                return
            del self._answers[key]
        outcome, answer, cacheable = await self._answer_for(scope, dialect)
        if cacheable is not None and self.answer_limit and self.logins.keeps(cacheable.tokens,
                                                                              cacheable.since):
            self._keep(key, cacheable)
        self.parts.metrics.decided(outcome, started)
        await answer.send(send)

    def _keep(self, key: bytes, cached: Cached) -> None:
        answers = self._answers
        now = self.monotonic()
        if now - self._swept >= SWEEP_SECONDS:  # answers end at different times: look at all
            self._swept = now
            ended = [k for k, v in answers.items() if v.until <= now]
            for k in ended:
                del answers[k]
        while answers:  # the oldest first: drop what has ended, and what exceeds the limit
            first = next(iter(answers))
            if answers[first].until > now and len(answers) < self.answer_limit:
                break
            del answers[first]
        answers.pop(key, None)
        answers[key] = cached

    async def _answer_for(self, scope: MutableMapping[str, Any], dialect: Dialect
                          ) -> tuple[str, Answer, Cached | None]:
        """(outcome, answer, what to cache when the answer may be reused)."""
        parts = self.parts
        reading = parts.door.read(scope)
        logs.request_id.set(logs.new_request_id(reading.headers.text("x-request-id")))
        if not reading.trusted:
            log.warning("forward-auth call from untrusted peer %s refused", reading.peer)
            return "untrusted_peer", json_error(
                403, "untrusted_peer", "this address is not in server.trusted_proxies"), None
        try:
            forwarded = reading.headers.forwarded()
            original = (original_for_nginx if dialect is Dialect.NGINX else original_for_forward)(forwarded)
        except BadForwardedRequest as exc:
            log.warning("bad forward-auth request: %s", exc)
            return "bad_request", json_error(400, "bad_request", str(exc)), None
        try:
            return await self._decide(reading, original, dialect)
        except Ambiguous as exc:
            log.warning("ambiguous request refused: %s", exc.reason)
            return "ambiguous", json_error(401, AMBIGUOUS, exc.reason), None
        except Unavailable as exc:
            log.error("forward-auth cannot decide: %s", exc)
            if isinstance(exc, StorageUnavailable):
                self.parts.metrics.storage_error()
            return "unavailable", json_error(
                503, "unavailable", "the 2FA service cannot decide right now"), None

    async def _decide(self, reading: Reading, original: Original, dialect: Dialect
                      ) -> tuple[str, Answer, Cached | None]:
        parts = self.parts
        since = self.logins.seq  # an unsafe request of this session from now on: not kept
        target = Target(original.host, original.path, original.method)
        verdict = await parts.decision.evaluate(reading, target)
        outcome = verdict.outcome
        if outcome is policy.Outcome.OTP and verdict.user is not None:
            refused = await self._api_code(reading, verdict.user)
            if refused is not None:
                return refused
            outcome = policy.Outcome.ALLOW
        answer = self._answer(outcome, verdict.identity, original, reading, dialect,
                              verdict.new_pass)
        cacheable = None
        tokens = session_tokens(reading.session_key, reading.authorization)
        item = verdict.item
        if item is not None and outcome is policy.Outcome.ALLOW and verdict.new_pass is None \
                and original.method in SAFE_METHODS:  # an unsafe one must drop answers every time
            end = parts.passes.reusable_until(item)
            if verdict.rule.step_up:
                end = min(end, item.code_at + verdict.rule.step_up)
            until = min(self.monotonic() + self.answer_seconds, verdict.until)
            cacheable = Cached(until, end, item.user, item.generation, answer, tokens, since)
        elif verdict.identity is None and outcome is policy.Outcome.ALLOW \
                and original.method in SAFE_METHODS:  # nobody logged in: rests on no user state
            until = min(self.monotonic() + self.answer_seconds, verdict.until)
            cacheable = Cached(until, math.inf, "", 0, answer, tokens, since)
        return outcome.value, answer, cacheable

    async def _api_code(self, reading: Reading, user: str) -> tuple[str, Answer, None] | None:
        """None when an API client's X-OTP code lets it pass, else the refusal."""
        parts = self.parts
        required = ((b"x-otp", b"required; app"),)
        try:
            code = reading.headers.single(self.otp_header).strip()
        except Ambiguous:
            code = "repeated"  # never a valid code: counted as a failure below
        keys_only = ("this account signs in with a security key, which API calls cannot use: they "
                     f"need an authenticator-app code in the {parts.config.api.otp_header} header "
                     f"(set one up in {self.prefix}/settings) or a token")
        if not code:
            if (await parts.accounts.user(user)).secret is None:
                return "otp_required", json_error(401, "otp_required", keys_only, required), None
            return "otp_required", json_error(
                401, "otp_required", "this account uses two-factor authentication: send a "
                f"current code in the {parts.config.api.otp_header} header", required), None
        now = parts.clock()
        stored = await parts.accounts.user(user)
        if stored.locked_until > now:  # locked: nothing is compared, not even an open window
            return "otp_invalid", json_error(401, "otp_invalid", "too many failed codes; try "
                                             "again later", required), None
        state = await parts.accounts.cached_state(user)
        burst = self.bursts.key(reading.authorization, user, code, state.generation)
        if parts.config.api.burst_seconds and await self.bursts.passes(burst, now):
            return None
        if stored.secret is None:  # no code can be right: none compared
            return "otp_required", json_error(401, "otp_required", keys_only, required), None
        result = await parts.accounts.check(user, code, reading.client, allow_recovery=False)
        if result.check is Check.OK:
            if parts.config.api.burst_seconds:
                await self.bursts.open(burst, parts.config.api.burst_seconds, now)
            return None
        detail = ("too many failed codes; try again later" if result.check is Check.LOCKED
                  else "the code is not valid (wrong, expired or already used)")
        return "otp_invalid", json_error(401, "otp_invalid", detail, required), None

    def _answer(self, outcome: policy.Outcome, identity: Identity | None, original: Original,
                reading: Reading, dialect: Dialect, refresh: str | None) -> Answer:
        if outcome is policy.Outcome.ALLOW:
            out = identity_headers(identity) if identity else []
            if refresh:
                out.append((b"set-cookie", self.cookies.set_pass(refresh, original.scheme).encode()))
            return Answer(200, tuple(out))
        if outcome is policy.Outcome.DENY:
            return json_error(403, "forbidden", "access to this resource is denied")
        challenge = outcome in (policy.Outcome.CHALLENGE, policy.Outcome.STEP_UP)
        page = "challenge" if challenge else "enroll"
        error = {policy.Outcome.CHALLENGE: "2fa_required",
                 policy.Outcome.STEP_UP: "step_up_required"}.get(outcome, "2fa_enrollment_required")
        if wants_html(reading.accept):
            why = ""
            if outcome is policy.Outcome.STEP_UP:  # the method too, when a rule names methods
                why = "&why=step_up" + (f"&m={original.method}" if original.method != "GET" else "")
            location = (f"{original.scheme}://{original.host}{self.prefix}/{page}"
                        f"?rd={quote(original.url, safe='')}{why}").encode()
            if dialect is Dialect.NGINX:
                return json_error(401, error, f"open {self.prefix}/{page} in a browser",
                                  ((b"location", location),))
            return Answer(302, ((b"location", location),))
        if challenge:
            return json_error(401, error,
                              f"open {self.prefix}/challenge in a browser to enter a code")
        return json_error(401, error,
                          f"two-factor authentication must be set up at {self.prefix}/settings")
