"""Requests/s of /auth/nginx with a valid 2FA cookie, as a ratio to a bare Starlette endpoint.

Every server is one process with the same settings (uvicorn: httptools, uvloop, no access log,
no Server header; granian: --interface asgi, uvloop, 1 worker, 1 runtime thread) on
127.0.0.1, pinned to CPU 0 while wrk (-t1) runs on CPU 1. All of them run at once (an idle
server costs nothing) and are measured in interleaved rounds after a warm-up; the median
round is reported. Usage:

    .venv/bin/python bench/forward_auth.py [--seconds 5] [--rounds 3] [--connections 32]
                                           [--servers uvicorn,granian] [--no-cli] [--unique-ids]

Rows: the bare endpoint and the sidecar under uvicorn (the sidecar through
``bench/sidecar_factory.py`` with exactly the bare endpoint's uvicorn flags), the sidecar as
``totp-sidecar serve`` starts it (its own uvicorn settings), and the same pair under granian.

The app's who-am-I URL (``primary.introspect.url``) is bench/whoami.py, one uvicorn process
also pinned to CPU 0. The sidecars ask it when their who-am-I cache (per credential, 5 s) has
no answer; its CPU time during a sidecar's run counts in that sidecar's CPU per request, and
the number of questions it answered is reported per row.

``--unique-ids`` (a diagnostic, every row alike): wrk sends a new X-Request-Id with each request
(bench/unique_ids.lua), so the sidecar's answer cache never hits and every request
goes through the whole decision with the who-am-I answer from its cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    AUTH_HEADERS,
    BENCH,
    FACTORY_ENV,
    GRANIAN,
    PY,
    SERVER_CPU,
    UVICORN,
    WrkResult,
    cpu_seconds,
    foreign_load,
    free_port,
    log,
    med,
    median_result,
    new_secrets,
    pinned,
    processes,
    profile,
    ratio,
    seed_users,
    sign_cookies,
    spread,
    start_whoami,
    summarize_profile,
    user_id,
    wait_http,
    whoami_calls,
    whoami_url,
    write_config,
    wrk,
)

BARE = "bench.bare:app"
FACTORY = "bench.sidecar_factory:create_app"


def check_sidecar(port: int, cookie: str, user: str) -> None:
    import httpx

    response = httpx.get(f"http://127.0.0.1:{port}/auth/nginx", timeout=5,
                         headers=dict(h.split(": ", 1) for h in (*AUTH_HEADERS, f"Cookie: {cookie}")))
    if response.status_code != 200 or response.headers.get("remote-user") != user:
        raise SystemExit(f"sidecar on {port} did not let the valid cookie pass: "
                         f"{response.status_code} {dict(response.headers)}")


def measure(tmp: Path, seconds: int = 5, rounds: int = 3, connections: int = 32,
            servers: tuple[str, ...] = ("uvicorn", "granian"), cli: bool = True,
            warmup: int = 2, profile_seconds: int = 0, unique_ids: bool = False) -> dict[str, Any]:
    script = BENCH / "unique_ids.lua" if unique_ids else None
    keys = new_secrets()
    who_port = free_port()
    config = write_config(tmp / "fa-config.yaml", tmp / "fa.db", 9091, keys,  # --port overrides
                          introspect_url=whoami_url(who_port))
    seed_users(config, 1)
    user = user_id(0)
    (cookie,) = sign_cookies(config, [user])
    env = {FACTORY_ENV: str(config)}
    plan: list[tuple[str, list[str], bool]] = []  # name, args without port, is the sidecar
    if "uvicorn" in servers:
        plan += [("uvicorn bare", [*UVICORN, BARE], False),
                 ("uvicorn sidecar", [*UVICORN, "--factory", FACTORY], True)]
    if cli:
        plan += [("totp-sidecar serve", [PY, "-m", "sidecar", "serve", "--config", str(config)], True)]
    if "granian" in servers:
        plan += [("granian bare", [*GRANIAN, BARE], False),
                 ("granian sidecar", [*GRANIAN, "--factory", FACTORY], True)]
    results: dict[str, list[WrkResult]] = {name: [] for name, _, _ in plan}
    cpu_us: dict[str, list[float]] = {name: [] for name, _, _ in plan}  # server CPU per request
    who_asked: dict[str, int] = {name: 0 for name, _, _ in plan}  # who-am-I calls, timed rounds
    who_requests: dict[str, int] = {name: 0 for name, _, _ in plan}
    sidecars = {name for name, _, is_sidecar in plan if is_sidecar}
    ports: dict[str, int] = {}
    with processes(tmp) as procs:
        who_pid = start_whoami(procs, who_port, SERVER_CPU).pid
        for name, args, is_sidecar in plan:
            port = ports[name] = free_port()
            procs.start(name.replace(" ", "-"), pinned(SERVER_CPU, [*args, "--port", str(port)]),
                        port, env)
            wait_http(f"http://127.0.0.1:{port}/healthz" if is_sidecar
                      else f"http://127.0.0.1:{port}/auth/nginx")
            if is_sidecar:
                asked = whoami_calls(who_port)
                check_sidecar(port, cookie, user)
                if whoami_calls(who_port) == asked:
                    raise SystemExit(f"{name} let the cookie pass without asking the who-am-I URL")
        headers = (*AUTH_HEADERS, f"Cookie: {cookie}")
        for name in ports:
            wrk(f"http://127.0.0.1:{ports[name]}/auth/nginx", headers, warmup, connections,
                script=script)
        for r in range(rounds):
            for name in ports:
                pid = procs.started[name.replace(" ", "-")].pid
                # a sidecar's CPU includes the who-am-I stub's (idle while the bare ones run)
                pids = (pid, who_pid) if name in sidecars else (pid,)
                cpu_before = sum(cpu_seconds(p) for p in pids)
                asked = whoami_calls(who_port)
                res = wrk(f"http://127.0.0.1:{ports[name]}/auth/nginx", headers, seconds, connections,
                          script=script)
                cpu_us[name].append(1e6 * (sum(cpu_seconds(p) for p in pids) - cpu_before)
                                    / max(res.requests, 1))
                who_asked[name] += whoami_calls(who_port) - asked
                who_requests[name] += res.requests
                results[name].append(res)
                log(f"  round {r + 1}: {name:<20} {res.rps:9.0f} req/s"
                    f"  {cpu_us[name][-1]:5.1f} µs CPU/request"
                    f"  who-am-I calls {who_asked[name]:,} of {who_requests[name]:,} requests so far")
        profiles = {}
        for name in ("uvicorn sidecar", "uvicorn bare") if profile_seconds else ():
            if name not in ports:
                continue
            raw = tmp / f"profile-{name.replace(' ', '-')}.txt"
            spy = profile(procs.started[name.replace(" ", "-")].pid, profile_seconds, raw)
            if spy is None:
                break
            time.sleep(1)  # py-spy attaches
            wrk(f"http://127.0.0.1:{ports[name]}/auth/nginx", headers, profile_seconds, connections,
                script=script)
            spy.wait(30)
            if raw.exists():
                profiles[name] = summarize_profile(raw)
    medians = {name: median_result(rs) for name, rs in results.items()}
    out: dict[str, Any] = {"rounds": results, "median": medians, "profiles": profiles,
                           "cpu_us": {name: med(v) for name, v in cpu_us.items()},
                           "spread": {name: spread(rs) for name, rs in results.items()},
                           "whoami": {name: (who_asked[name], who_requests[name])
                                      for name in sidecars},
                           "settings": {"seconds": seconds, "rounds": rounds,
                                        "connections": connections, "warmup": warmup,
                                        "unique_ids": unique_ids}}
    ratios = {}
    if "uvicorn sidecar" in medians:
        ratios["uvicorn"] = ratio(medians["uvicorn sidecar"].rps, medians["uvicorn bare"].rps)
    if "totp-sidecar serve" in medians and "uvicorn bare" in medians:
        ratios["serve"] = ratio(medians["totp-sidecar serve"].rps, medians["uvicorn bare"].rps)
    if "granian sidecar" in medians:
        ratios["granian"] = ratio(medians["granian sidecar"].rps, medians["granian bare"].rps)
        if "uvicorn sidecar" in medians:
            ratios["granian_vs_uvicorn_sidecar"] = ratio(medians["granian sidecar"].rps,
                                                         medians["uvicorn sidecar"].rps)
            ratios["granian_vs_uvicorn_bare"] = ratio(medians["granian bare"].rps,
                                                      medians["uvicorn bare"].rps)
    cpu = out["cpu_us"]
    out["cpu_ratios"] = {  # requests per CPU-second, sidecar ÷ bare: the ratio on an idle CPU
        key: ratio(cpu[bare], cpu[sidecar]) for key, bare, sidecar in (
            ("uvicorn", "uvicorn bare", "uvicorn sidecar"),
            ("serve", "uvicorn bare", "totp-sidecar serve"),
            ("granian", "granian bare", "granian sidecar")) if bare in cpu and sidecar in cpu}
    out["ratios"] = ratios
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--servers", default="uvicorn,granian")
    parser.add_argument("--no-cli", action="store_true", help="skip the `totp-sidecar serve` row")
    parser.add_argument("--unique-ids", action="store_true",
                        help="a new X-Request-Id per request: the sidecar's answer cache never hits")
    opts = parser.parse_args()
    load: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, foreign_load(load):
        out = measure(Path(tmp), opts.seconds, opts.rounds, opts.connections,
                      tuple(opts.servers.split(",")), not opts.no_cli, unique_ids=opts.unique_ids)
    for name, res in out["median"].items():
        print(f"{name:<20} {res.rps:10.0f} req/s  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms"
              f"  (rounds {out['spread'][name]})")
    for name, (asked, requests) in out["whoami"].items():
        print(f"who-am-I calls, {name:<20} {asked:,} for {requests:,} timed requests")
    for name, value in out["ratios"].items():
        print(f"ratio {name:<28} {value:6.2f}")
    for name, value in out["cpu_ratios"].items():
        print(f"CPU-cost ratio {name:<19} {value:6.2f}")
    print(f"other processes on the machine used {load['foreign_cores']:.2f} cores on average "
          f"during the {load['seconds']:.0f} s run (2.0 = both cores)")


if __name__ == "__main__":
    main()
