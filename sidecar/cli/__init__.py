"""The ``totp-sidecar`` command: serve, demo, check-config, doctor, users, keys.

A thin layer over the config and storage: a failed start ends with one clear line and a
non-zero exit, never a traceback. ``--config`` may come before or after the sub-command, or
from $TOTP_SIDECAR_CONFIG; the default is ``config.yaml`` for every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sidecar import __version__
from sidecar.cli.common import DEFAULT_CONFIG, EXIT_CONFIG
from sidecar.cli.doctor import cmd_doctor
from sidecar.cli.serve import cmd_check_config, cmd_demo, cmd_serve
from sidecar.cli.users import cmd_keys, cmd_users

__all__ = ["EXIT_CONFIG", "main", "parser"]
CONFIG_HELP = f"YAML config file (default: $TOTP_SIDECAR_CONFIG, else {DEFAULT_CONFIG})"


def _config_option(parser: argparse.ArgumentParser, top: bool = False) -> None:
    # after the sub-command it overrides the one before; absent, it leaves that one alone
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP,
                        default=None if top else argparse.SUPPRESS)


def _app_option(parser: argparse.ArgumentParser, top: bool = False) -> None:
    parser.add_argument("--app", metavar="NAME", default="default" if top else argparse.SUPPRESS,
                        help="the app (an entry of apps:) whose users or who-am-I URL "
                        "(default: the top-level app, named default)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="totp-sidecar",
                                  description="TOTP two-factor authentication beside your proxy.")
    top.add_argument("--version", action="version", version=f"totp-sidecar {__version__}")
    _config_option(top, top=True)
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sidecar")
    _config_option(serve)
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
    check.add_argument("file", nargs="?", help="the config file (default: as --config)")
    _config_option(check)
    check.set_defaults(run=cmd_check_config)
    doctor = sub.add_parser("doctor", help="call the app's who-am-I URL as the sidecar would "
                            "and say what it answered")
    _config_option(doctor)
    doctor.add_argument("--cookie", action="append", default=[], metavar="'a=1; b=2'",
                        help="a Cookie header as the browser sends it (repeatable)")
    doctor.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                        help="a request header, e.g. 'Authorization: Bearer …' (repeatable)")
    doctor.add_argument("--peer", default="127.0.0.1",
                        help="the address the request comes from (header resolver: a trusted "
                        "proxy's; default 127.0.0.1)")
    _app_option(doctor, top=True)
    doctor.set_defaults(run=cmd_doctor)
    users = sub.add_parser("users", help="operator tasks on users")
    _config_option(users)
    _app_option(users, top=True)
    users_sub = users.add_subparsers(dest="action", required=True)
    listed = users_sub.add_parser("list", help="every user the sidecar knows")
    listed.add_argument("--json", action="store_true", help="a JSON list on stdout")
    _app_option(listed)
    for name, text in (("show", "one user's 2FA state"),
                       ("reset", "remove 2FA (lost phone and codes); the user re-enrolls"),
                       ("unlock", "lift a lockout after too many failed codes")):
        action = users_sub.add_parser(name, help=text)
        action.add_argument("user")
        _config_option(action)
        _app_option(action)
    users.set_defaults(run=cmd_users, user=None, json=False)
    keys = sub.add_parser("keys", help="the secrets: generate them, rotate encryption keys")
    _config_option(keys)
    keys_sub = keys.add_subparsers(dest="action", required=True)
    _config_option(keys_sub.add_parser("rotate",
                                       help="re-encrypt every secret under the newest key"))
    generate = keys_sub.add_parser("generate", help="three new secrets: YAML on stdout, or "
                                   "files (mode 0600) with --dir")
    generate.add_argument("--dir", help="write one file per secret here; print the *_file keys")
    keys.set_defaults(run=cmd_keys, dir=None)
    _config_option(listed)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], Any] = args.run
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
