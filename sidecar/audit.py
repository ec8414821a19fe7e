"""The audit trail: one JSON log line (``sidecar.audit``) and one stored event per happening.

Callers pass names and counts only: never a secret, a code or a cookie value. Each event is
also handed to ``on_event`` (metrics, notices).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sidecar.core.clock import Clock
from sidecar.storage import Event, Events

log = logging.getLogger("sidecar.audit")
OnEvent = Callable[[str, str, dict[str, Any]], None]


class Audit:
    def __init__(self, events: Events, clock: Clock, on_event: OnEvent) -> None:
        self.events = events
        self.clock = clock
        self.on_event = on_event

    async def __call__(self, event: str, user_id: str, client: str, level: int = logging.INFO,
                       **detail: Any) -> None:
        log.log(level, event.replace("_", " "),
                extra={"event": event, "user": user_id, "client": client, **detail})
        self.on_event(event, user_id, detail)
        await self.events.add_event(Event(int(self.clock()), event, user_id, client, detail))
