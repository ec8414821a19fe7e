"""Notices when 2FA changes on an account: a signed webhook and, optionally, an e-mail.

``Notifier.notify`` only puts the notice on a queue: the user's request never waits for a
webhook or a mail server. A background task sends each notice, retrying with exponential
backoff. The webhook body is JSON, signed with HMAC-SHA256 over ``"<timestamp>.<body>"``
(headers ``X-Totp-Sidecar-Timestamp`` and ``X-Totp-Sidecar-Signature: sha256=<hex>``), so a
receiver can check both origin and freshness. Notices carry names and counts, never a
secret or a code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from sidecar.config import EmailConfig, NotifyConfig, WebhookConfig
from sidecar.core.apps import DEFAULT_APP, split_key

log = logging.getLogger("sidecar.notify")
QUEUE_LIMIT = 1000
FIRST_DELAY = 0.5  # seconds before the first retry; doubled each time

SUBJECTS = {
    "enabled": "Two-factor authentication was turned on for your account",
    "disabled": "Two-factor authentication was turned off for your account",
    "recovery_code_used": "A recovery code was used to sign in to your account",
    "codes_regenerated": "New recovery codes were made for your account",
    "locked": "Your account was locked after too many wrong codes",
    "admin_reset": "An administrator removed two-factor authentication from your account",
    "key_added": "A security key or passkey was added to your account",
    "key_removed": "A security key or passkey was removed from your account",
}
ADVICE = "If this was not you, contact your administrator at once."


@dataclass(frozen=True, slots=True)
class Notice:
    event: str
    user: str  # the user's storage key (the user in an app's users namespace)
    at: int
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def account(self) -> str:
        """The user id as the app names it (without the users namespace)."""
        return split_key(self.user)[1]

    def payload(self) -> dict[str, Any]:
        namespace, account = split_key(self.user)
        out = {"event": self.event, "user": account, "time": self.at, "detail": self.detail}
        return out if namespace == DEFAULT_APP else {**out, "users_namespace": namespace}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def mail_text(notice: Notice, issuer: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(notice.at))
    lines = [f"{SUBJECTS[notice.event]} ({issuer}, account {notice.account}, {when})."]
    if notice.event == "recovery_code_used" and "remaining" in notice.detail:
        lines.append(f"You have {notice.detail['remaining']} recovery codes left.")
    if notice.event in ("key_added", "key_removed") and "key" in notice.detail:
        lines.append(f"Key: {notice.detail['key']}")
    lines += ["", ADVICE]
    return "\n".join(lines) + "\n"


async def retrying(send: Callable[[], Awaitable[None]], retries: int, what: str,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> bool:
    """Run ``send`` until it succeeds, at most ``retries`` extra times, with backoff."""
    delay = FIRST_DELAY
    for attempt in range(retries + 1):
        try:
            await send()
            return True
        except Exception as exc:  # noqa: BLE001 — any failure of the receiver is retried
            log.warning("%s failed (attempt %d of %d): %s", what, attempt + 1, retries + 1,
                        type(exc).__name__)
        if attempt < retries:
            await sleep(delay)
            delay *= 2
    log.error("%s given up", what)
    return False


class Notifier:
    def __init__(self, config: NotifyConfig, issuer: str,
                 contact: Callable[[str], Awaitable[str]],
                 client: httpx.AsyncClient | None = None,
                 issuers: dict[str, str] | None = None) -> None:
        self.config = config
        self.contact = contact
        self.issuer = issuer
        self.issuers = issuers or {}  # users namespace → the issuer its e-mails name
        self.enabled = bool(config.webhook or config.email)
        self._client = client
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self.sent: list[tuple[str, str]] = []  # (channel, event), for metrics and tests

    def notify(self, event: str, user: str, detail: dict[str, Any]) -> None:
        """Queue a notice; never blocks, never raises."""
        if not self.enabled or event not in self.config.events:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            self._queue.put_nowait(Notice(event, user, int(time.time()), detail))
        except asyncio.QueueFull:
            log.error("notice queue full: %s for %s dropped", event, user)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until queued notices are sent (or given up), at most ``timeout`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def aclose(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            notice = await self._queue.get()
            try:
                await self._deliver(notice)
            finally:
                self._queue.task_done()

    async def _deliver(self, notice: Notice) -> None:
        jobs = []
        if self.config.webhook is not None:
            jobs.append(self._webhook(self.config.webhook, notice))
        if self.config.email is not None:
            try:
                email = await self.contact(notice.user)
            except Exception:  # noqa: BLE001 — storage down: the webhook still goes out
                log.warning("no address for %s: storage unavailable", notice.user)
                email = ""
            if email:
                jobs.append(self._email(self.config.email, notice, email))
        await asyncio.gather(*jobs)

    async def _webhook(self, settings: WebhookConfig, notice: Notice) -> None:
        body = json.dumps(notice.payload(), sort_keys=True).encode()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=settings.timeout_seconds)

        async def send() -> None:
            assert self._client is not None
            timestamp = str(int(time.time()))
            response = await self._client.post(settings.url, content=body, headers={
                "content-type": "application/json",
                "x-totp-sidecar-timestamp": timestamp,
                "x-totp-sidecar-signature": signature(settings.secret, timestamp, body)})
            response.raise_for_status()

        if await retrying(send, settings.retries, f"webhook {notice.event}"):
            self.sent.append(("webhook", notice.event))

    async def _email(self, settings: EmailConfig, notice: Notice, email: str) -> None:
        import aiosmtplib

        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = email
        issuer = self.issuers.get(split_key(notice.user)[0], self.issuer)
        message["Subject"] = f"[{issuer}] {SUBJECTS[notice.event]}"
        message.set_content(mail_text(notice, issuer))

        async def send() -> None:
            await aiosmtplib.send(
                message, hostname=settings.host, port=settings.port,
                username=settings.username or None, password=settings.password or None,
                use_tls=settings.security == "tls", start_tls=settings.security == "starttls",
                timeout=10)

        if await retrying(send, settings.retries, f"e-mail {notice.event}"):
            self.sent.append(("email", notice.event))
