"""nginx → app with `auth_request` to the sidecar, as a ratio to nginx → app without it.

Real nginx runs the files of deploy/nginx as they are (like tests/e2e/stacks.py: a prefix
folder with nginx.conf, totp-sidecar-http.conf, the upstreams with free ports, the server block
with its `listen` on a free port, snippets/ linked). Variants of the server block:

* ``plain`` — the same server block without the two auth includes: nginx → app only;
* ``auth`` — as shipped: every request asks the sidecar first (``/_2fa_auth``);
* ``cache`` — ``snippets/totp-sidecar-auth-cache.conf`` instead of ``totp-sidecar-auth.conf``,
  and ``totp-sidecar-auth-cache-zone.conf`` included in ``http {}``.

Processes: the app (bench/upstream.py, uvicorn, 1 worker), the app's who-am-I URL
(bench/whoami.py, uvicorn, 1 process: the sidecar asks it when its 5-second who-am-I cache
misses), the sidecar with 1 worker and with 2 workers, one nginx per variant
(worker_processes 1, as deploy/nginx/nginx.conf says); idle ones cost nothing. wrk -t1 sends
a logged-in user's request with a valid 2FA cookie; nothing is pinned (2 cores shared by wrk,
nginx, app, who-am-I stub and sidecar). Rounds are interleaved; the median
round is reported, and the CPU each process used during it. Usage:

    .venv/bin/python bench/nginx_auth.py [--seconds 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT,
    UVICORN,
    WrkResult,
    cpu_seconds,
    free_port,
    log,
    med,
    median_result,
    metrics_count,
    new_secrets,
    processes,
    profile,
    ratio,
    seed_users,
    sidecar_command,
    sign_cookies,
    spread,
    start_whoami,
    summarize_profile,
    user_id,
    wait_http,
    whoami_url,
    write_config,
    wrk,
)

DEPLOY = ROOT / "deploy" / "nginx"
AUTH_INCLUDE = "include snippets/totp-sidecar-auth.conf;"
PROTECT_INCLUDE = "include snippets/totp-sidecar-protect.conf;"
CACHE_SNIPPET = "snippets/totp-sidecar-auth-cache.conf"
ZONE_FILE = "totp-sidecar-auth-cache-zone.conf"


def nginx_bin() -> str:
    found = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).is_file():
        raise SystemExit("nginx is needed: apt-get install nginx")
    return found


def named_locations(text: str) -> str:
    start = text.index("# A 401 from the subrequest")
    return text[start:].strip()


def check_cache_snippet() -> None:
    """The cache snippet must carry the same named locations as the plain auth snippet."""
    plain = (DEPLOY / "snippets" / "totp-sidecar-auth.conf").read_text()
    cached = (DEPLOY / CACHE_SNIPPET).read_text()
    if named_locations(plain) != named_locations(cached):
        raise SystemExit(f"deploy/nginx/{CACHE_SNIPPET}: its @totp_sidecar_401/403 locations differ "
                         "from snippets/totp-sidecar-auth.conf; copy them over")


def write_prefix(conf: Path, variant: str, nginx_port: int, app_port: int, sidecar_port: int,
                 keepalive: int | None = None) -> None:
    """An nginx prefix with deploy/nginx's files; only ports, the listen line and (per variant)
    the auth include lines differ; ``keepalive`` replaces the upstreams' shipped `keepalive 64`
    (diagnostic rows only)."""
    conf.mkdir(parents=True)
    conf.chmod(0o755)  # nginx workers (user nobody when started as root) write the cache here
    nginx_conf = (DEPLOY / "nginx.conf").read_text()
    if variant == "cache":
        cache_dir = conf / "auth-cache"
        zone = (DEPLOY / ZONE_FILE).read_text()
        zone, n = re.subn(r"(?m)^proxy_cache_path \S+", f"proxy_cache_path {cache_dir}", zone)
        assert n == 1, f"{ZONE_FILE} changed shape"
        (conf / ZONE_FILE).write_text(zone)
        nginx_conf, n = re.subn(r"(?m)^(\s*)include totp-sidecar-http\.conf;.*$",
                                rf"\g<0>\n\g<1>include {ZONE_FILE};", nginx_conf)
        assert n == 1, "deploy/nginx/nginx.conf changed shape"
    (conf / "nginx.conf").write_text(nginx_conf)
    shutil.copy(DEPLOY / "totp-sidecar-http.conf", conf / "totp-sidecar-http.conf")
    (conf / "snippets").symlink_to(DEPLOY / "snippets", target_is_directory=True)
    upstreams = (DEPLOY / "totp-sidecar-upstreams.conf").read_text()
    upstreams, n1 = re.subn(r"server 127\.0\.0\.1:9091;", f"server 127.0.0.1:{sidecar_port};", upstreams)
    upstreams, n2 = re.subn(r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{app_port};", upstreams)
    assert (n1, n2) == (1, 1), "deploy/nginx/totp-sidecar-upstreams.conf changed shape"
    if keepalive is not None:
        upstreams, n = re.subn(r"keepalive \d+;", f"keepalive {keepalive};", upstreams)
        assert n == 2, "deploy/nginx/totp-sidecar-upstreams.conf changed shape"
    (conf / "totp-sidecar-upstreams.conf").write_text(upstreams)
    server = (DEPLOY / "totp-sidecar.conf").read_text()
    server, n = re.subn(r"(?m)^(\s*)listen 8080;", rf"\g<1>listen 127.0.0.1:{nginx_port};", server)
    assert n == 1, "deploy/nginx/totp-sidecar.conf: expected one `listen 8080;` line"
    if variant == "plain":
        for line in (AUTH_INCLUDE, PROTECT_INCLUDE):
            server, n = re.subn(rf"(?m)^\s*{re.escape(line)}.*\n", "", server)
            assert n == 1, f"deploy/nginx/totp-sidecar.conf: expected one `{line}`"
    elif variant == "cache":
        server, n = re.subn(re.escape(AUTH_INCLUDE), f"include {CACHE_SNIPPET};", server)
        assert n == 1, f"deploy/nginx/totp-sidecar.conf: expected one `{AUTH_INCLUDE}`"
    (conf / "totp-sidecar.conf").write_text(server)


def nginx_args(conf: Path) -> list[str]:
    return [nginx_bin(), "-p", f"{conf}/", "-c", str(conf / "nginx.conf"), "-e", str(conf / "error.log")]


def get(url: str, cookie: str) -> tuple[int, str]:
    import httpx

    response = httpx.get(url, headers={"Cookie": cookie, "Accept": "text/html"}, timeout=5)
    return response.status_code, response.text


def functional_checks(ports: dict[str, int], sidecar_port: int, cookie: str, user: str) -> list[str]:
    """The setups do what they should before anything is timed; notes for the results."""
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    notes = []
    status, body = get(base["plain"] + "/reports", cookie)
    assert (status, body) == (200, "hello \n"), (status, body)
    for name in ("auth-1w", "auth-2w", "cache-1w"):
        status, body = get(base[name] + "/reports", cookie)
        assert (status, body) == (200, f"hello {user}\n"), (name, status, body)
        status, _ = get(base[name] + "/denied", cookie)
        assert status == 403, (name, status)
    # The cache: a 200 is reused (the sidecar sees one call for two requests, and the app
    # still gets Remote-User); a 403 is never stored; the URL is part of the key.
    before = metrics_count(sidecar_port)
    for _ in range(2):
        status, body = get(base["cache-1w"] + "/reports?cache-check", cookie)
        assert (status, body) == (200, f"hello {user}\n"), (status, body)
    calls = metrics_count(sidecar_port) - before
    assert calls == 1, f"the auth cache did not answer the second request (sidecar calls: {calls})"
    notes.append("cache: 2 identical requests → 1 sidecar call, Remote-User passed on the hit")
    before = metrics_count(sidecar_port)
    for _ in range(2):
        status, _ = get(base["cache-1w"] + "/denied", cookie)
        assert status == 403, status
    calls = metrics_count(sidecar_port) - before
    assert calls == 2, f"a 403 was served from the auth cache (sidecar calls: {calls})"
    notes.append("cache: a 403 (deny rule) is never cached; same cookies on /denied after a cached "
                 "200 on /reports still get 403 (URL in the key)")
    return notes


def tcp_active_opens() -> int:
    """Outgoing TCP connections opened so far on this machine (nginx → upstreams here)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("ActiveOpens")])


def timed(url: str, headers: tuple[str, ...], seconds: int, connections: int,
          pids: dict[str, int]) -> tuple[WrkResult, dict[str, float]]:
    """A wrk run, the CPU (% of one core) each process used meanwhile, and (key "new_conns")
    the new upstream connections nginx opened per request."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    opens = tcp_active_opens()
    began = time.monotonic()
    result = wrk(url, headers, seconds, connections, cpu=None)
    elapsed = time.monotonic() - began
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: 100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}
    cpu["wrk"] = 100 * ((wrk_after.ru_utime - wrk_before.ru_utime)
                        + (wrk_after.ru_stime - wrk_before.ru_stime)) / elapsed
    cpu["new_conns"] = (tcp_active_opens() - opens) / max(result.requests, 1)
    return result, cpu


# name: (server block variant, sidecar, upstream keepalive or None = as shipped (64))
SCENARIOS: dict[str, tuple[str, str, int | None]] = {
    "plain": ("plain", "sidecar-1w", None),
    "auth-1w": ("auth", "sidecar-1w", None),
    "auth-2w": ("auth", "sidecar-2w", None),
    "cache-1w": ("cache", "sidecar-1w", None),
    # Diagnostics: the same with `keepalive 16` in the upstreams (not the shipped config).
    "plain-ka16": ("plain", "sidecar-1w", 16),
    "auth-1w-ka16": ("auth", "sidecar-1w", 16),
}


def measure(tmp: Path, seconds: int = 5, rounds: int = 3, connections: int = 32,
            warmup: int = 2, latency_seconds: int = 3, profile_seconds: int = 8,
            diagnostics: bool = True) -> dict[str, Any]:
    check_cache_snippet()
    keys = new_secrets()
    scenarios = {name: spec for name, spec in SCENARIOS.items() if diagnostics or spec[2] is None}
    ports = {name: free_port() for name in scenarios}
    app_port = free_port()
    sidecar_ports = {"sidecar-1w": free_port(), "sidecar-2w": free_port()}
    sc1_port = sidecar_ports["sidecar-1w"]
    who_port = free_port()
    rules = [{"path": "/denied", "level": "deny"}]
    config = write_config(tmp / "ng-config.yaml", tmp / "ng.db", sc1_port, keys, rules=rules,
                          introspect_url=whoami_url(who_port))
    seed_users(config, 1)
    user = user_id(0)
    (cookie,) = sign_cookies(config, [user])
    out: dict[str, Any] = {}
    with processes(tmp) as procs:
        procs.start("app", [*UVICORN, "bench.upstream:app", "--port", str(app_port)], app_port)
        start_whoami(procs, who_port, None)  # not pinned, like everything in this part
        launch = {}
        for name, workers in (("sidecar-1w", 1), ("sidecar-2w", 2)):
            args, env, how = sidecar_command(config, sidecar_ports[name], workers)
            launch[name] = how
            procs.start(name, args, sidecar_ports[name], env)
            wait_http(f"http://127.0.0.1:{sidecar_ports[name]}/healthz")
        out["launch"] = launch
        for name, (variant, sidecar, keepalive) in scenarios.items():
            conf = tmp / f"nginx-{name}"
            write_prefix(conf, variant, ports[name], app_port, sidecar_ports[sidecar], keepalive)
            test = subprocess.run([*nginx_args(conf), "-t", "-q"], capture_output=True, text=True)
            if test.returncode:
                raise SystemExit(f"nginx -t failed for {name}:\n{test.stderr}")
            procs.start(f"nginx-{name}", nginx_args(conf), ports[name])
            wait_http(f"http://127.0.0.1:{ports[name]}/healthz")
        out["checks"] = functional_checks(ports, sc1_port, cookie, user)
        pids = {name: procs.started[name].pid
                for name in ("app", "whoami", "sidecar-1w", "sidecar-2w")}
        headers = (f"Cookie: {cookie}", "Accept: text/html")

        def url(name: str) -> str:
            return f"http://127.0.0.1:{ports[name]}/reports"

        for name in ports:
            wrk(url(name), headers, warmup, connections, cpu=None)
        results: dict[str, list[tuple[WrkResult, dict[str, float]]]] = {n: [] for n in ports}
        sidecar_calls: list[tuple[int, int]] = []
        for r in range(rounds):
            for name in ports:
                calls_before = metrics_count(sc1_port) if name == "cache-1w" else 0
                nginx_pid = {"nginx": procs.started[f"nginx-{name}"].pid}
                res, cpu = timed(url(name), headers, seconds, connections, {**pids, **nginx_pid})
                if name == "cache-1w":
                    sidecar_calls.append((metrics_count(sc1_port) - calls_before, res.requests))
                results[name].append((res, cpu))
                log(f"  round {r + 1}: nginx {name:<13} {res.rps:9.0f} req/s")
        medians = {}
        cpu_of_median = {}
        for name, runs in results.items():
            m = median_result([res for res, _ in runs])
            medians[name] = m
            cpu_of_median[name] = next(cpu for res, cpu in runs if res is m)
        def cost(cpu: dict[str, float], rps: float) -> float:
            """CPU µs per request of wrk + nginx + app + the sidecar in use."""
            return sum(v for k, v in cpu.items() if k != "new_conns") * 1e4 / rps

        costs = {name: med([cost(cpu, res.rps) for res, cpu in runs])
                 for name, runs in results.items()}
        out.update(median=medians, cpu=cpu_of_median, cost_us=costs,
                   spread={n: spread([res for res, _ in runs]) for n, runs in results.items()},
                   cache_calls=sidecar_calls)
        # Unloaded latency: one connection, one request at a time.
        single = {}
        for name in ports:
            single[name] = wrk(url(name), headers, latency_seconds, 1, cpu=None)
            log(f"  1 connection: nginx {name:<13} p50 {single[name].p50_ms:.3f} ms")
        out["single"] = single
        # Where the sidecar's time goes behind nginx (1 worker), outside the timed rounds.
        raw = tmp / "profile-sidecar-1w.txt"
        spy = profile(procs.started["sidecar-1w"].pid, profile_seconds, raw)
        if spy is not None:
            time.sleep(1)  # py-spy attaches
            wrk(url("auth-1w"), headers, profile_seconds, connections, cpu=None)
            spy.wait(30)
            if raw.exists():
                out["profile"] = summarize_profile(raw)
    base = medians["plain"].rps
    out["ratios"] = {name: ratio(medians[name].rps, base) for name in ports if name != "plain"}
    if "plain-ka64" in medians:
        out["ratios"]["auth-1w-ka64"] = ratio(medians["auth-1w-ka64"].rps, medians["plain-ka64"].rps)
    # Requests per CPU-second, as a ratio: what the throughput ratio is when the CPUs are all
    # the benchmark's (CPU-bound: 2 cores saturated) — robust against other load on the machine.
    costs = out["cost_us"]
    out["cost_ratios"] = {name: ratio(costs["plain-ka64" if name == "auth-1w-ka64" else "plain"],
                                      costs[name]) for name in out["ratios"]}
    out["settings"] = {"seconds": seconds, "rounds": rounds, "connections": connections,
                       "warmup": warmup, "latency_seconds": latency_seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        out = measure(Path(tmp), opts.seconds, opts.rounds, opts.connections)
    for note in out["checks"]:
        print("check:", note)
    for name, res in out["median"].items():
        single = out["single"][name]
        cpu = " ".join(f"{k} {v:.0f}%" for k, v in out["cpu"][name].items() if k != "new_conns")
        print(f"{name:<13} {res.rps:8.0f} req/s  ratio {out['ratios'].get(name, 1.0):5.2f}"
              f"  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  (1 conn: p50 {single.p50_ms:.3f}"
              f" p99 {single.p99_ms:.3f})  new conns/req {out['cpu'][name]['new_conns']:.3f}  {cpu}")
    if "profile" in out:
        for name, share in out["profile"]["self"]:
            print(f"  {share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
