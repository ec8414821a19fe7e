"""Prometheus metrics (prometheus_client), one registry per running sidecar.

Decisions by outcome, code checks and security-key checks by result, audit events
(enrollments, lockouts, ...), a latency histogram of the forward-auth endpoints, the app's
who-am-I calls (latency, errors by kind), storage errors, build info, the number of enrolled
users (counted at most once a minute, when /metrics is read), the sizes and limits of the
in-memory caches, and whether the change feed vouches for the user states in memory. Label
children are looked up once and kept, so the hot path pays a dict lookup and an increment.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sidecar import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0)
WHOAMI_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: who-am-I outcomes that are errors (the others: "user", "anonymous")
WHOAMI_ERRORS = ("unreachable", "status", "not_json", "no_user", "bad_user")
ENROLLED_REFRESH_SECONDS = 60.0


class Metrics:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.monotonic = monotonic
        self._decisions = Counter("totp_sidecar_decisions", "Forward-auth decisions by outcome.",
                                  ["outcome"], registry=self.registry)
        self._checks = Counter("totp_sidecar_code_checks",
                               "Codes checked on the pages and in X-OTP, by result.",
                               ["result"], registry=self.registry)
        self._key_checks = Counter("totp_sidecar_key_checks",
                                   "Security key and passkey answers checked, by result: ok, "
                                   "invalid, no_challenge, foreign, counter, duplicate, locked.",
                                   ["result"], registry=self.registry)
        self._events = Counter("totp_sidecar_events",
                               "Audit events: enabled, disabled, locked, recovery_code_used, ...",
                               ["event"], registry=self.registry)
        self._latency = Histogram("totp_sidecar_auth_seconds",
                                  "Time to answer a forward-auth request.",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._whoami = Histogram("totp_sidecar_whoami_seconds",
                                 "Time the app's who-am-I URL took to answer (calls made, not "
                                 "cache hits).", buckets=WHOAMI_BUCKETS, registry=self.registry)
        self._whoami_errors = Counter("totp_sidecar_whoami_errors",
                                      "Unusable who-am-I answers by kind: " + ", ".join(WHOAMI_ERRORS),
                                      ["kind"], registry=self.registry)
        for kind in WHOAMI_ERRORS:
            self._whoami_errors.labels(kind)
        self._storage_errors = Counter("totp_sidecar_storage_errors",
                                       "Requests that failed because the database could not be "
                                       "read or written.", registry=self.registry)
        build = Gauge("totp_sidecar_build_info", "Version of the sidecar and of Python (always 1).",
                      ["version", "python"], registry=self.registry)
        build.labels(__version__, platform.python_version()).set(1)
        self._enrolled = Gauge("totp_sidecar_enrolled_users", "Users with 2FA on (counted at "
                               f"most every {ENROLLED_REFRESH_SECONDS:.0f} s).",
                               registry=self.registry)
        self._enrolled_at = -ENROLLED_REFRESH_SECONDS
        self._cache_entries = Gauge("totp_sidecar_cache_entries", "Entries in an in-memory cache "
                                    "(user_states, contacts, answers).", ["cache"],
                                    registry=self.registry)
        self._cache_limit = Gauge("totp_sidecar_cache_limit", "The most entries a cache keeps.",
                                  ["cache"], registry=self.registry)
        self._feed_ok = Gauge("totp_sidecar_feed_healthy", "1 while the change feed was read "
                              "recently enough to serve user states from memory, else 0.",
                              registry=self.registry)
        self._feed_drops = Gauge("totp_sidecar_state_drops", "Times every user state was dropped "
                                 "because changes may have been missed (since start).",
                                 registry=self.registry)
        self._decision_children: dict[str, Counter] = {}

    def decided(self, outcome: str, started: float) -> None:
        child = self._decision_children.get(outcome)
        if child is None:
            child = self._decision_children[outcome] = self._decisions.labels(outcome)
        child.inc()
        self._latency.observe(time.perf_counter() - started)

    def checked(self, result: str) -> None:
        self._checks.labels(result).inc()

    def key_checked(self, result: str) -> None:
        self._key_checks.labels(result).inc()

    def event(self, name: str) -> None:
        self._events.labels(name).inc()

    def whoami(self, outcome: str, seconds: float) -> None:
        """One call to the who-am-I URL: its time, and its kind when the answer was unusable."""
        self._whoami.observe(seconds)
        if outcome in WHOAMI_ERRORS:
            self._whoami_errors.labels(outcome).inc()

    def storage_error(self) -> None:
        self._storage_errors.inc()

    async def refresh_enrolled(self, count: Callable[[], Awaitable[int]]) -> None:
        """Recount enrolled users when the last count is older than a minute (a failed count
        keeps the old value)."""
        now = self.monotonic()
        if now - self._enrolled_at < ENROLLED_REFRESH_SECONDS:
            return
        self._enrolled_at = now
        self._enrolled.set(await count())

    def caches(self, sizes: dict[str, tuple[int, int]], feed_ok: bool, drops: int) -> None:
        """The caches' (entries, limit) by name, and the change feed's health."""
        for name, (entries, limit) in sizes.items():
            self._cache_entries.labels(name).set(entries)
            self._cache_limit.labels(name).set(limit)
        self._feed_ok.set(1 if feed_ok else 0)
        self._feed_drops.set(drops)

    def render(self) -> bytes:
        return generate_latest(self.registry)
