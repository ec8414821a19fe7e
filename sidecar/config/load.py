"""Reading a config file: YAML in, a validated ``Config`` out (or ConfigError naming every key)."""

from __future__ import annotations

from pathlib import Path

import yaml

from sidecar.config.model import Config
from sidecar.config.validate import parse_config
from sidecar.errors import ConfigError, Problem


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML config file; relative paths in it are relative to its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(f"(file) {path}", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"(file) {path}", f"not valid YAML: {exc}")]) from None
    return parse_config(data, environ, file.resolve().parent)
