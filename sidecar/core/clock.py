"""Time, injected: every part that needs "now" takes a clock, so tests use a fixed one.

``Clock`` is wall time in seconds (what codes, cookies and lockouts are measured in);
``Monotonic`` only measures intervals (cache lifetimes), never compared with wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
Monotonic = Callable[[], float]

#: The real clocks, the defaults wherever a clock is injected.
wall: Clock = time.time
monotonic: Monotonic = time.monotonic


class FixedClock:
    """A clock that stands still until moved (tests, benchmarks, the fuzzers)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
