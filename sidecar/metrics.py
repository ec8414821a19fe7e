"""Prometheus metrics (prometheus_client), one registry per running sidecar, one view per app.

Decisions by app and outcome, code checks and security-key checks by app and result, audit events
(enrollments, lockouts, ...), a latency histogram of the forward-auth endpoints, the app's
who-am-I calls (latency, errors by kind), storage errors, build info, the number of enrolled
users (counted at most once a minute, when /metrics is read), the sizes and limits of the
in-memory caches, and whether the change feed vouches for the user states in memory. Label
children are looked up once and kept; forward-auth decisions and their latency, counted on every
request, are plain ints turned into metric families at each scrape.
"""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sidecar import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0)
WHOAMI_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: who-am-I outcomes that are errors (the others: "user", "anonymous")
WHOAMI_ERRORS = ("unreachable", "status", "not_json", "no_user", "bad_user")
ENROLLED_REFRESH_SECONDS = 60.0


class _Decisions:
    """Forward-auth decisions by app and outcome, and their latency: counted in plain ints
    (one request, one dict update and one list update, no lock: the event loop is the only
    writer) and turned into Prometheus families when /metrics is read."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}  # app → outcome → decisions
        self.buckets: dict[str, list[int]] = {}  # app → count per latency bucket (+Inf last)
        self.sums: dict[str, list[float]] = {}  # app → [seconds in all]

    def add_app(self, app: str) -> tuple[dict[str, int], list[int], list[float]]:
        return (self.counts.setdefault(app, {}),
                self.buckets.setdefault(app, [0] * (len(LATENCY_BUCKETS) + 1)),
                self.sums.setdefault(app, [0.0]))

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily("totp_sidecar_decisions",
                                        "Forward-auth decisions by app and outcome.",
                                        labels=["app", "outcome"])
        for app, outcomes in self.counts.items():
            for outcome, count in outcomes.items():
                decisions.add_metric([app, outcome], count)
        yield decisions
        latency = HistogramMetricFamily("totp_sidecar_auth_seconds",
                                        "Time to answer a forward-auth request, by app.",
                                        labels=["app"])
        for app, counts in self.buckets.items():
            running, buckets = 0, []
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
                running += count
                buckets.append((bound, running))
            latency.add_metric([app], buckets, self.sums[app][0])
        yield latency


class _Collectors:
    """The registry and its collectors, shared by every app's view (one /metrics)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.monotonic = monotonic
        self.decisions = _Decisions()
        registry.register(self.decisions)
        self.checks = Counter("totp_sidecar_code_checks",
                              "Codes checked on the pages and in X-OTP, by app and result.",
                              ["app", "result"], registry=registry)
        self.key_checks = Counter("totp_sidecar_key_checks",
                                  "Security key and passkey answers checked, by app and result: "
                                  "ok, invalid, no_challenge, foreign, counter, duplicate, locked.",
                                  ["app", "result"], registry=registry)
        self.events = Counter("totp_sidecar_events",
                              "Audit events: enabled, disabled, locked, recovery_code_used, ...",
                              ["event"], registry=registry)
        self.whoami = Histogram("totp_sidecar_whoami_seconds",
                                "Time an app's who-am-I URL took to answer (calls made, not "
                                "cache hits).", ["app"], buckets=WHOAMI_BUCKETS,
                                registry=registry)
        self.whoami_errors = Counter("totp_sidecar_whoami_errors",
                                     "Unusable who-am-I answers by app and kind: "
                                     + ", ".join(WHOAMI_ERRORS), ["app", "kind"],
                                     registry=registry)
        self.storage_errors = Counter("totp_sidecar_storage_errors",
                                      "Requests that failed because the database could not be "
                                      "read or written.", registry=registry)
        build = Gauge("totp_sidecar_build_info", "Version of the sidecar and of Python (always 1).",
                      ["version", "python"], registry=registry)
        build.labels(__version__, platform.python_version()).set(1)
        self.enrolled = Gauge("totp_sidecar_enrolled_users", "Users with 2FA on (counted at "
                              f"most every {ENROLLED_REFRESH_SECONDS:.0f} s).", registry=registry)
        self.enrolled_at = -ENROLLED_REFRESH_SECONDS
        self.cache_entries = Gauge("totp_sidecar_cache_entries", "Entries in an in-memory cache "
                                   "(user_states, contacts, answers).", ["cache"],
                                   registry=registry)
        self.cache_limit = Gauge("totp_sidecar_cache_limit", "The most entries a cache keeps.",
                                 ["cache"], registry=registry)
        self.feed_ok = Gauge("totp_sidecar_feed_healthy", "1 while the change feed was read "
                             "recently enough to serve user states from memory, else 0.",
                             registry=registry)
        self.feed_drops = Gauge("totp_sidecar_state_drops", "Times every user state was dropped "
                                "because changes may have been missed (since start).",
                                registry=registry)


class Metrics:
    """One app's view of the sidecar's metrics: what it counts carries ``app="<name>"``
    (decisions, code and key checks, forward-auth latency, who-am-I calls); the rest (audit
    events, storage, caches, build info, enrolled users) is the sidecar's as a whole."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, app: str = "default",
                 shared: _Collectors | None = None) -> None:
        self._all = shared or _Collectors(monotonic)
        self.registry = self._all.registry
        self.app = app
        self._counts, self._buckets, self._sum = self._all.decisions.add_app(app)
        self._whoami = self._all.whoami.labels(app)
        for kind in WHOAMI_ERRORS:
            self._all.whoami_errors.labels(app, kind)

    def for_app(self, app: str) -> Metrics:
        """The view of ``app`` (same registry, same /metrics)."""
        return Metrics(app=app, shared=self._all)

    def decided(self, outcome: str, started: float) -> None:
        seconds = time.perf_counter() - started
        counts = self._counts
        counts[outcome] = counts.get(outcome, 0) + 1
        self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: the first bound ≥ it
        self._sum[0] += seconds

    def checked(self, result: str) -> None:
        self._all.checks.labels(self.app, result).inc()

    def key_checked(self, result: str) -> None:
        self._all.key_checks.labels(self.app, result).inc()

    def event(self, name: str) -> None:
        self._all.events.labels(name).inc()

    def whoami(self, outcome: str, seconds: float) -> None:
        """One call to the who-am-I URL: its time, and its kind when the answer was unusable."""
        self._whoami.observe(seconds)
        if outcome in WHOAMI_ERRORS:
            self._all.whoami_errors.labels(self.app, outcome).inc()

    def storage_error(self) -> None:
        self._all.storage_errors.inc()

    async def refresh_enrolled(self, count: Callable[[], Awaitable[int]]) -> None:
        """Recount enrolled users when the last count is older than a minute (a failed count
        keeps the old value)."""
        shared = self._all
        now = shared.monotonic()
        if now - shared.enrolled_at < ENROLLED_REFRESH_SECONDS:
            return
        shared.enrolled_at = now
        shared.enrolled.set(await count())

    def caches(self, sizes: dict[str, tuple[int, int]], feed_ok: bool, drops: int) -> None:
        """The caches' (entries, limit) by name, and the change feed's health."""
        for name, (entries, limit) in sizes.items():
            self._all.cache_entries.labels(name).set(entries)
            self._all.cache_limit.labels(name).set(limit)
        self._all.feed_ok.set(1 if feed_ok else 0)
        self._all.feed_drops.set(drops)

    def render(self) -> bytes:
        return generate_latest(self.registry)
