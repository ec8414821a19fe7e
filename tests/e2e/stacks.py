"""Real processes for the end-to-end tests: a proxy in front of the demo app and the sidecar.

One ``ProxySpec`` per proxy says how to run it with its deploy files as they are; everything
else is written once here: free ports, the sidecar's config, starting, waiting for and
stopping the processes, and the ``Stack`` the tests get.

* **nginx** runs the files of ``deploy/nginx`` in a prefix folder under the test's temp dir;
  only the upstreams file (free ports instead of 8000/9091) and the ``listen 8080;`` line (a
  free port on 127.0.0.1) differ. Taken from ``$NGINX``, else ``PATH``, else /usr/sbin/nginx.
* **Caddy** runs ``deploy/caddy/Caddyfile`` unchanged; the file takes its addresses from
  environment placeholders, set here: the site address, both upstreams and ``admin off`` (no
  port 2019). HOME and the XDG folders point into the temp dir, so Caddy writes nothing
  elsewhere. Taken from ``$CADDY``, else ``PATH``, else /usr/bin/caddy.
* **Traefik** cannot be installed here: ``traefik_emulator.py`` reads deploy/traefik's files
  (ports 8080/8000/9091 mapped to ours) and follows Traefik's ForwardAuth code.

A proxy that is not installed skips its tests, or fails them when ``CI=true``.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
NGINX_DEPLOY = ROOT / "deploy" / "nginx"
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
TRAEFIK_DEPLOY = ROOT / "deploy" / "traefik"


@dataclass
class Stack:
    """The running processes and where they listen."""

    base: str  # http://127.0.0.1:<proxy port>
    host: str  # 127.0.0.1:<proxy port>, as the browser sends it
    conf_dir: Path  # the proxy's config folder
    config_path: Path  # the sidecar's config file
    app_port: int = 0
    sidecar_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def sidecar(self) -> str:
        """The sidecar's own address, for tests that talk to it without the proxy."""
        return f"http://127.0.0.1:{self.sidecar_port}"

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def all_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name)}" for name in self.logs)


@dataclass(frozen=True)
class Launch:
    """How to run one proxy: its command, environment, config check and extra log files."""

    args: list[str]
    conf_dir: Path
    env: dict[str, str] | None = None  # None: the tests' own environment
    check: list[str] | None = None  # a config test run first (nginx -t, caddy validate)
    logs: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxySpec:
    """One proxy: where its binary is, how to launch it, and where proxies differ for users."""

    name: str  # also the process's name in Stack.procs and Stack.logs
    find: Callable[[], str | None]
    install_hint: str
    launch: Callable[[str, Path, Stack], Launch]  # (binary, temp dir, stack) -> Launch
    # Where the proxies differ, as a user sees it (test_journey.py asserts each):
    #: /healthz goes through the check too (Traefik: one router for the whole app).
    checks_healthz: bool
    #: What protected paths answer when the sidecar cannot be reached.
    sidecar_down_status: int
    #: A client's X-Original-URL reaches the sidecar (it refuses one that disagrees) rather
    #: than being overwritten (nginx) or dropped (Caddy).
    passes_original_url: bool
    #: ``/_2fa``'s redirect to the settings page: its status, and whether the Location is
    #: absolute (nginx's own ``return 302``, with absolute_redirect on) or the path alone.
    settings_redirect: tuple[int, bool]


# -- the sidecar's side, the same behind every proxy ---------------------------------------
def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` into ``base``: mappings merged key by key, anything else replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def sidecar_config(path: Path, port: int, app_port: int, db: Path,
                   extra: dict[str, Any] | None = None) -> None:
    """The sidecar's config; ``extra`` is merged in (mappings key by key, lists replaced)."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "totp": {"issuer": "E2E Test"},
        "primary": {"resolver": "introspect", "session_cookies": ["demo_session"],
                    "login_url": "/login", "logout_url": "/logout",
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
    path.write_text(yaml.safe_dump(deep_merge(config, extra or {})))


# -- processes -----------------------------------------------------------------------------
def start(stack: Stack, name: str, args: list[str], log_dir: Path,
          env: dict[str, str] | None = None) -> None:
    """Run ``args`` as ``name``; its output goes to ``<log_dir>/<name>.log``."""
    log = log_dir / f"{name}.log"
    stack.logs[name] = log
    with log.open("wb") as out:
        stack.procs[name] = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_ready(stack: Stack, name: str, url: str, any_status: bool = False) -> None:
    """Poll ``url`` until it answers 200 (any status with ``any_status``), the process dies,
    or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT
    proc = stack.procs[name]
    last: str = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{stack.all_logs()}")
        try:
            status = httpx.get(url, timeout=1.0).status_code
            if status == 200 or any_status:
                return
            last = f"status {status}"
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


# -- the proxies ---------------------------------------------------------------------------
def find_binary(variable: str, name: str, fallback: str) -> str | None:
    """``$VARIABLE`` when set (and nothing else), else ``name`` on PATH, else ``fallback``."""
    explicit = os.environ.get(variable)
    candidates = [explicit] if explicit else [shutil.which(name), fallback]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def write_nginx_prefix(conf_dir: Path, nginx_port: int, app_port: int, sidecar_port: int) -> None:
    """DIR with deploy/nginx's files; own upstreams; the listen line on a free port."""
    conf_dir.mkdir(parents=True)
    shutil.copy(NGINX_DEPLOY / "nginx.conf", conf_dir / "nginx.conf")
    shutil.copy(NGINX_DEPLOY / "totp-sidecar-http.conf", conf_dir / "totp-sidecar-http.conf")
    (conf_dir / "snippets").symlink_to(NGINX_DEPLOY / "snippets", target_is_directory=True)
    upstreams = (NGINX_DEPLOY / "totp-sidecar-upstreams.conf").read_text()
    upstreams, n_sidecar = re.subn(r"server 127\.0\.0\.1:9091;", f"server 127.0.0.1:{sidecar_port};",
                                   upstreams)
    upstreams, n_app = re.subn(r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{app_port};",
                               upstreams)
    assert (n_sidecar, n_app) == (1, 1), "deploy/nginx/totp-sidecar-upstreams.conf changed shape"
    (conf_dir / "totp-sidecar-upstreams.conf").write_text(upstreams)
    server = (NGINX_DEPLOY / "totp-sidecar.conf").read_text()
    server, n_listen = re.subn(r"(?m)^(\s*)listen 8080;", rf"\g<1>listen 127.0.0.1:{nginx_port};",
                               server)
    assert n_listen == 1, "deploy/nginx/totp-sidecar.conf: expected one `listen 8080;` line"
    (conf_dir / "totp-sidecar.conf").write_text(server)


def launch_nginx(binary: str, tmp: Path, stack: Stack) -> Launch:
    conf_dir = tmp / "nginx"
    write_nginx_prefix(conf_dir, stack.port, stack.app_port, stack.sidecar_port)
    args = [binary, "-p", f"{conf_dir}/", "-c", str(conf_dir / "nginx.conf"),
            "-e", str(conf_dir / "error.log")]
    return Launch(args, conf_dir, check=[*args, "-t", "-q"],
                  logs={"nginx-error": conf_dir / "error.log"})


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


def launch_caddy(binary: str, tmp: Path, stack: Stack) -> Launch:
    def args(command: str) -> list[str]:
        return [binary, command, "--adapter", "caddyfile", "--config", str(CADDYFILE)]

    env = caddy_env(tmp / "caddy-home", stack.port, f"127.0.0.1:{stack.sidecar_port}",
                    f"127.0.0.1:{stack.app_port}")
    return Launch(args("run"), CADDYFILE.parent, env=env, check=args("validate"))


def emulator_args(traefik_port: int, app_port: int, sidecar_port: int) -> list[str]:
    """The emulator with deploy/traefik's files; their ports 8080/8000/9091 mapped to ours."""
    return [sys.executable, "-m", "tests.e2e.traefik_emulator",
            "--port-map", f"8080:{traefik_port}", "--port-map", f"8000:{app_port}",
            "--port-map", f"9091:{sidecar_port}"]


def launch_traefik(binary: str, tmp: Path, stack: Stack) -> Launch:
    del binary, tmp  # the emulator runs in this Python and writes nothing
    return Launch(emulator_args(stack.port, stack.app_port, stack.sidecar_port), TRAEFIK_DEPLOY)


NGINX = ProxySpec(
    "nginx", lambda: find_binary("NGINX", "nginx", "/usr/sbin/nginx"),
    "set NGINX, or install it: apt-get install nginx", launch_nginx,
    checks_healthz=False, sidecar_down_status=500, passes_original_url=False,
    settings_redirect=(302, True))
CADDY = ProxySpec(
    "caddy", lambda: find_binary("CADDY", "caddy", "/usr/bin/caddy"),
    "set CADDY, or install it: apt-get install caddy", launch_caddy,
    checks_healthz=False, sidecar_down_status=502, passes_original_url=False,
    settings_redirect=(302, False))
TRAEFIK = ProxySpec(
    "traefik", lambda: sys.executable, "", launch_traefik,
    checks_healthz=True, sidecar_down_status=500, passes_original_url=True,
    settings_redirect=(303, False))
PROXIES = {spec.name: spec for spec in (NGINX, CADDY, TRAEFIK)}


def proxy_binary(spec: ProxySpec) -> str:
    """The proxy's binary; without it the test is skipped, or fails when ``CI=true``."""
    found = spec.find()
    if found is None:
        message = f"{spec.name} not found ({spec.install_hint})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def new_stack(tmp: Path, app_port: int | None = None, sidecar_port: int | None = None) -> Stack:
    """A Stack on a free proxy port (and free upstream ports unless given); nothing runs yet."""
    host = f"127.0.0.1:{free_port()}"
    return Stack(base=f"http://{host}", host=host, conf_dir=tmp, config_path=tmp / "sidecar.yaml",
                 app_port=app_port or free_port(), sidecar_port=sidecar_port or free_port())


@contextlib.contextmanager
def running_proxy(spec: ProxySpec, binary: str, stack: Stack, tmp: Path) -> Iterator[Stack]:
    """The proxy alone, in front of ``stack``'s upstream ports, until it answers HTTP at all
    (the caller runs the upstreams and waits for what it needs); stopped on exit."""
    launch = spec.launch(binary, tmp, stack)
    stack.conf_dir = launch.conf_dir
    try:
        if launch.check is not None:
            result = subprocess.run(launch.check, env=launch.env, capture_output=True, text=True,
                                    timeout=START_TIMEOUT, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, \
                f"{spec.name}: config check failed:\n{(result.stderr + result.stdout)[-3000:]}"
        start(stack, spec.name, launch.args, tmp, env=launch.env)
        stack.logs.update(launch.logs)
        wait_ready(stack, spec.name, f"{stack.base}/healthz", any_status=True)
        yield stack
    finally:
        if spec.name in stack.procs:
            stop(stack.procs[spec.name])


@contextlib.contextmanager
def running(spec: ProxySpec, binary: str, tmp: Path, with_sidecar: bool = True,
            extra_config: dict[str, Any] | None = None) -> Iterator[Stack]:
    """The proxy + demo app (+ sidecar), all on free 127.0.0.1 ports; stopped on exit (the
    proxy first, so that it sends nothing to upstreams that are going away)."""
    stack = new_stack(tmp)
    sidecar_config(stack.config_path, stack.sidecar_port, stack.app_port, tmp / "sidecar.db",
                   extra_config)
    try:
        start(stack, "app", [sys.executable, "-m", "uvicorn", "--factory",
                             "sidecar.demo.app:create_demo_app", "--host", "127.0.0.1",
                             "--port", str(stack.app_port), "--log-level", "warning",
                             "--no-access-log"], tmp)
        if with_sidecar:
            start(stack, "sidecar", [sys.executable, "-m", "sidecar", "serve",
                                     "--config", str(stack.config_path)], tmp)
        with running_proxy(spec, binary, stack, tmp):
            wait_ready(stack, "app", f"http://127.0.0.1:{stack.app_port}/healthz")
            if with_sidecar:
                wait_ready(stack, "sidecar", f"{stack.sidecar}/healthz")
            yield stack
    finally:
        for name in ("sidecar", "app"):
            if name in stack.procs:
                stop(stack.procs[name])


# -- a real application instead of the demo app (tests/e2e/test_recipes.py) ----------------
@dataclass(frozen=True)
class RealApp:
    """An application installed from PyPI, run unchanged with its own login."""

    name: str  # also the process's name in Stack.procs and Stack.logs
    args: Callable[[int, Path], list[str]]  # (port, temp dir) -> the command line
    ready_path: str  # a path that answers 200 once the app is up (asked directly, not proxied)
    env: dict[str, str] = field(default_factory=dict)


def require_module(module: str, package: str) -> None:
    """Skip (fail under ``CI=true``) when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        message = f"{module} not installed (pip install {package}; it is in the test extras)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def recipe_sidecar_config(path: Path, port: int, db: Path, recipe: dict[str, Any]) -> None:
    """The sidecar's config: its own address, fresh secrets and storage, and the recipe's keys
    (``primary``, ``rules``, ...) exactly as the recipe gives them."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "totp": {"issuer": "E2E Recipes"},
        "secrets": {"signing_keys": [secrets.token_urlsafe(48)],
                    "hash_key": secrets.token_urlsafe(48),
                    "encryption_keys": [secrets.token_urlsafe(48)]},
        "storage": {"sqlite": {"path": str(db)}},
    }
    path.write_text(yaml.safe_dump(deep_merge(config, recipe)))


@contextlib.contextmanager
def running_real_app(spec: ProxySpec, binary: str, tmp: Path, app: RealApp,
                     recipe: Callable[[int], dict[str, Any]]) -> Iterator[Stack]:
    """The proxy + ``app`` + the sidecar configured by ``recipe(app_port)``; stopped on exit."""
    stack = new_stack(tmp)
    recipe_sidecar_config(stack.config_path, stack.sidecar_port, tmp / "sidecar.db",
                          recipe(stack.app_port))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOTP_")}, **app.env}
    try:
        start(stack, app.name, app.args(stack.app_port, tmp), tmp, env=env)
        start(stack, "sidecar", [sys.executable, "-m", "sidecar", "serve",
                                 "--config", str(stack.config_path)], tmp)
        with running_proxy(spec, binary, stack, tmp):
            wait_ready(stack, app.name, f"http://127.0.0.1:{stack.app_port}{app.ready_path}")
            wait_ready(stack, "sidecar", f"{stack.sidecar}/healthz")
            yield stack
    finally:
        for name in ("sidecar", app.name):
            if name in stack.procs:
                stop(stack.procs[name])
