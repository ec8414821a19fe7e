"""``totp-sidecar serve``, ``demo`` and ``check-config``.

A failed start ends with one clear line and a non-zero exit, never a traceback: a bad config
(exit 2), storage that cannot be opened, a port already in use (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.app_env import CONFIG_ENV
from sidecar.cli.common import config_path, load
from sidecar.config import Config, SQLiteConfig, config_warnings
from sidecar.errors import StorageUnavailable
from sidecar.storage import SQLiteStorage
from sidecar.wiring import describe_storage, implicit_rules, make_storage

GRACEFUL_SECONDS = 10  # in-flight requests get this long to finish on SIGTERM
log = logging.getLogger("sidecar.cli")


def cmd_check_config(args: argparse.Namespace) -> int:
    """Exit 2 naming every problem; warnings go to stderr as ``warning: key: message`` (exit 0)."""
    path = args.file or config_path(args)
    config = load(path)
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    for index, app in enumerate(config.every_app):
        at = f"apps[{index - 1}]." if index else ""
        if config.apps:
            hosts = ", ".join(app.hosts) or "every host no other app claims"
            shared = "" if app.users_namespace == app.name else f", users of {app.users_namespace}"
            print(f"app {app.name}: {hosts} (issuer {app.config.totp.issuer}{shared})")
        for key, url, _rule in implicit_rules(app.config):
            print(f"{'  ' if config.apps else ''}implicit rule: bypass {url} (from {at}{key}; "
                  "that path exactly; a deny rule still wins)")
    print(f"{path}: OK")
    return 0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts (so "ready" means reachable)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sidecar import logs
    from sidecar.web.app import create_app

    path = config_path(args)
    config = load(path)
    logs.configure(config.server.log_level)
    for warning in config_warnings(config):
        log.warning(warning, extra={"event": "config_warning"})
    sqlite = isinstance(config.storage, SQLiteConfig)
    try:
        if isinstance(config.storage, SQLiteConfig):
            SQLiteStorage.check_path(config.storage.path)
        else:  # unreachable: one clear line here, not a traceback from the server's start
            asyncio.run(_open_and_close(config))
    except StorageUnavailable as exc:
        print(f"totp-sidecar: {'storage.sqlite.path' if sqlite else 'storage.postgres'}: {exc}",
              file=sys.stderr)
        return 1
    host, port = args.host or config.server.host, args.port or config.server.port
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"totp-sidecar: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    log.info("starting", extra={"event": "starting", "version": __version__,
                                "listen": f"{host}:{port}", "workers": args.workers,
                                "storage": describe_storage(config),
                                "resolver": config.primary.resolver,
                                "apps": [app.name for app in config.every_app]})
    options: dict[str, Any] = dict(
        proxy_headers=False, server_header=False, ws="none", log_level=config.server.log_level,
        access_log=False, lifespan="on", timeout_graceful_shutdown=GRACEFUL_SECONDS,
        log_config=None)
    if args.workers > 1:
        # Worker processes import the app themselves: they find the config in the environment.
        os.environ[CONFIG_ENV] = str(Path(path).resolve())
        sock.close()
        uvicorn.run("sidecar.web.app:app_from_environment", factory=True, workers=args.workers,
                    host=host, port=port, **options)
    else:
        # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler
        # found at start: make that an ordinary exit (status 0) rather than death by signal.
        signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
        server = uvicorn.Server(uvicorn.Config(create_app(config), host=host, port=port,
                                               **options))
        server.run(sockets=[sock])
    return 0


async def _open_and_close(config: Config) -> None:
    storage = make_storage(config)
    await storage.open()
    await storage.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from sidecar.demo.run import run_demo

    return run_demo(args.port, args.db)
