"""Real processes for the Caddy end-to-end tests: Caddy with deploy/caddy/Caddyfile.

Caddy runs ``deploy/caddy/Caddyfile`` unchanged; the file takes its addresses from
environment placeholders, which are set here: the site address (``http://127.0.0.1:<free
port>``), the sidecar's and the app's upstream and ``admin off`` (no port 2019). HOME and
the XDG folders point into the test's temp dir, so Caddy writes nothing elsewhere. Caddy is
taken from ``$CADDY``, else ``PATH``, else ``/usr/bin/caddy``; without it the tests are
skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.conftest import ROOT, STOP_TIMEOUT, Stack, sidecar_config, start, stop, wait_ready
from tests.ports import free_port

CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


def find_caddy() -> str | None:
    """``$CADDY`` when set (and nothing else), else caddy on PATH, else /usr/bin/caddy."""
    explicit = os.environ.get("CADDY")
    candidates = [explicit] if explicit else [shutil.which("caddy"), "/usr/bin/caddy"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def caddy_env(home: Path, port: int, sidecar: str, app: str) -> dict[str, str]:
    """The process environment that makes the Caddyfile listen on ``port`` and proxy to us."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTP_")}
    env.update({
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "TOTP_CADDY_ADMIN": "off",
        "TOTP_SITE_ADDRESS": f"http://127.0.0.1:{port}",
        "TOTP_SIDECAR_UPSTREAM": sidecar,
        "TOTP_APP_UPSTREAM": app,
    })
    return env


def caddy_args(caddy_bin: str, command: str) -> list[str]:
    return [caddy_bin, command, "--adapter", "caddyfile", "--config", str(CADDYFILE)]


def validate(caddy_bin: str, env: dict[str, str]) -> None:
    result = subprocess.run(caddy_args(caddy_bin, "validate"), env=env, capture_output=True,
                            text=True, timeout=STOP_TIMEOUT * 2, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"caddy validate failed:\n{result.stderr[-3000:]}"


def start_caddy(stack: Stack, caddy_bin: str, env: dict[str, str], log_dir: Path) -> None:
    """``caddy run`` with ``env``; its output (JSON log lines) goes to ``caddy.log``."""
    log = log_dir / "caddy.log"
    stack.logs["caddy"] = log
    with log.open("wb") as out:
        stack.procs["caddy"] = subprocess.Popen(caddy_args(caddy_bin, "run"), cwd=ROOT, env=env,
                                                stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def running_caddy(caddy_bin: str, tmp: Path, sidecar: str, app: str) -> Iterator[Stack]:
    """Caddy alone, in front of upstreams that the caller runs (``host:port`` each)."""
    port = free_port()
    host = f"127.0.0.1:{port}"
    stack = Stack(base=f"http://{host}", host=host, conf_dir=CADDYFILE.parent,
                  config_path=CADDYFILE)
    env = caddy_env(tmp / "caddy-home", port, sidecar, app)
    try:
        validate(caddy_bin, env)
        start_caddy(stack, caddy_bin, env, tmp)
        yield stack
    finally:
        if "caddy" in stack.procs:
            stop(stack.procs["caddy"])


@contextlib.contextmanager
def running_caddy_stack(caddy_bin: str, tmp: Path, with_sidecar: bool = True) -> Iterator[Stack]:
    """Caddy + demo app (+ sidecar), all on free 127.0.0.1 ports; stopped on exit."""
    app_port, sidecar_port = free_port(), free_port()
    config_path = tmp / "sidecar.yaml"
    sidecar_config(config_path, sidecar_port, app_port, tmp / "sidecar.db")
    with running_caddy(caddy_bin, tmp, f"127.0.0.1:{sidecar_port}",
                       f"127.0.0.1:{app_port}") as stack:
        stack.config_path = config_path
        try:
            start(stack, "app", [sys.executable, "-m", "uvicorn", "--factory",
                                 "sidecar.demo.app:create_demo_app", "--host", "127.0.0.1",
                                 "--port", str(app_port), "--log-level", "warning",
                                 "--no-access-log"], tmp)
            if with_sidecar:
                start(stack, "sidecar", [sys.executable, "-m", "sidecar", "serve",
                                         "--config", str(config_path)], tmp)
            wait_ready(stack, "app", f"http://127.0.0.1:{app_port}/healthz")
            if with_sidecar:
                wait_ready(stack, "sidecar", f"http://127.0.0.1:{sidecar_port}/healthz")
            wait_ready(stack, "caddy", f"{stack.base}/healthz")  # unprotected: straight to the app
            yield stack
        finally:
            # Caddy first (running_caddy's exit comes after this), then the upstreams: stop
            # Caddy here already so that it sends nothing to upstreams that are going away.
            if "caddy" in stack.procs:
                stop(stack.procs["caddy"])
            for name in ("sidecar", "app"):
                if name in stack.procs:
                    stop(stack.procs[name])
