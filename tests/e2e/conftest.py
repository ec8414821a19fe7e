"""Real processes for the end-to-end tests: nginx with deploy/nginx, the sidecar, the demo app.

nginx runs with the files of ``deploy/nginx`` as they are, in a prefix folder under the test's
temp dir; only two things differ from a real install: the upstreams file (free ports instead
of 8000/9091) and the ``listen 8080;`` line (a free port on 127.0.0.1). nginx is taken from
``$NGINX``, else ``PATH``, else ``/usr/sbin/nginx``; without it the tests are skipped, or fail
when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nginx"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def find_nginx() -> str | None:
    """``$NGINX`` when set (and nothing else), else nginx on PATH, else /usr/sbin/nginx."""
    explicit = os.environ.get("NGINX")
    candidates = [explicit] if explicit else [shutil.which("nginx"), "/usr/sbin/nginx"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None




@dataclass
class Stack:
    """The running processes and where they listen."""

    base: str  # http://127.0.0.1:<nginx port>
    host: str  # 127.0.0.1:<nginx port>, as the browser sends it
    conf_dir: Path
    config_path: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def all_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name)}" for name in self.logs)


def write_nginx_prefix(conf_dir: Path, nginx_port: int, app_port: int, sidecar_port: int) -> None:
    """DIR with deploy/nginx's files; own upstreams; the listen line on a free port."""
    conf_dir.mkdir(parents=True)
    shutil.copy(DEPLOY / "nginx.conf", conf_dir / "nginx.conf")
    shutil.copy(DEPLOY / "totp-sidecar-http.conf", conf_dir / "totp-sidecar-http.conf")
    (conf_dir / "snippets").symlink_to(DEPLOY / "snippets", target_is_directory=True)
    upstreams = (DEPLOY / "totp-sidecar-upstreams.conf").read_text()
    upstreams, n_sidecar = re.subn(r"server 127\.0\.0\.1:9091;", f"server 127.0.0.1:{sidecar_port};",
                                   upstreams)
    upstreams, n_app = re.subn(r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{app_port};",
                               upstreams)
    assert (n_sidecar, n_app) == (1, 1), "deploy/nginx/totp-sidecar-upstreams.conf changed shape"
    (conf_dir / "totp-sidecar-upstreams.conf").write_text(upstreams)
    server = (DEPLOY / "totp-sidecar.conf").read_text()
    server, n_listen = re.subn(r"(?m)^(\s*)listen 8080;", rf"\g<1>listen 127.0.0.1:{nginx_port};",
                               server)
    assert n_listen == 1, "deploy/nginx/totp-sidecar.conf: expected one `listen 8080;` line"
    (conf_dir / "totp-sidecar.conf").write_text(server)


def sidecar_config(path: Path, port: int, app_port: int, db: Path,
                   extra: dict[str, Any] | None = None) -> None:
    config = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "totp": {"issuer": "E2E Test"},
        "primary": {"resolver": "introspect", "session_cookies": ["demo_session"],
                    "introspect": {"url": f"http://127.0.0.1:{app_port}/api/me"}},
        "secrets": {"signing_keys": [secrets.token_urlsafe(48)],
                    "hash_key": secrets.token_urlsafe(48),
                    "encryption_keys": [secrets.token_urlsafe(48)]},
        "storage": {"sqlite": {"path": str(db)}},
        "rules": [{"path": "/healthz", "level": "bypass"},
                  {"path": "/denied", "level": "deny"},
                  {"path": "/reports", "level": "required"}],
        "password_reset": {"paths": ["/password/reset"], "account_field": "email",
                           "app_url": f"http://127.0.0.1:{app_port}"},
    }
    config.update(extra or {})
    path.write_text(yaml.safe_dump(config))


def start(stack: Stack, name: str, args: list[str], log_dir: Path) -> None:
    log = log_dir / f"{name}.log"
    stack.logs[name] = log
    with log.open("wb") as out:
        stack.procs[name] = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)


def wait_ready(stack: Stack, name: str, url: str) -> None:
    """Poll ``url`` until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT
    proc = stack.procs[name]
    last: str = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{stack.all_logs()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{name} not ready at {url} after {START_TIMEOUT}s ({last}):\n"
                       f"{stack.all_logs()}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    found = find_nginx()
    if found is None:
        message = "nginx not found (set NGINX, or install it: apt-get install nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextlib.contextmanager
def running_stack(nginx_bin: str, tmp: Path, with_sidecar: bool = True,
                  extra_config: dict[str, Any] | None = None) -> Iterator[Stack]:
    """nginx + demo app (+ sidecar), all on free 127.0.0.1 ports; stopped on exit."""
    nginx_port, app_port, sidecar_port = free_port(), free_port(), free_port()
    conf_dir = tmp / "nginx"
    write_nginx_prefix(conf_dir, nginx_port, app_port, sidecar_port)
    config_path = tmp / "sidecar.yaml"
    sidecar_config(config_path, sidecar_port, app_port, tmp / "sidecar.db", extra_config)
    host = f"127.0.0.1:{nginx_port}"
    stack = Stack(base=f"http://{host}", host=host, conf_dir=conf_dir, config_path=config_path)
    nginx_args = [nginx_bin, "-p", f"{conf_dir}/", "-c", str(conf_dir / "nginx.conf"),
                  "-e", str(conf_dir / "error.log")]
    try:
        test = subprocess.run([*nginx_args, "-t", "-q"], capture_output=True, text=True,
                              timeout=STOP_TIMEOUT)
        assert test.returncode == 0, f"nginx -t failed:\n{test.stderr}"
        start(stack, "app", [sys.executable, "-m", "uvicorn", "--factory",
                             "sidecar.demo.app:create_demo_app", "--host", "127.0.0.1",
                             "--port", str(app_port), "--log-level", "warning",
                             "--no-access-log"], tmp)
        if with_sidecar:
            start(stack, "sidecar", [sys.executable, "-m", "sidecar", "serve",
                                     "--config", str(config_path)], tmp)
        start(stack, "nginx", nginx_args, tmp)
        stack.logs["nginx-error"] = conf_dir / "error.log"
        wait_ready(stack, "app", f"http://127.0.0.1:{app_port}/healthz")
        if with_sidecar:
            wait_ready(stack, "sidecar", f"http://127.0.0.1:{sidecar_port}/healthz")
        wait_ready(stack, "nginx", f"{stack.base}/healthz")
        yield stack
    finally:
        # nginx first (SIGTERM = fast shutdown of master and workers), then the upstreams.
        for name in ("nginx", "sidecar", "app"):
            if name in stack.procs:
                stop(stack.procs[name])


@pytest.fixture(scope="module")
def stack(nginx_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole setup, shared by a module's tests (each test uses its own demo user)."""
    with running_stack(nginx_bin, tmp_path_factory.mktemp("e2e")) as running:
        yield running


@pytest.fixture()
def stack_without_sidecar(nginx_bin: str, tmp_path: Path) -> Iterator[Stack]:
    """nginx and the app, but nothing listens on the sidecar's port."""
    with running_stack(nginx_bin, tmp_path, with_sidecar=False) as running:
        yield running
