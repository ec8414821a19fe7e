"""What every command shares: where the config is, and loading it with one clear failure."""

from __future__ import annotations

import argparse
import os
import sys

from sidecar.app_env import CONFIG_ENV
from sidecar.config import AppConfig, Config, load_config
from sidecar.errors import ConfigError

EXIT_CONFIG = 2
DEFAULT_CONFIG = "config.yaml"


def config_path(args: argparse.Namespace) -> str:
    """``--config`` (before or after the sub-command), else $TOTP_SIDECAR_CONFIG, else config.yaml."""
    return getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG


def app_config(config: Config, name: str) -> AppConfig | None:
    """The app ``--app`` names; None (after one line on stderr naming it) when there is none."""
    try:
        return config.app(name)
    except KeyError:
        known = ", ".join(app.name for app in config.every_app)
        print(f"totp-sidecar: no app named {name!r} (the apps are: {known})", file=sys.stderr)
        return None


def load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"totp-sidecar: {path}: the configuration has {len(exc.problems)} problem(s):",
              file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
