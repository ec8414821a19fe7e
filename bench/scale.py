"""Many users, two instances: the change feed's benchmarks (part 7 of run_all).

* **Mixed ÷ one user, same server**: `/auth/nginx` with `bench/mixed_users.lua`: 20,000
  enrolled users in turn (each its own app session and 2FA cookie), every 4th request
  anonymous, against the same server asked by one user only (the same script, one line).
  The user is named by the `header` resolver (`Remote-User`), so neither side asks a
  who-am-I URL: what differs is only how many users the sidecar keeps. Every user is seen
  once first (the warm-up: a first sight reads storage once); then one user and the mix are
  measured in interleaved rounds. Once on SQLite (one instance), once on PostgreSQL with two
  instances (LISTEN/NOTIFY between them), each instance measured in turn.
* **Revocation delay between two instances**: instance B has a user's state in memory (a
  request with the user's 2FA cookie passed); a third process turns the user's 2FA off in the
  database (what an admin reset on instance A does); B is asked again and again until the
  cookie no longer passes. The delay counts from the moment the change was committed
  (the write returned). PostgreSQL (LISTEN) and SQLite (polled), 200 users each.

The sidecars are `totp-sidecar serve` (one process each) pinned to CPU 0; wrk `-t1 -c32` on
CPU 1. PostgreSQL: a fresh database on `$TOTP_SIDECAR_BENCH_POSTGRES` (a maintenance DSN,
by default `postgresql://postgres@127.0.0.1:5432/postgres`), dropped afterwards. Usage:

    .venv/bin/python bench/scale.py [--seconds 5] [--rounds 3] [--users 20000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH,
    SERVER_CPU,
    WrkResult,
    free_port,
    load,
    log,
    med,
    median_result,
    metrics_count,
    new_secrets,
    pinned,
    processes,
    seed_users,
    sidecar_command,
    sign_cookies,
    spread,
    user_id,
    wait_http,
    write_config,
    wrk,
    wrk_until,
)

PG_ENV = "TOTP_SIDECAR_BENCH_POSTGRES"
MAINTENANCE = os.environ.get(PG_ENV, "postgresql://postgres@127.0.0.1:5432/postgres")
SCRIPT = BENCH / "mixed_users.lua"


@contextlib.contextmanager
def storage_section(kind: str, tmp: Path) -> Iterator[dict[str, Any]]:
    """The `storage` section of a config of this kind (a fresh database, dropped after)."""
    if kind == "sqlite":
        yield {"sqlite": {"path": str(tmp / f"{kind}.db")}}
        return
    import asyncpg

    name = f"totp_sidecar_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(MAINTENANCE)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield {"postgres": {"dsn": urlunsplit(urlsplit(MAINTENANCE)._replace(path=f"/{name}"))}}
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def seed(config_path: Path, kind: str, count: int) -> None:
    """``count`` users with 2FA on, generation 1 (``user_id(i)``), as ``common.seed_users``."""
    if kind == "sqlite":
        seed_users(config_path, count)
        return
    import asyncpg

    from sidecar.crypto import SecretBox
    from sidecar.wiring import make_storage

    config = load(config_path)

    async def run() -> None:
        storage = make_storage(config)
        await storage.open()  # the migrations
        await storage.close()
        box = SecretBox(config.encryption_keys)
        now = int(time.time())
        conn = await asyncpg.connect(config.storage.dsn)
        try:
            await conn.executemany(
                "INSERT INTO users (user_id, secret, enabled_at, last_step, generation)"
                " VALUES ($1, $2, $3, 0, 1)",
                [(user_id(i), box.seal(user_id(i), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), now)
                 for i in range(count)])
        finally:
            await conn.close()

    asyncio.run(run())


def user_lines(path: Path, config_path: Path, users: list[str]) -> Path:
    cookies = sign_cookies(config_path, users)
    path.write_text("".join(f"{u}\t{c}\n" for u, c in zip(users, cookies, strict=True)))
    return path


def start_instances(procs: Any, configs: list[Path], ports: list[int]) -> list[int]:
    pids = []
    for n, (config, port) in enumerate(zip(configs, ports, strict=True)):
        args, env, _ = sidecar_command(config, port, 1, "cli")
        pids.append(procs.start(f"sidecar-{n}", pinned(SERVER_CPU, args), port, env).pid)
        wait_http(f"http://127.0.0.1:{port}/readyz")
    return pids


def cached_users(port: int) -> int:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('totp_sidecar_cache_entries{cache="user_states"}'):
            return int(float(line.split()[-1]))
    return -1


def mixed_ratio(tmp: Path, kind: str, instances: int, seconds: int, rounds: int,
                users: int = 20_000, anon_every: int = 4, connections: int = 32) -> dict[str, Any]:
    keys = new_secrets()
    ports = [free_port() for _ in range(instances)]
    out: dict[str, Any] = {"kind": kind, "instances": instances, "users": users,
                           "anon_every": anon_every}
    with storage_section(kind, tmp) as section:
        configs = [write_config(tmp / f"{kind}-{n}.yaml", tmp / f"{kind}.db", port, keys,
                                resolver="header", storage=section)
                   for n, port in enumerate(ports)]
        seed(configs[0], kind, users)
        many = user_lines(tmp / "many.tsv", configs[0], [user_id(i) for i in range(users)])
        one = user_lines(tmp / "one.tsv", configs[0], [user_id(0)])
        with processes(tmp) as procs:
            start_instances(procs, configs, ports)
            results: dict[str, list[WrkResult]] = {"one": [], "mixed": []}
            for port in ports:  # warm-up: every user once (and a little more) on every instance
                url = f"http://127.0.0.1:{port}/auth/nginx"
                served = metrics_count(port)
                wrk_until(url, lambda p=port, s=served: metrics_count(p) - s >= users * 1.4,
                          connections=connections, script=SCRIPT,
                          script_args=(str(many), str(anon_every)))
                wrk(url, seconds=2, connections=connections, script=SCRIPT,
                    script_args=(str(one), "0"))
            for _ in range(rounds):
                for port in ports:
                    url = f"http://127.0.0.1:{port}/auth/nginx"
                    results["one"].append(wrk(url, seconds=seconds, connections=connections,
                                              script=SCRIPT, script_args=(str(one), "0")))
                    results["mixed"].append(wrk(url, seconds=seconds, connections=connections,
                                                script=SCRIPT,
                                                script_args=(str(many), str(anon_every))))
            out["cached_users"] = [cached_users(port) for port in ports]
    out["median"] = {name: median_result(rs) for name, rs in results.items()}
    out["spread"] = {name: spread(rs) for name, rs in results.items()}
    out["ratio"] = med([r.rps for r in results["mixed"]]) / med([r.rps for r in results["one"]])
    return out


def revocation_delay(tmp: Path, kind: str, samples: int = 200) -> dict[str, Any]:
    """Seconds from a committed disable (by a third process) until B stops passing the cookie."""
    import httpx

    from sidecar.wiring import make_storage

    keys = new_secrets()
    ports = [free_port(), free_port()]
    with storage_section(kind, tmp) as section:
        configs = [write_config(tmp / f"rev-{kind}-{n}.yaml", tmp / f"rev-{kind}.db", port, keys,
                                resolver="header", storage=section,
                                rules=[{"path": "/reports", "level": "required"}])
                   for n, port in enumerate(ports)]
        seed(configs[0], kind, samples)
        names = [user_id(i) for i in range(samples)]
        cookies = dict(zip(names, sign_cookies(configs[0], names), strict=True))
        with processes(tmp) as procs:
            start_instances(procs, configs, ports)
            b = f"http://127.0.0.1:{ports[1]}/auth/nginx"

            async def run() -> list[float]:
                storage = make_storage(load(configs[0]))  # the writer: another instance
                await storage.open()
                delays = []
                try:
                    async with httpx.AsyncClient(timeout=10) as client:
                        def ask(user: str) -> Any:
                            return client.get(b, headers={
                                "remote-user": user, "cookie": cookies[user], "accept": "text/html",
                                "x-original-url": "http://app.test/reports",
                                "x-original-method": "GET"})
                        for user in names:
                            assert (await ask(user)).status_code == 200
                            await asyncio.sleep(random.uniform(0, 0.3))  # any phase of the poll
                            assert await storage.disable(user)
                            committed = time.perf_counter()
                            while (await ask(user)).status_code == 200:
                                if time.perf_counter() - committed > 30:
                                    raise SystemExit(f"{user}'s cookie still passes on B after 30 s")
                            delays.append(time.perf_counter() - committed)
                finally:
                    await storage.close()
                return delays

            delays = sorted(asyncio.run(run()))

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, round(p / 100 * (len(delays) - 1)))]

    return {"kind": kind, "samples": len(delays), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": delays[-1]}


def measure(tmp: Path, seconds: int = 5, rounds: int = 3, users: int = 20_000,
            samples: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kind, instances in (("mixed_sqlite", "sqlite", 1), ("mixed_pg2", "postgres", 2)):
        folder = tmp / key
        folder.mkdir()
        log(f"  mixed {users:,} users ÷ one user: {kind}, {instances} instance(s)")
        out[key] = mixed_ratio(folder, kind, instances, seconds, rounds, users)
        log(f"    ratio {out[key]['ratio']:.2f}")
    for kind in ("postgres", "sqlite"):
        folder = tmp / f"rev-{kind}"
        folder.mkdir()
        log(f"  revocation delay between two instances: {kind}")
        out[f"rev_{kind}"] = revocation_delay(folder, kind, samples)
        r = out[f"rev_{kind}"]
        log(f"    p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms")
    return out


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(Path(tmp), opts.seconds, opts.rounds, opts.users, opts.samples)
    for key in ("mixed_sqlite", "mixed_pg2"):
        m = out[key]
        print(f"{key}: mixed {m['median']['mixed'].rps:,.0f} req/s ÷ one user "
              f"{m['median']['one'].rps:,.0f} req/s = {m['ratio']:.2f}; users in memory "
              f"{m['cached_users']}")
    for kind in ("postgres", "sqlite"):
        r = out[f"rev_{kind}"]
        print(f"revocation delay ({kind}, {r['samples']} users): p50 {r['p50'] * 1000:.1f} ms, "
              f"p90 {r['p90'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, max {r['max'] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
