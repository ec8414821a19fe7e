"""Memory: VmRSS of one sidecar process after 100,000 /auth/nginx requests.

The sidecar runs as `totp-sidecar serve` (one process) pinned to CPU 0; wrk -t1 on CPU 1
sends requests through bench/mixed_cookies.lua: 3 of 4 carry a valid 2FA cookie of one of
20,000 enrolled users (each with its own app session, used in turn), 1 of 4 is anonymous
(no cookie). VmRSS and VmHWM come from /proc/<pid>/status. Usage:

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

from bench.forward_auth import check_sidecar  # noqa: E402
from bench.common import (BENCH, SERVER_CPU, children, free_port, log,  # noqa: E402
                          metrics_count, new_secrets, pinned, processes, seed_users,
                          sidecar_command, sign_cookies, status_kib, user_id, wait_http,
                          wrk_until, write_config)


def rss(pid: int) -> dict[str, float]:
    pids = [pid, *children(pid)]  # a future multi-process `serve`: the workers count too
    return {"rss_mb": sum(status_kib(p, "VmRSS") for p in pids) / 1024,
            "hwm_mb": sum(status_kib(p, "VmHWM") for p in pids) / 1024, "processes": len(pids)}


def measure(tmp: Path, requests: int = 100_000, users: int = 20_000, anon_every: int = 4,
            connections: int = 32) -> dict[str, Any]:
    port = free_port()
    config = write_config(tmp / "mem.yaml", tmp / "mem.db", port, new_secrets())
    seed_users(config, users)
    began = time.perf_counter()
    cookie_file = tmp / "cookies.txt"
    cookies = sign_cookies(config, [user_id(i) for i in range(users)])
    cookie_file.write_text("\n".join(cookies) + "\n")
    log(f"  {users:,} users seeded, cookies signed in {time.perf_counter() - began:.1f} s")
    out: dict[str, Any] = {"requests_asked": requests, "users": users, "anon_every": anon_every}
    with processes(tmp) as procs:
        args, env, how = sidecar_command(config, port, 1, "cli")
        proc = procs.start("sidecar-mem", pinned(SERVER_CPU, args), port, env)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        out["launch"] = how
        check_sidecar(port, cookies[0], user_id(0))
        out["start"] = rss(proc.pid)
        served = metrics_count(port)
        result = wrk_until(f"http://127.0.0.1:{port}/auth/nginx",
                           lambda: metrics_count(port) - served >= requests,
                           connections=connections, script=BENCH / "mixed_cookies.lua",
                           timeout="10s", script_args=(str(cookie_file), str(requests), str(anon_every)))
        out["decisions"] = metrics_count(port) - served
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
          f"(peak {out['after']['hwm_mb']:.1f} MB)")


if __name__ == "__main__":
    main()
