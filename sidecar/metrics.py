"""Counters for /metrics, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self.decisions: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()

    def render(self) -> str:
        lines = [
            "# HELP totp_sidecar_decisions_total Forward-auth decisions by outcome.",
            "# TYPE totp_sidecar_decisions_total counter",
        ]
        lines += [f'totp_sidecar_decisions_total{{outcome="{k}"}} {v}'
                  for k, v in sorted(self.decisions.items())]
        lines += [
            "# HELP totp_sidecar_code_checks_total Codes checked on the pages, by result.",
            "# TYPE totp_sidecar_code_checks_total counter",
        ]
        lines += [f'totp_sidecar_code_checks_total{{result="{k}"}} {v}'
                  for k, v in sorted(self.checks.items())]
        return "\n".join(lines) + "\n"
