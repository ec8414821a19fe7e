"""Notices: a webhook and e-mail on 2FA changes, against a real HTTP receiver and SMTP server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.notify import signature
from tests.conftest import FakeClock, config_dict, make_config, start_env
from tests.ports import free_port

pytestmark = pytest.mark.anyio
WEBHOOK_SECRET = "w" * 40




@dataclass
class Receiver:
    """A webhook receiver that fails its first ``failures`` calls and can be slow."""

    port: int = 0
    failures: int = 0
    delay: float = 0.0
    calls: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        self.calls += 1
        body = await request.body()
        if self.calls <= self.failures:
            return Response(status_code=500)
        await asyncio.sleep(self.delay)
        timestamp = request.headers["x-totp-sidecar-timestamp"]
        assert request.headers["x-totp-sidecar-signature"] == signature(WEBHOOK_SECRET, timestamp, body)
        self.received.append(json.loads(body))
        return Response(status_code=204)


@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(port=free_port())
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook.hook, methods=["POST"])]),
                                           host="127.0.0.1", port=hook.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield hook
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def notify_config(receiver: Receiver, smtp_port: int) -> dict[str, Any]:
    return {"webhook": {"url": f"http://127.0.0.1:{receiver.port}/hook", "secret": WEBHOOK_SECRET},
            "email": {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                      "from": "2FA <no-reply@example.com>"}}


async def test_every_change_is_announced(tmp_path: Path, clock: FakeClock, receiver: Receiver,
                                         mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    config = make_config(tmp_path, notify=notify_config(receiver, smtp_port),
                         throttle={"max_failures": 2})
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        secret, codes = await browser.enroll()
        await browser.logout()
        await browser.login("alice")
        assert (await browser.challenge(codes[0])).status_code == 303
        csrf, _ = await browser.form_token("/_2fa/settings")
        clock.advance(30)
        assert (await browser.post("/_2fa/recovery-codes", {"csrf": csrf, "code": env.code(secret)})
                ).status_code == 303
        await browser.logout()
        await browser.login("alice")
        for _ in range(2):
            await browser.challenge("000000")
        notifier = env.sidecar.parts.notifier
        await notifier.drain()
    events = [r["event"] for r in receiver.received]
    assert events == ["enabled", "recovery_code_used", "codes_regenerated", "locked"]
    assert receiver.received[1]["detail"] == {"remaining": 19}
    assert all(r["user"] == "alice" for r in receiver.received)
    subjects = [m["Subject"] for m in box.messages]
    assert len(subjects) == 4 and all(m["To"] == "alice@example.com" for m in box.messages)
    assert "turned on" in subjects[0] and "recovery code was used" in subjects[1]
    body = box.messages[1].get_payload()
    assert "19 recovery codes left" in body and codes[0] not in body and secret not in body


async def test_the_user_never_waits_and_failures_are_retried(
        tmp_path: Path, clock: FakeClock, receiver: Receiver) -> None:
    receiver.failures, receiver.delay = 2, 1.5
    config = make_config(tmp_path, notify={"webhook": {
        "url": f"http://127.0.0.1:{receiver.port}/hook", "secret": WEBHOOK_SECRET}})
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        started = time.monotonic()
        await browser.enroll()
        assert time.monotonic() - started < 1.0  # the slow, failing receiver did not hold us up
        await env.sidecar.parts.notifier.drain(timeout=15)
    assert receiver.calls == 3 and [r["event"] for r in receiver.received] == ["enabled"]


def test_admin_reset_from_the_command_line_is_announced(tmp_path: Path, receiver: Receiver,
                                                         mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    clock = FakeClock(time.time())
    data = config_dict(tmp_path, notify=notify_config(receiver, smtp_port))

    async def enroll() -> None:
        from sidecar.config import parse_config
        async for env in start_env(parse_config(data, environ={}), clock):
            browser = env.browser()
            await browser.login("alice")
            await browser.enroll()
            await env.sidecar.parts.notifier.drain()

    asyncio.run(enroll())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "-m", "sidecar", "users", "--config", str(path),
                             "reset", "alice"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [r["event"] for r in receiver.received] == ["enabled", "admin_reset"]
    assert "administrator removed" in box.messages[-1]["Subject"]
