"""Enrollment + challenge round trips per second with 10,000 and with 1,000,000 enrolled users.

The users table is seeded with direct SQL in bulk (common.seed_users: every user a secret sealed
for that user, generation 1, an `enabled` event; no recovery codes unless asked). Then new users
go through the real pages over HTTP, each round trip being seven requests:

    GET  /_2fa/enroll          (QR code page: reads the key and the CSRF token)
    POST /_2fa/enroll          (code of the current step → 2FA on, 2FA cookie, 303 to the codes)
    GET  /_2fa/recovery-codes  (the 20 recovery codes, shown once)
    GET + POST /_2fa/logout    (2FA cookie cleared), then a new app session ("login again")
    GET  /_2fa/challenge?rd=/  (code prompt of the new session)
    POST /_2fa/challenge       (code of the next step, accepted once → 2FA cookie)

The sidecar uses `primary.resolver: header` (Remote-User from the trusted loopback) so that no
app is needed; it runs as `totp-sidecar serve` (1 process) pinned to CPU 0, the client (httpx,
a few concurrent flows) on CPU 1. Both database sizes run at once and are measured in
interleaved rounds; the median is reported, with the sidecar's CPU time per round trip (a
figure that does not depend on how fast the client is). A second measurement drives the
service layer (sidecar.accounts.Accounts) in-process, without HTTP or templates. Usage:

    .venv/bin/python bench/enroll_challenge.py [--small 10000] [--large 1000000] [--seconds 5]
                                               [--rounds 3] [--concurrency 4] [--recovery-codes 0]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import secrets
import sys
import tempfile
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CLIENT_CPU,
    SERVER_CPU,
    SESSION_COOKIE,
    cpu_seconds,
    free_port,
    load,
    log,
    med,
    new_secrets,
    open_storage,
    pinned,
    processes,
    ratio,
    seed_users,
    sidecar_command,
    wait_http,
    write_config,
)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
KEY = re.compile(r'id="secret-key">([A-Z2-7 ]+)<')
PREFIX = "/_2fa"


class FlowError(Exception):
    pass


def codes(secret: str) -> tuple[str, str]:
    """The code of the current time step (enrollment) and of the next one (challenge: a code
    is accepted once and only for a later step; ±1 step of skew makes the next one valid)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    step = int(time.time()) // 30
    return totp.at(step * 30), totp.at((step + 1) * 30)


async def round_trip(client: Any, base: str, user: str) -> None:
    def expect(response: Any, status: int, what: str) -> Any:
        if response.status_code != status:
            raise FlowError(f"{what}: {response.status_code} (wanted {status}): {response.text[:300]}")
        return response

    def cookie_from(response: Any, name: str) -> str:
        for header in response.headers.get_list("set-cookie"):
            if header.startswith(name + "="):
                return str(header.split(";", 1)[0])
        raise FlowError(f"no {name} cookie in {response.status_code} {response.url}")

    who = {"remote-user": user}
    session = f"{SESSION_COOKIE}={secrets.token_urlsafe(16)}"
    page = expect(await client.get(f"{base}{PREFIX}/enroll", headers={**who, "cookie": session}),
                  200, "GET enroll")
    csrf, key = CSRF.search(page.text), KEY.search(page.text)
    if not (csrf and key):
        raise FlowError("enroll page without CSRF token or key")
    secret = key.group(1).replace(" ", "")
    now_code, next_code = codes(secret)
    done = expect(await client.post(f"{base}{PREFIX}/enroll", headers={**who, "cookie": session},
                                    data={"csrf": csrf.group(1), "code": now_code, "rd": ""}),
                  303, "POST enroll")
    pass_cookie = cookie_from(done, "totp_sidecar")
    signed_in = {**who, "cookie": f"{session}; {pass_cookie}"}
    codes_cookie = cookie_from(done, "totp_sidecar_codes")  # the codes, shown once on the next page
    shown = expect(await client.get(f"{base}{PREFIX}/recovery-codes",
                                    headers={**who, "cookie": f"{session}; {pass_cookie}; {codes_cookie}"}),
                   200, "GET recovery-codes")
    if shown.text.count('<code') < 20:
        raise FlowError("recovery-codes page without the 20 codes")
    confirm = expect(await client.get(f"{base}{PREFIX}/logout?rd=/", headers=signed_in), 200,
                     "GET logout")
    csrf = CSRF.search(confirm.text)
    if not csrf:
        raise FlowError("logout page without CSRF token")
    expect(await client.post(f"{base}{PREFIX}/logout", headers=signed_in,
                             data={"csrf": csrf.group(1), "rd": "/"}), 303, "POST logout")
    session = f"{SESSION_COOKIE}={secrets.token_urlsafe(16)}"  # signed in to the app again
    page = expect(await client.get(f"{base}{PREFIX}/challenge?rd=/",
                                   headers={**who, "cookie": session}), 200, "GET challenge")
    csrf = CSRF.search(page.text)
    if not csrf:
        raise FlowError("challenge page without CSRF token")
    passed = expect(await client.post(f"{base}{PREFIX}/challenge", headers={**who, "cookie": session},
                                      data={"csrf": csrf.group(1), "code": next_code, "rd": "/",
                                            "mode": "totp"}), 303, "POST challenge")
    cookie_from(passed, "totp_sidecar")


async def drive(base: str, prefix: str, seconds: float, concurrency: int,
                counter: itertools.count[int]) -> int:
    """Complete round trips of new users for ``seconds``; returns how many finished."""
    import httpx

    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))  # cookies sent by hand
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(cookies=jar, timeout=30, limits=limits) as client:
        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await round_trip(client, base, f"{prefix}-{next(counter):07d}")
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def service_trips(config_path: Path, seconds: float, prefix: str,
                        counter: itertools.count[int]) -> int:
    """The same enrollment + challenge through sidecar.accounts.Accounts, in-process."""
    from sidecar.accounts import Accounts, Check

    config = load(config_path)
    storage = open_storage(config)
    await storage.open()
    service = Accounts(config, storage)
    done = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            user = f"{prefix}-{next(counter):07d}"
            secret = await service.pending_secret(user)
            now_code, next_code = codes(secret)
            result, _, _ = await service.complete_enrollment(user, now_code, "127.0.0.1")
            if result.check is not Check.OK:
                raise FlowError(f"service enrollment: {result}")
            result = await service.check(user, next_code, "127.0.0.1")
            if result.check is not Check.OK:
                raise FlowError(f"service challenge: {result}")
            done += 1
    finally:
        await storage.close()
    return done


def measure(tmp: Path, small: int = 10_000, large: int = 1_000_000, seconds: int = 5,
            rounds: int = 3, concurrency: int = 4, recovery_codes: int = 0,
            service_seconds: int = 3) -> dict[str, Any]:
    sizes = {"small": small, "large": large}
    keys = new_secrets()
    configs, seed_seconds, db_bytes, ports = {}, {}, {}, {}
    for label, count in sizes.items():
        ports[label] = free_port()
        configs[label] = write_config(tmp / f"ec-{label}.yaml", tmp / f"ec-{label}.db", ports[label],
                                      keys, resolver="header")
        seed_seconds[label] = seed_users(configs[label], count, recovery_codes)
        db_bytes[label] = os.path.getsize(tmp / f"ec-{label}.db")
        log(f"  seeded {count:,} users in {seed_seconds[label]:.1f} s "
            f"({db_bytes[label] / 1e6:.0f} MB)")
    counter = itertools.count()
    http: dict[str, list[tuple[float, float]]] = {label: [] for label in sizes}  # (trips/s, cpu ms)
    service: dict[str, list[float]] = {label: [] for label in sizes}
    with processes(tmp) as procs:
        for label in sizes:
            args, env, _ = sidecar_command(configs[label], ports[label], 1, "cli")
            procs.start(f"sidecar-{label}", pinned(SERVER_CPU, args), ports[label], env)
            wait_http(f"http://127.0.0.1:{ports[label]}/healthz")
        own = os.sched_getaffinity(0)
        if len(own) > 1:
            os.sched_setaffinity(0, {CLIENT_CPU})
        try:
            for label in sizes:  # warm-up: templates, QR code, SQLite pages
                asyncio.run(drive(f"http://127.0.0.1:{ports[label]}", f"warm-{label}", 1.5,
                                  concurrency, counter))
            for r in range(rounds):
                for label in sizes:
                    pid = procs.started[f"sidecar-{label}"].pid
                    cpu_before = cpu_seconds(pid)
                    began = time.monotonic()
                    trips = asyncio.run(drive(f"http://127.0.0.1:{ports[label]}", f"http-{label}",
                                              seconds, concurrency, counter))
                    elapsed = time.monotonic() - began
                    cpu_ms = 1000 * (cpu_seconds(pid) - cpu_before) / max(trips, 1)
                    http[label].append((trips / elapsed, cpu_ms))
                    log(f"  round {r + 1}: {sizes[label]:>9,} users  {trips / elapsed:6.1f} round trips/s"
                        f"  sidecar CPU {cpu_ms:5.1f} ms per round trip")
            for r in range(rounds):
                for label in sizes:
                    began = time.monotonic()
                    trips = asyncio.run(service_trips(configs[label], service_seconds,
                                                      f"svc-{label}", counter))
                    service[label].append(trips / (time.monotonic() - began))
                    log(f"  service round {r + 1}: {sizes[label]:>9,} users  "
                        f"{service[label][-1]:6.1f} round trips/s")
        finally:
            os.sched_setaffinity(0, own)
    out: dict[str, Any] = {"sizes": sizes, "seed_seconds": seed_seconds, "db_bytes": db_bytes,
                           "recovery_codes": recovery_codes, "concurrency": concurrency,
                           "seconds": seconds, "rounds": rounds}
    out["http"] = {label: {"rps": med([t for t, _ in runs]), "cpu_ms": med([c for _, c in runs]),
                           "runs": runs} for label, runs in http.items()}
    out["service"] = {label: {"rps": med(runs), "runs": runs} for label, runs in service.items()}
    out["ratio_http"] = ratio(out["http"]["large"]["rps"], out["http"]["small"]["rps"])
    out["ratio_cpu"] = ratio(out["http"]["small"]["cpu_ms"], out["http"]["large"]["cpu_ms"])
    out["ratio_service"] = ratio(out["service"]["large"]["rps"], out["service"]["small"]["rps"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--recovery-codes", type=int, default=0,
                        help="recovery-code rows per seeded user (20 is what users get; 1M users"
                             " then take ~90 s and 4 GB)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(Path(tmp), opts.small, opts.large, opts.seconds, opts.rounds,
                      opts.concurrency, opts.recovery_codes)
    for label, count in out["sizes"].items():
        h, s = out["http"][label], out["service"][label]
        print(f"{count:>9,} users: HTTP {h['rps']:6.1f} round trips/s"
              f" ({h['cpu_ms']:.1f} ms sidecar CPU each),"
              f" service layer {s['rps']:6.1f}/s; seeded in {out['seed_seconds'][label]:.1f} s")
    print(f"ratio large/small: HTTP {out['ratio_http']:.2f}, CPU {out['ratio_cpu']:.2f},"
          f" service {out['ratio_service']:.2f}")


if __name__ == "__main__":
    main()
