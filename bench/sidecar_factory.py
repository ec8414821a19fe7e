"""An ASGI factory for the sidecar, for servers the CLI does not run (several uvicorn workers,
granian): the config path comes from the environment variable TOTP_SIDECAR_BENCH_CONFIG.

    TOTP_SIDECAR_BENCH_CONFIG=config.yaml python -m uvicorn --factory \\
        bench.sidecar_factory:create_app --workers 2
"""

from __future__ import annotations

import os

from sidecar import logs
from sidecar.config import load_config
from sidecar.web.app import create_app as _create_app

ENV = "TOTP_SIDECAR_BENCH_CONFIG"


def create_app():  # type: ignore[no-untyped-def]
    config = load_config(os.environ[ENV])
    logs.configure(config.server.log_level)
    return _create_app(config)
