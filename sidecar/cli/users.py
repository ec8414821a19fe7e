"""``totp-sidecar users …`` and ``totp-sidecar keys …``: operator tasks on the stored state."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml

from sidecar.cli.common import app_config, config_path, load
from sidecar.config import Config
from sidecar.core.apps import DEFAULT_APP, in_namespace, split_key, storage_key, valid_user
from sidecar.errors import SecretUnreadable, StorageUnavailable
from sidecar.storage import UserState
from sidecar.wiring import build_parts

SECRET_KEYS = ("signing_keys", "hash_key", "encryption_keys")


def iso(timestamp: int | None) -> str:
    """An ISO 8601 date and time in UTC ("" for none)."""
    if not timestamp:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def _describe(user: UserState) -> str:
    status = f"on since {iso(user.enabled_at)}" if user.enrolled else "off"
    lock = f", locked until {iso(user.locked_until)}" if user.locked_until else ""
    left = f", {user.recovery_left} recovery codes left" if user.enrolled else ""
    return f"{user.user_id}: 2FA {status}{left}{lock}"


def _as_json(user: UserState) -> dict[str, Any]:
    return {"user": user.user_id, "enrolled": user.enrolled,
            "enabled_at": iso(user.enabled_at) or None,
            "recovery_codes_left": user.recovery_left if user.enrolled else None,
            "locked_until": iso(user.locked_until) or None}


async def _users(config: Config, action: str, name: str | None, as_json: bool,
                 namespace: str = DEFAULT_APP) -> int:
    """``action`` on the users of ``namespace`` (the app's ``users_namespace``): ``name`` is a
    user id as the app names it, shown as such; the storage holds its key in the namespace."""
    if name is not None and not valid_user(name):
        print(f"totp-sidecar: {name!r} is not a user id (empty, or a control character)",
              file=sys.stderr)
        return 1
    parts = build_parts(config)
    storage, accounts = parts.storage, parts.accounts
    try:
        await parts.open(feed=False)
        if action == "list":
            users = [dataclasses.replace(user, user_id=split_key(user.user_id)[1])
                     for user in await storage.list_users() if in_namespace(user.user_id, namespace)]
            if as_json:
                print(json.dumps([_as_json(user) for user in users], indent=2))
            for user in [] if as_json else users:
                print(_describe(user))
            if not users and not as_json:  # say so, on stderr: stdout stays a list (of none)
                print("totp-sidecar: no users have set up two-factor authentication yet",
                      file=sys.stderr)
            return 0
        assert name is not None
        user_id = storage_key(namespace, name)
        user = await storage.get_user(user_id)
        events = await storage.events(user_id, 10) if action == "show" else []
        if action == "show":
            if not user.enrolled and not user.locked_until and not events:
                print(f"totp-sidecar: {name}: no such user", file=sys.stderr)
                return 1
            print(_describe(dataclasses.replace(user, user_id=name)))
            for key in await storage.credentials(user_id):
                used = f", last used {iso(key.last_used)}" if key.last_used else ", not used yet"
                print(f"  security key {key.name!r}: added {iso(key.created_at)}{used}")
            for event in events:
                print(f"  {iso(event.at)}  {event.event:<20} from {event.client or '-'}"
                      + "".join(f"  {k}={v}" for k, v in sorted(event.detail.items())))
            return 0
        if action == "reset":
            if not await accounts.disable(user_id, actor="admin"):
                print(f"{name}: 2FA was not on; nothing changed")
                return 1
            print(f"{name}: 2FA removed (app, security keys, recovery codes); every 2FA cookie"
                  " of this user has ended."
                  " The user can set it up again.")
            return 0
        if not await accounts.unlock(user_id):
            print(f"{name}: was not locked")
            return 1
        print(f"{name}: unlocked")
        return 0
    finally:
        await parts.aclose()  # the admin-reset notice goes out before the command ends


def cmd_users(args: argparse.Namespace) -> int:
    config = load(config_path(args))
    app = app_config(config, args.app)
    if app is None:
        return 1
    try:
        return asyncio.run(_users(config, args.action, args.user, args.json, app.users_namespace))
    except StorageUnavailable as exc:
        print(f"totp-sidecar: {exc}", file=sys.stderr)
        return 1


async def _rotate(config: Config) -> int:
    parts = build_parts(config)
    try:
        await parts.open(feed=False)
        done, current = await parts.accounts.rotate_keys()
    finally:
        await parts.aclose()
    print(f"re-encrypted {done} secret(s) under the newest key; {current} already were."
          " The older keys can now be removed from secrets.encryption_keys.")
    return 0


def generate(folder: str | None) -> int:
    """Three fresh secrets: YAML for ``secrets:`` on stdout, or files (mode 0600) in ``folder``."""
    values = {name: secrets.token_urlsafe(48) for name in SECRET_KEYS}
    if folder is None:
        print(yaml.safe_dump({"secrets": {name: [value] if name.endswith("_keys") else value
                                          for name, value in values.items()}},
                             sort_keys=False), end="")
        return 0
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, value in values.items():
        path = where / name
        if path.exists():
            print(f"totp-sidecar: {path} exists; not overwritten", file=sys.stderr)
            return 1
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(value + "\n")
        out[f"{name}_file"] = str(path.resolve())
    print(yaml.safe_dump({"secrets": out}, sort_keys=False), end="")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "generate":
        return generate(args.dir)
    config = load(config_path(args))
    try:
        return asyncio.run(_rotate(config))
    except (StorageUnavailable, SecretUnreadable) as exc:
        print(f"totp-sidecar: {exc}", file=sys.stderr)
        return 1
