"""The pages' security headers, added by a plain ASGI middleware; the request id of each page.

No inline script, nothing external but a configured logo's origin; no framing; no caching.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sidecar import logs
from sidecar.branding import image_source

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # same-origin POSTs keep their Origin
    "cache-control": "no-store",
}


def content_security_policy(allowed_hosts: tuple[str, ...], logo_url: str = "") -> str:
    """No inline script, nothing external but a configured logo's origin (``branding.logo_url``);
    forms may post back (and redirect) to allowed hosts."""
    targets = ["'self'"]
    for host in allowed_hosts:
        targets += [host[1:], "*" + host] if host.startswith(".") else [host]
    images = " ".join(filter(None, ["'self'", "data:", image_source(logo_url)]))
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
            f"form-action {' '.join(targets)}; frame-ancestors 'none'; base-uri 'none'")


class SecurityHeaders:
    """Plain ASGI middleware adding the page security headers to every page response."""

    def __init__(self, app: Any, csp: str) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        self.headers.append((b"content-security-policy", csp.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        offered = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = logs.new_request_id(offered)
        logs.request_id.set(rid)

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                extra.append((b"x-request-id", rid.encode()))
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        await self.app(scope, receive, with_headers)
