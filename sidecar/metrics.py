"""Prometheus metrics (prometheus_client), one registry per running sidecar.

Decisions by outcome, code checks by result, audit events (enrollments, lockouts, ...), and
a latency histogram of the forward-auth endpoints. Label children are looked up once and
kept, so the hot path pays a dict lookup and an increment.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._decisions = Counter("totp_sidecar_decisions", "Forward-auth decisions by outcome.",
                                  ["outcome"], registry=self.registry)
        self._checks = Counter("totp_sidecar_code_checks",
                               "Codes checked on the pages and in X-OTP, by result.",
                               ["result"], registry=self.registry)
        self._events = Counter("totp_sidecar_events",
                               "Audit events: enabled, disabled, locked, recovery_code_used, ...",
                               ["event"], registry=self.registry)
        self._latency = Histogram("totp_sidecar_auth_seconds",
                                  "Time to answer a forward-auth request.",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._decision_children: dict[str, Counter] = {}

    def decided(self, outcome: str, started: float) -> None:
        child = self._decision_children.get(outcome)
        if child is None:
            child = self._decision_children[outcome] = self._decisions.labels(outcome)
        child.inc()
        self._latency.observe(time.perf_counter() - started)

    def checked(self, result: str) -> None:
        self._checks.labels(result).inc()

    def event(self, name: str) -> None:
        self._events.labels(name).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
