"""Two real sidecar processes on one database: what one of them decides, the other knows.

Run with both on one PostgreSQL database (the first instance has the DSN in its config, the
second from ``TOTP_SIDECAR_POSTGRES_DSN``), on one PostgreSQL database behind a real PgBouncer
in transaction mode (``listen_dsn`` direct), and on one SQLite file (WAL). The ``header``
resolver names the user, so no app is needed; each test has its own user.

A revocation on one instance (a disable, an admin reset, a forgotten device) ends the old
cookie on the other within ``REVOKED_WITHIN`` seconds, measured from the moment the change
was answered (it committed before): the change feed, not a timer.
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

import asyncpg
import httpx
import pytest
import yaml

from sidecar.accounts import Accounts
from sidecar.config import ENV_POSTGRES_DSN, load_config
from sidecar.core import totp
from sidecar.states import STALE_SECONDS
from sidecar.wiring import build_parts, make_storage
from tests.conftest import config_dict
from tests.e2e.stacks import ROOT
from tests.e2e.test_faults import SESSION, auth, page
from tests.pg import MAINTENANCE_DSN, drop_database, fresh_database_sync
from tests.pgbouncer import running_pgbouncer, through
from tests.ports import free_port

MAX_FAILURES = 5
REVOKED_WITHIN = 1.0  # seconds from the change's answer to the old cookie's end elsewhere
KINDS = ["postgres", "pgbouncer", "sqlite"]


@dataclass
class Pair:
    config: Path  # instance A's config (also the one the CLI uses)
    ports: tuple[int, int]
    logs: tuple[Path, Path]
    dsn: str = ""  # PostgreSQL: the database, directly ("" for SQLite)

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
                       rules=[{"path": "/reports", "level": "required"}],
                       remember_device={"enabled": True})
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


@pytest.fixture(scope="module", params=KINDS)
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
        if kind == "postgres":
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
            yield Pair(configs[0], ports, logs, dsn), dsn
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)


@contextlib.contextmanager
def storages(kind: str, tmp: Path) -> Iterator[tuple[dict[str, object], dict[str, object], str]]:
    """Storage sections for A and B, and the database's direct DSN (B reads it from its
    environment on plain PostgreSQL)."""
    if kind == "sqlite":
        shared: dict[str, object] = {"sqlite": {"path": str(tmp / "shared.db")}}
        yield shared, shared, ""
        return
    with fresh_database_sync() as dsn:
        if kind == "postgres":
            yield {"postgres": {"dsn": dsn}}, {"postgres": None}, dsn
            return
        with running_pgbouncer() as port:
            pooled: dict[str, object] = {"postgres": {
                "dsn": through(port, dsn), "pgbouncer": True, "listen_dsn": dsn}}
            yield pooled, pooled, dsn


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


def ended_after(port: int, cookie: str, user: str, since: float) -> float:
    """Seconds from ``since`` until ``cookie`` stops passing on ``port`` (asked every 20 ms)."""
    while True:
        status = auth(port, cookie, user).status_code
        elapsed = time.monotonic() - since
        if status != 200:
            return elapsed
        assert elapsed < REVOKED_WITHIN + 2, f"the cookie still passes on {port}"
        time.sleep(0.02)


def settings_form(port: int, user: str, cookie: str) -> str:
    """The CSRF token of the settings page of a verified session."""
    form = page(port, "/_2fa/settings", cookie, user)
    assert form.status_code == 200, form.text
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match, form.text
    return match.group(1)


def disable_on(port: int, user: Enrolled) -> float:
    """``user`` turns 2FA off through the settings page of ``port``; when it was answered."""
    token = settings_form(port, user.user, user.cookie)
    answer = httpx.post(f"http://127.0.0.1:{port}/_2fa/disable", timeout=10, headers={
        "remote-user": user.user, "cookie": user.cookie, "accept": "text/html"},
        data={"csrf": token, "code": totp.code_at(user.secret, time.time()), "confirm": "1"})
    done = time.monotonic()
    assert answer.status_code == 303 and "notice=disabled" in answer.headers["location"], answer.text
    return done


def users_reset(pair: Pair, user: str) -> float:
    """``totp-sidecar users reset`` (a process of its own); when it ended."""
    reset = subprocess.run([sys.executable, "-m", "sidecar", "users", "--config", str(pair.config),
                            "reset", user], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert reset.returncode == 0, reset.stderr
    return time.monotonic()


async def _remember_device(config_path: Path, user: str) -> str:
    config = load_config(config_path)
    storage = make_storage(config)
    await storage.open()
    try:
        devices = build_parts(config, storage=storage).devices
        assert devices is not None
        value = await devices.remember(user, 1, "Firefox/120 Linux", int(time.time()))
        return f"{SESSION}; {config.remember_device.cookie_name}={value}"
    finally:
        await storage.close()


def test_a_cookie_from_one_instance_passes_the_other_and_a_reset_ends_it_on_both(
        pair: Pair) -> None:
    a, b = pair.ports
    erin = enroll(pair, "erin")
    issued = post_code(a, "erin", totp.code_at(erin.secret, time.time()))
    assert issued.status_code == 303
    match = re.search(r"totp_sidecar=([^;]+)", issued.headers["set-cookie"])
    assert match
    cookie = f"{SESSION}; totp_sidecar={match.group(1)}"
    for port in (a, b):  # both now hold erin's state in memory
        assert auth(port, cookie, "erin").status_code == 200
        assert auth(port, SESSION, "erin").status_code == 401  # no 2FA cookie, no entry
    reset_at = users_reset(pair, "erin")
    for port in (b, a):
        assert ended_after(port, cookie, "erin", reset_at) <= REVOKED_WITHIN, pair.log_text()
    for port in (a, b):  # required path, 2FA off: sent to set-up, the old cookie no longer counts
        ended = auth(port, cookie, "erin")
        assert ended.status_code == 401 and "/enroll" in ended.headers["location"]


def test_a_disable_on_one_instance_ends_the_cookie_on_the_other_within_a_second(
        pair: Pair) -> None:
    a, b = pair.ports
    fay = enroll(pair, "fay")
    assert auth(b, fay.cookie, "fay").status_code == 200  # B holds fay's state
    done = disable_on(a, fay)
    assert ended_after(b, fay.cookie, "fay", done) <= REVOKED_WITHIN, pair.log_text()


def test_a_device_forgotten_on_one_instance_ends_on_the_other_within_a_second(
        pair: Pair) -> None:
    a, b = pair.ports
    gus = enroll(pair, "gus")
    device = asyncio.run(_remember_device(pair.config, "gus"))
    vouched = auth(b, device, "gus")  # no 2FA cookie: the remembered device vouches on B
    assert vouched.status_code == 200 and "totp_sidecar=" in vouched.headers["set-cookie"]
    assert auth(b, device, "gus").status_code == 200  # ... from memory now
    token = settings_form(a, "gus", gus.cookie)
    forgot = httpx.post(f"http://127.0.0.1:{a}/_2fa/devices", timeout=10, headers={
        "remote-user": "gus", "cookie": gus.cookie, "accept": "text/html"},
        data={"csrf": token, "device": "all"})
    done = time.monotonic()
    assert forgot.status_code == 303, forgot.text
    assert ended_after(b, device, "gus", done) <= REVOKED_WITHIN, pair.log_text()
    assert auth(b, gus.cookie, "gus").status_code == 200  # the 2FA cookie itself still counts


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


async def _terminate(dsn: str, only_listeners: bool) -> int:
    """Terminate the database's connections (only the LISTEN ones, or all): how many."""
    conn = await asyncpg.connect(MAINTENANCE_DSN)
    try:
        where = " AND application_name = 'totp-sidecar feed'" if only_listeners else ""
        return int(await conn.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1"
            f" AND pid <> pg_backend_pid(){where}", dsn.rsplit("/", 1)[1]))
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["postgres", "pgbouncer"])
def test_a_lost_listen_connection_or_a_restarted_database_loses_no_revocation(
        kind: str, tmp_path: Path) -> None:
    """The LISTEN connections are cut, then every connection of the database (what a restart
    of the server does): a revocation made right then still ends the cookie within a second
    (the feed is polled), and B drops its states when it listens again."""
    with running_pair(kind, tmp_path) as (pair, dsn):
        a, b = pair.ports
        hal, ivy = enroll(pair, "hal"), enroll(pair, "ivy")
        for user in (hal, ivy):
            assert auth(b, user.cookie, user.user).status_code == 200
        drops = metric(b, "totp_sidecar_state_drops")
        assert asyncio.run(_terminate(dsn, only_listeners=True)) == 2  # A's and B's
        done = disable_on(a, hal)
        assert ended_after(b, hal.cookie, "hal", done) <= REVOKED_WITHIN, pair.log_text()
        deadline = time.monotonic() + 10
        while metric(b, "totp_sidecar_state_drops") < drops + 2:  # lost, and listening again
            assert time.monotonic() < deadline, pair.log_text()
            time.sleep(0.1)
        assert auth(b, ivy.cookie, "ivy").status_code == 200  # read again
        assert asyncio.run(_terminate(dsn, only_listeners=False)) >= 2
        done = users_reset(pair, "ivy")
        assert ended_after(b, ivy.cookie, "ivy", done) <= REVOKED_WITHIN, pair.log_text()
        assert metric(b, "totp_sidecar_feed_healthy") == 1


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_a_stale_not_enrolled_is_not_served_while_storage_is_down(kind: str, tmp_path: Path) -> None:
    """B saw zed without 2FA; zed enrolls through A; the database goes away once B has read
    the feed: a new login of zed without a code must not pass B (it did: 200)."""
    with running_pair(kind, tmp_path) as (pair, dsn):
        a, b = pair.ports
        home = {"x-original-url": "http://app.test/", "x-original-method": "GET",
                "accept": "text/html", "remote-user": "zed"}
        seen = httpx.get(f"http://127.0.0.1:{b}/auth/nginx", headers=home | {"cookie": SESSION})
        assert seen.status_code == 200  # optional path, not enrolled: passes, and B remembers it
        enroll(pair, "zed")
        time.sleep(REVOKED_WITHIN + 0.5)
        if dsn:
            asyncio.run(drop_database(dsn.rsplit("/", 1)[1]))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{tmp_path / 'shared.db'}{suffix}").unlink(missing_ok=True)
        other_login = home | {"cookie": "upstream_session=a-new-login"}
        answer = httpx.get(f"http://127.0.0.1:{b}/auth/nginx", headers=other_login, timeout=10)
        assert answer.status_code == 503, (answer.status_code, answer.headers)
        time.sleep(STALE_SECONDS + 0.5)  # the feed could not be read for long: nothing from memory
        assert auth(b, SESSION, "zed").status_code == 503
