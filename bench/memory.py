"""Memory: VmRSS of one sidecar process after 100,000 /auth/nginx requests.

The sidecar runs as `totp-sidecar serve` (one process) pinned to CPU 0; wrk -t1 on CPU 1
sends requests through bench/mixed_cookies.lua: 3 of 4 carry a valid 2FA cookie of one of
20,000 enrolled users (each with its own app session, used in turn), 1 of 4 is anonymous
(no cookie). The app's who-am-I URL is bench/whoami.py (uvicorn, also pinned to CPU 0): a
user comes back only every few seconds, so most valid requests miss the sidecar's 5-second
who-am-I cache and ask it. VmRSS and VmHWM (of the sidecar only) come from
/proc/<pid>/status. Usage:

    .venv/bin/python bench/memory.py [--requests 100000] [--users 20000]
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
    BENCH,
    SERVER_CPU,
    children,
    cpu_seconds,
    free_port,
    log,
    metrics_count,
    new_secrets,
    pinned,
    processes,
    seed_users,
    sidecar_command,
    sign_cookies,
    start_whoami,
    status_kib,
    user_id,
    wait_http,
    whoami_calls,
    whoami_url,
    write_config,
    wrk_until,
)
from bench.forward_auth import check_sidecar  # noqa: E402


def rss(pid: int) -> dict[str, float]:
    pids = [pid, *children(pid)]  # a future multi-process `serve`: the workers count too
    return {"rss_mb": sum(status_kib(p, "VmRSS") for p in pids) / 1024,
            "hwm_mb": sum(status_kib(p, "VmHWM") for p in pids) / 1024, "processes": len(pids)}


def measure(tmp: Path, requests: int = 100_000, users: int = 20_000, anon_every: int = 4,
            connections: int = 32) -> dict[str, Any]:
    port, who_port = free_port(), free_port()
    config = write_config(tmp / "mem.yaml", tmp / "mem.db", port, new_secrets(),
                          introspect_url=whoami_url(who_port))
    seed_users(config, users)
    began = time.perf_counter()
    cookie_file = tmp / "cookies.txt"
    cookies = sign_cookies(config, [user_id(i) for i in range(users)])
    cookie_file.write_text("\n".join(cookies) + "\n")
    log(f"  {users:,} users seeded, cookies signed in {time.perf_counter() - began:.1f} s")
    out: dict[str, Any] = {"requests_asked": requests, "users": users, "anon_every": anon_every}
    with processes(tmp) as procs:
        who_pid = start_whoami(procs, who_port, SERVER_CPU).pid
        args, env, how = sidecar_command(config, port, 1, "cli")
        proc = procs.start("sidecar-mem", pinned(SERVER_CPU, args), port, env)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        out["launch"] = how
        check_sidecar(port, cookies[0], user_id(0))
        out["start"] = rss(proc.pid)
        served = metrics_count(port)
        asked = whoami_calls(who_port)
        cpu_before = {"sidecar": cpu_seconds(proc.pid), "whoami": cpu_seconds(who_pid)}
        result = wrk_until(f"http://127.0.0.1:{port}/auth/nginx",
                           lambda: metrics_count(port) - served >= requests,
                           connections=connections, script=BENCH / "mixed_cookies.lua",
                           timeout="10s", max_seconds=900,
                           script_args=(str(cookie_file), str(requests), str(anon_every)))
        out["decisions"] = metrics_count(port) - served
        out["whoami_calls"] = whoami_calls(who_port) - asked
        out["cpu_us"] = {name: 1e6 * (cpu_seconds(pid) - cpu_before[name]) / max(out["decisions"], 1)
                         for name, pid in (("sidecar", proc.pid), ("whoami", who_pid))}
        time.sleep(1)
        out["after"] = rss(proc.pid)
        out["wrk"] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(Path(tmp), opts.requests, opts.users)
    print(f"{out['wrk'].requests:,} requests at {out['wrk'].rps:.0f} req/s; VmRSS at start "
          f"{out['start']['rss_mb']:.1f} MB, after {out['after']['rss_mb']:.1f} MB "
          f"(peak {out['after']['hwm_mb']:.1f} MB); who-am-I calls: {out['whoami_calls']:,} for "
          f"{out['decisions']:,} decisions; CPU per decision: sidecar {out['cpu_us']['sidecar']:.0f} µs, "
          f"who-am-I stub {out['cpu_us']['whoami']:.0f} µs")


if __name__ == "__main__":
    main()
