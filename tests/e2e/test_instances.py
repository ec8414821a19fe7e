"""Two real sidecar processes on one database: what one of them decides, the other knows.

Run once with both on one PostgreSQL database (the first instance has the DSN in its config,
the second from ``TOTP_SIDECAR_POSTGRES_DSN``) and once with both on one SQLite file (WAL).
The ``header`` resolver names the user, so no app is needed; each test has its own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from sidecar.accounts import STATE_CACHE_SECONDS, Accounts
from sidecar.config import ENV_POSTGRES_DSN, load_config
from sidecar.core import totp
from sidecar.wiring import build_parts, make_storage
from tests.conftest import config_dict
from tests.e2e.stacks import ROOT
from tests.e2e.test_faults import SESSION, auth, page
from tests.pg import drop_database, fresh_database_sync
from tests.ports import free_port

MAX_FAILURES = 5


@dataclass
class Pair:
    config: Path  # instance A's config (also the one the CLI uses)
    ports: tuple[int, int]
    logs: tuple[Path, Path]

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in self.logs)


@dataclass
class Enrolled:
    user: str
    secret: str
    codes: list[str]
    cookie: str  # app session + a 2FA cookie issued at enrollment


def write(path: Path, tmp: Path, port: int, storage: dict[str, object]) -> Path:
    data = config_dict(tmp, primary={"resolver": "header", "session_cookies": ["upstream_session"]},
                       storage=storage, server={"port": port, "log_level": "warning"},
                       throttle={"max_failures": MAX_FAILURES, "max_failures_per_client": 1000},
                       rules=[{"path": "/reports", "level": "required"}])
    path.write_text(yaml.safe_dump(data))
    return path


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    with running_pair(request.param, tmp_path_factory.mktemp(f"instances-{request.param}")) as (
            running, _):
        yield running


@contextlib.contextmanager
def running_pair(kind: str, tmp: Path) -> Iterator[tuple[Pair, str]]:
    """Two sidecar processes on one database; the pair and the PostgreSQL DSN ("" for SQLite)."""
    ports = (free_port(), free_port())
    env_b = dict(os.environ)
    with storages(kind, tmp) as (storage_a, storage_b, dsn):
        if dsn:
            env_b[ENV_POSTGRES_DSN] = dsn
        configs = (write(tmp / "a.yaml", tmp, ports[0], storage_a),
                   write(tmp / "b.yaml", tmp, ports[1], storage_b))
        logs = (tmp / "a.log", tmp / "b.log")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            # both start at once on a fresh database: migrations must not race
            for config, log, env in zip(configs, logs, (os.environ, env_b), strict=True):
                with log.open("wb") as out:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "sidecar", "serve", "--config", str(config)],
                        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        env=dict(env)))
            for proc, port, log in zip(procs, ports, logs, strict=True):
                wait_ready(proc, port, log)
            yield Pair(configs[0], ports, logs), dsn
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)


@contextlib.contextmanager
def storages(kind: str, tmp: Path) -> Iterator[tuple[dict[str, object], dict[str, object], str]]:
    """Storage sections for A and B, and the DSN that B reads from its environment."""
    if kind == "sqlite":
        shared: dict[str, object] = {"sqlite": {"path": str(tmp / "shared.db")}}
        yield shared, shared, ""
        return
    with fresh_database_sync() as dsn:
        yield {"postgres": {"dsn": dsn}}, {"postgres": None}, dsn


async def _enroll(config_path: Path, user: str) -> Enrolled:
    """``user`` enrolled 90 s ago (so the current code is unused), through either instance's DB."""
    config = load_config(config_path)
    storage = make_storage(config)
    await storage.open()
    try:
        past = time.time() - 90
        service = Accounts(config, storage, clock=lambda: past)
        secret = await service.pending_secret(user)
        result, codes, generation = await service.complete_enrollment(
            user, totp.code_at(secret, past), "127.0.0.1")
        assert result.check.value == "ok"
        value = build_parts(config, storage=storage).passes.issue(user, SESSION, generation)
        return Enrolled(user, secret, codes, f"{SESSION}; {config.cookie.name}={value}")
    finally:
        await storage.close()


def enroll(pair: Pair, user: str) -> Enrolled:
    return asyncio.run(_enroll(pair.config, user))


def csrf(port: int, user: str) -> str:
    form = page(port, "/_2fa/challenge?rd=/reports", SESSION, user)
    assert form.status_code == 200, form.text
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match, form.text
    return match.group(1)


def post_code(port: int, user: str, code: str, token: str | None = None) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/_2fa/challenge", timeout=10, headers={
        "remote-user": user, "cookie": SESSION, "accept": "text/html"},
        data={"csrf": token or csrf(port, user), "code": code, "rd": "/reports"})


def test_a_code_accepted_by_one_instance_is_refused_by_the_other(pair: Pair) -> None:
    a, b = pair.ports
    bob = enroll(pair, "bob")
    code = totp.code_at(bob.secret, time.time())
    first = post_code(a, "bob", code)
    assert first.status_code == 303, first.text
    assert "totp_sidecar=" in first.headers["set-cookie"]
    again = post_code(b, "bob", code)
    assert again.status_code == 400 and "set-cookie" not in again.headers


def test_failures_on_both_instances_add_up_to_one_lockout(pair: Pair) -> None:
    a, b = pair.ports
    carol = enroll(pair, "carol")
    now = time.time()
    near = {totp.code_at(carol.secret, now + 30 * k) for k in range(-2, 3)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in near)
    for port in (a, a, a, b):
        assert post_code(port, "carol", wrong).status_code == 400
    assert post_code(b, "carol", wrong).status_code == 429  # the 5th failure locks
    right = totp.code_at(carol.secret, time.time())
    for port in (a, b):  # locked on both, even for the right code
        locked = post_code(port, "carol", right)
        assert locked.status_code == 429 and "set-cookie" not in locked.headers


def test_one_recovery_code_sent_to_both_at_once_works_once(pair: Pair) -> None:
    a, b = pair.ports
    dave = enroll(pair, "dave")
    tokens = {port: csrf(port, "dave") for port in (a, b)}
    start = threading.Barrier(2)

    def send(port: int) -> int:
        start.wait(5)
        return post_code(port, "dave", dave.codes[0], tokens[port]).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(send, (a, b)))
    assert statuses == [303, 400], pair.log_text()


def test_a_cookie_from_one_instance_passes_the_other_and_a_reset_ends_it_on_both(
        pair: Pair) -> None:
    a, b = pair.ports
    erin = enroll(pair, "erin")
    issued = post_code(a, "erin", totp.code_at(erin.secret, time.time()))
    assert issued.status_code == 303
    match = re.search(r"totp_sidecar=([^;]+)", issued.headers["set-cookie"])
    assert match
    cookie = f"{SESSION}; totp_sidecar={match.group(1)}"
    for port in (a, b):  # both now hold erin's state in their cache
        assert auth(port, cookie, "erin").status_code == 200
        assert auth(port, SESSION, "erin").status_code == 401  # no 2FA cookie, no entry
    reset = subprocess.run([sys.executable, "-m", "sidecar", "users", "--config", str(pair.config),
                            "reset", "erin"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert reset.returncode == 0, reset.stderr
    reset_at = time.monotonic()
    pending = {a, b}
    while pending and time.monotonic() - reset_at < STATE_CACHE_SECONDS + 2:
        pending = {port for port in pending if auth(port, cookie, "erin").status_code == 200}
        time.sleep(0.1)
    assert not pending, f"the cookie still passes on {pending}"
    for port in (a, b):  # required path, 2FA off: sent to set-up, the old cookie no longer counts
        ended = auth(port, cookie, "erin")
        assert ended.status_code == 401 and "/enroll" in ended.headers["location"]


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_a_stale_not_enrolled_is_not_served_while_storage_is_down(kind: str, tmp_path: Path) -> None:
    """B saw zed without 2FA; zed enrolls through A; the database goes away more than the
    state cache time later: a new login of zed without a code must not pass B (it did: 200)."""
    with running_pair(kind, tmp_path) as (pair, dsn):
        a, b = pair.ports
        home = {"x-original-url": "http://app.test/", "accept": "text/html", "remote-user": "zed"}
        seen = httpx.get(f"http://127.0.0.1:{b}/auth/nginx", headers=home | {"cookie": SESSION})
        assert seen.status_code == 200  # optional path, not enrolled: passes, and B remembers it
        enroll(pair, "zed")
        time.sleep(STATE_CACHE_SECONDS + 0.5)
        if dsn:
            asyncio.run(drop_database(dsn.rsplit("/", 1)[1]))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{tmp_path / 'shared.db'}{suffix}").unlink(missing_ok=True)
        other_login = home | {"cookie": "upstream_session=a-new-login"}
        answer = httpx.get(f"http://127.0.0.1:{b}/auth/nginx", headers=other_login, timeout=10)
        assert answer.status_code == 503, (answer.status_code, answer.headers)
