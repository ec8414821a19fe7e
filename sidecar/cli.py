"""The ``totp-sidecar`` command: serve, demo, check-config, users.

A thin layer over the config and storage: a failed start ends with one clear line and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidecar.app_env import CONFIG_ENV
from sidecar.config import Config, SQLiteConfig, config_warnings, load_config
from sidecar.errors import ConfigError, SecretUnreadable, StorageUnavailable
from sidecar.storage import SQLiteStorage, UserState
from sidecar.wiring import build_parts, implicit_rules, make_storage

EXIT_CONFIG = 2
GRACEFUL_SECONDS = 10  # in-flight requests get this long to finish on SIGTERM


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"totp-sidecar: {path}: the configuration has {len(exc.problems)} problem(s):",
              file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Exit 2 naming every problem; warnings go to stderr as ``warning: key: message`` (exit 0)."""
    config = _load(args.file)
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    for key, url, _rule in implicit_rules(config):
        print(f"implicit rule: bypass {url} (from {key}; that path exactly; a deny rule still wins)")
    print(f"{args.file}: OK")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sidecar import logs
    from sidecar.web.app import create_app

    config = _load(args.config)
    logs.configure(config.server.log_level)
    for warning in config_warnings(config):
        logging.getLogger("sidecar.cli").warning(warning, extra={"event": "config_warning"})
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
    options: dict[str, Any] = dict(
        host=args.host or config.server.host, port=args.port or config.server.port,
        proxy_headers=False, server_header=False, ws="none", log_level=config.server.log_level,
        access_log=False, lifespan="on", timeout_graceful_shutdown=GRACEFUL_SECONDS)
    if args.workers > 1:
        # Worker processes import the app themselves: they find the config in the environment.
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
        uvicorn.run("sidecar.web.app:app_from_environment", factory=True, workers=args.workers,
                    **options)
    else:
        # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler
        # found at start: make that an ordinary exit (status 0) rather than death by signal.
        signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
        uvicorn.run(create_app(config), **options)
    return 0


async def _open_and_close(config: Config) -> None:
    storage = make_storage(config)
    await storage.open()
    await storage.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from sidecar.demo.run import run_demo

    return run_demo(args.port, args.db)


def _describe(user: UserState, when: Callable[[int | None], str]) -> str:
    status = f"on since {when(user.enabled_at)}" if user.enrolled else "off"
    lock = f", locked until {when(user.locked_until)}" if user.locked_until else ""
    left = f", {user.recovery_left} recovery codes left" if user.enrolled else ""
    return f"{user.user_id}: 2FA {status}{left}{lock}"


async def _users(config: Config, action: str, user_id: str | None) -> int:
    from sidecar.web.render import when

    parts = build_parts(config)
    storage, accounts = parts.storage, parts.accounts
    try:
        await parts.open()
        if action == "list":
            for user in await storage.list_users():
                print(_describe(user, when))
            return 0
        assert user_id is not None
        user = await storage.get_user(user_id)
        if action == "show":
            print(_describe(user, when))
            for event in await storage.events(user_id, 10):
                print(f"  {when(event.at)}  {event.event:<20} from {event.client or '-'}"
                      + "".join(f"  {k}={v}" for k, v in sorted(event.detail.items())))
            return 0
        if action == "reset":
            if not await accounts.disable(user_id, actor="admin"):
                print(f"{user_id}: 2FA was not on; nothing changed")
                return 1
            print(f"{user_id}: 2FA removed; every 2FA cookie of this user has ended."
                  " The user can set it up again.")
            return 0
        if not await accounts.unlock(user_id):
            print(f"{user_id}: was not locked")
            return 1
        print(f"{user_id}: unlocked")
        return 0
    finally:
        await parts.aclose()  # the admin-reset notice goes out before the command ends


async def _rotate(config: Config) -> int:
    parts = build_parts(config)
    try:
        await parts.open()
        done, current = await parts.accounts.rotate_keys()
    finally:
        await parts.aclose()
    print(f"re-encrypted {done} secret(s) under the newest key; {current} already were."
          " The older keys can now be removed from secrets.encryption_keys.")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    config = _load(args.config)
    try:
        return asyncio.run(_rotate(config))
    except (StorageUnavailable, SecretUnreadable) as exc:
        print(f"totp-sidecar: {exc}", file=sys.stderr)
        return 1


def cmd_users(args: argparse.Namespace) -> int:
    config = _load(args.config)
    try:
        return asyncio.run(_users(config, args.action, args.user))
    except StorageUnavailable as exc:
        print(f"totp-sidecar: {exc}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="totp-sidecar",
                                  description="TOTP two-factor authentication beside your proxy.")
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sidecar")
    serve.add_argument("--config", required=True, help="YAML config file")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (default 1; each keeps its own caches)")
    serve.set_defaults(run=cmd_serve)
    demo = sub.add_parser("demo", help="demo app + sidecar + development proxy on one port")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--db", help="SQLite file to keep (default: a temporary file)")
    demo.set_defaults(run=cmd_demo)
    check = sub.add_parser("check-config", help="validate a config file (exit 2 on problems)")
    check.add_argument("file")
    check.set_defaults(run=cmd_check_config)
    users = sub.add_parser("users", help="operator tasks on users")
    users.add_argument("--config", default="config.yaml", help="YAML config file")
    users_sub = users.add_subparsers(dest="action", required=True)
    users_sub.add_parser("list", help="every user the sidecar knows")
    for name, text in (("show", "one user's 2FA state"),
                       ("reset", "remove 2FA (lost phone and codes); the user re-enrolls"),
                       ("unlock", "lift a lockout after too many failed codes")):
        users_sub.add_parser(name, help=text).add_argument("user")
    users.set_defaults(run=cmd_users, user=None)
    keys = sub.add_parser("keys", help="encryption keys of the stored TOTP secrets")
    keys.add_argument("--config", default="config.yaml", help="YAML config file")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    keys_sub.add_parser("rotate", help="re-encrypt every secret under the newest key")
    keys.set_defaults(run=cmd_keys)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], Any] = args.run
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130



