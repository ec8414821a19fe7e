"""``totp-sidecar demo``: the demo app, the sidecar and a development proxy on one port.

Everything runs in one process on 127.0.0.1: the demo app and the sidecar on free ports,
the development proxy (nginx's ``auth_request`` rules) on the port the user opens.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from sidecar import logs
from sidecar.config import parse_config
from sidecar.demo.app import DEMO_USERS, create_demo_app
from sidecar.demo.devproxy import create_dev_proxy
from sidecar.web.app import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(app_port: int, db_path: str) -> dict[str, Any]:
    """The config the demo runs with; also a readable example of a real one."""
    return {
        "totp": {"issuer": "Demo App"},
        "primary": {
            "resolver": "introspect",
            "session_cookies": ["demo_session"],
            "introspect": {"url": f"http://127.0.0.1:{app_port}/api/me"},
        },
        "secrets": {"signing_keys": [secrets.token_urlsafe(48)],
                    "hash_key": secrets.token_urlsafe(48),
                    "encryption_keys": [secrets.token_urlsafe(48)]},
        "storage": {"sqlite": {"path": db_path}},
        "rules": [
            {"path": "/healthz", "level": "bypass"},
            {"path": "/account/password", "level": "optional", "step_up": "5m"},
            {"users": ["carol"], "level": "required"},
        ],
        "password_reset": {"paths": ["/password/reset"], "account_field": "email",
                           "app_url": f"http://127.0.0.1:{app_port}"},
        "remember_device": {"enabled": True, "max_days": 30},
        "support_contact": "it-help@example.com",
    }


def _server(app: Any, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            proxy_headers=False, server_header=False, access_log=False,
                            ws="none")
    return uvicorn.Server(config)


async def _serve(port: int, db_path: str) -> None:
    app_port, sidecar_port = free_port(), free_port()
    # the demo's config is complete: TOTP_SIDECAR_* variables of the shell must not add to it
    config = parse_config(demo_config(app_port, db_path), environ={})
    servers = [
        _server(create_demo_app(), app_port),
        _server(create_app(config), sidecar_port),
        _server(create_dev_proxy(f"http://127.0.0.1:{app_port}",
                                 f"http://127.0.0.1:{sidecar_port}",
                                 sidecar_paths=config.password_reset.paths), port),
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            for s in servers:
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            raise SystemExit(f"totp-sidecar demo: could not start (is port {port} free?)")
        await asyncio.sleep(0.05)
    users = "\n".join(f"    {name:<6} password: {password}" + ("   (2FA required by a rule)"
                                                                 if name == "carol" else "")
                      for name, (password, _, _) in DEMO_USERS.items())
    print(f"""
totp-sidecar demo is running.

  Open   http://127.0.0.1:{port}/   in a browser
         (or http://localhost:{port}/ to try a security key: keys need a host name).
  Users:
{users}

  Sign in, open "Two-factor authentication settings" ({config.prefix}/settings), turn it on,
  scan the QR code with an authenticator app, and sign out and in again.
  Database: {db_path}
  Press Ctrl+C to stop.
""", flush=True)
    try:
        await asyncio.gather(*tasks)
    finally:
        for s in servers:
            s.should_exit = True


def run_demo(port: int, db: str | None) -> int:
    logs.configure("warning")
    # SIGTERM stops the demo as Ctrl+C does, so the temporary folder is removed either way
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="totp-sidecar-demo-") as tmp:
        db_path = str(Path(db).resolve()) if db else str(Path(tmp) / "demo.db")
        try:
            asyncio.run(_serve(port, db_path))
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0
