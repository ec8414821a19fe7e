"""Run every benchmark and write bench/RESULTS.md.

    .venv/bin/python bench/run_all.py            # ~8 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # 2 s runs, 1 round: checks that all works

Each figure is a ratio to a baseline measured in the same run (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import enroll_challenge, forward_auth, memory, nginx_auth, scale  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH,
    GRANIAN,
    cli_has_workers,
    foreign_load,
    log,
    machine,
    pyspy,
)

TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "1": ("≥ 1.0", lambda v: v >= 1.0),
    "2a": ("≥ 0.3", lambda v: v >= 0.3),
    "2b": ("≥ 0.5", lambda v: v >= 0.5),
    "3": ("≥ 0.75", lambda v: v >= 0.75),
    "4": ("≥ 0.5", lambda v: v >= 0.5),
    "5": ("< 100 MB", lambda v: v < 100),
    "7a": ("≥ 0.7", lambda v: v >= 0.7),
    "7b": ("p99 ≤ 1 s", lambda v: v <= 1.0),
    "2c": ("≥ 0.6", lambda v: v >= 0.6),
}


RECOVERY_NOTE = " (20 per user makes the 1M file ~4 GB and takes ~90 s: `--recovery-codes 20`)"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(key: str, value: float) -> str:
    return "**hit**" if TARGETS[key][1](value) else "**MISS**"


def ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def profile_table(title: str, prof: dict[str, Any], rows: int = 10) -> list[str]:
    lines = [f"**{title}** ({prof['samples']} samples)", "",
             "| where the time is (leaf frame) | share |", "| --- | ---: |"]
    lines += [f"| {name} | {share:.1f}% |" for name, share in prof["categories"]]
    lines += ["", "| function (self time) | share | | sidecar function (inclusive) | share |",
              "| --- | ---: | --- | --- | ---: |"]
    incl = prof["inclusive"][:rows]
    for i, (s_name, s_share) in enumerate(prof["self"][:rows]):
        right = f"`{incl[i][0]}` | {incl[i][1]:.1f}%" if i < len(incl) else " | "
        lines.append(f"| `{s_name}` | {s_share:.1f}% | | {right} |")
    return lines + [""]


def write_results(path: Path, info: dict[str, str], opts: argparse.Namespace,
                  res: dict[str, Any], elapsed: float, loads: tuple[str, str]) -> None:
    L: list[str] = []
    add = L.append
    add("# Benchmark results")
    add("")
    add(f"Written by `.venv/bin/python bench/run_all.py{' --quick' if opts.quick else ''}` on "
        f"{info['date']} (whole run: {elapsed / 60:.1f} min). How each figure is measured: "
        "[README.md](README.md).")
    if opts.quick:
        add("")
        add("> **--quick run** (2 s, 1 round, small sizes): only shows that everything works; the "
            "numbers are not the benchmark.")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("| --- | --- |")
    for key, label in (("nproc", "`nproc`"), ("cpu", "CPU (/proc/cpuinfo)"), ("memory", "memory"),
                       ("kernel", "kernel"), ("python", "Python"), ("uvicorn", "uvicorn"),
                       ("starlette", "Starlette"), ("granian", "granian"), ("nginx", "nginx"),
                       ("wrk", "wrk"), ("commit", "git commit"),
                       ("uncommitted", "uncommitted changes (sidecar/, templates/, pyproject)")):
        add(f"| {label} | {info[key]} |")
    add(f"| load average at start / end | {loads[0]} / {loads[1]} |")
    if opts.code:
        add(f"| code under test | {opts.code} |")
    add("")
    add("The machine is shared (other sessions may run at the same time); every ratio compares "
        "runs interleaved round by round within this run, and the median round is reported "
        "(with the range of all rounds). CPU used by processes outside the benchmark while each "
        "part ran (from /proc/stat minus the benchmark's own processes; 2.0 = both cores):")
    add("")
    add("| part | duration | other processes used |")
    add("| --- | ---: | ---: |")
    for title, load in res["load"].items():
        if load:
            add(f"| {title} | {load['seconds']:.0f} s | {load['foreign_cores']:.2f} cores |")
    add("")
    for title, error in res["errors"].items():
        add(f"**Part failed — {title}:**")
        add("")
        add("```")
        add(error.strip()[:3000])
        add("```")
        add("")
    add("## Summary")
    add("")
    add("| # | what | ratio / value | target | | CPU-cost ratio |")
    add("| --- | --- | ---: | --- | --- | ---: |")
    fa, ng, ec, mem = res.get("fa"), res.get("ng"), res.get("ec"), res.get("mem")
    if fa:
        v = fa["ratios"]["uvicorn"]
        add(f"| 1 | sidecar `/auth/nginx` (valid 2FA cookie) ÷ bare Starlette endpoint, uvicorn, "
            f"1 process each | {v:.2f} | {TARGETS['1'][0]} | {verdict('1', v)} | "
            f"{fa['cpu_ratios']['uvicorn']:.2f} |")
    if ng:
        v = ng["ratios"]["auth-1w"]
        cr = ng["cost_ratios"]
        add(f"| 2 | nginx → `auth_request` → app ÷ nginx → app, sidecar 1 worker | {v:.2f} | "
            f"{TARGETS['2a'][0]} | {verdict('2a', v)} | {cr['auth-1w']:.2f} |")
        add(f"| 2 | the same (shipped upstreams: `keepalive 64`), target of issue 13 | {v:.2f} | "
            f"{TARGETS['2c'][0]} | {verdict('2c', v)} | |")
        v = ng["ratios"]["auth-2w"]
        add(f"| 2 | the same, sidecar 2 workers | {v:.2f} | {TARGETS['2b'][0]} | {verdict('2b', v)} | "
            f"{cr['auth-2w']:.2f} |")
        v = ng["ratios"]["cache-1w"]
        add(f"| 3 | the same with the auth cache snippet, sidecar 1 worker | {v:.2f} | "
            f"{TARGETS['3'][0]} | {verdict('3', v)} | {cr['cache-1w']:.2f} |")
    if ec:
        v = ec["ratio_http"]
        add(f"| 4 | enrollment + challenge round trips/s, {ec['sizes']['large']:,} ÷ "
            f"{ec['sizes']['small']:,} enrolled users (HTTP pages) | {v:.2f} | {TARGETS['4'][0]} | "
            f"{verdict('4', v)} | {ec['ratio_cpu']:.2f} |")
    if mem:
        v = mem["after"]["rss_mb"]
        add(f"| 5 | VmRSS of the sidecar after {mem['decisions']:,} `/auth/nginx` requests | "
            f"{v:.1f} MB | {TARGETS['5'][0]} | {verdict('5', v)} | |")
    sc = res.get("sc")
    if sc:
        for key, what in (("mixed_sqlite", "SQLite, 1 instance"),
                          ("mixed_pg2", "PostgreSQL, 2 instances")):
            v = sc[key]["ratio"]
            add(f"| 7 | mixed {sc[key]['users']:,} users (1 in {sc[key]['anon_every']} anonymous) ÷ "
                f"one user, same server, {what} | {v:.2f} | {TARGETS['7a'][0]} | "
                f"{verdict('7a', v)} | |")
        for kind in ("postgres", "sqlite"):
            r = sc[f"rev_{kind}"]
            add(f"| 7 | revocation delay between two instances, {kind}: p50 / p99 | "
                f"{r['p50'] * 1000:.0f} ms / {r['p99'] * 1000:.0f} ms | {TARGETS['7b'][0]} | "
                f"{verdict('7b', r['p99'])} | |")
    if fa and "granian" in fa["ratios"]:
        add(f"| 6 | sidecar ÷ bare endpoint: uvicorn / granian | {fa['ratios']['uvicorn']:.2f} / "
            f"{fa['ratios']['granian']:.2f} | (report) | | {fa['cpu_ratios']['uvicorn']:.2f} / "
            f"{fa['cpu_ratios']['granian']:.2f} |")
    add("")
    add("*CPU-cost ratio*: the same comparison in requests per CPU-second (CPU time of the "
        "processes involved, from /proc/<pid>/stat, per request; baseline ÷ measured). It is "
        "what the throughput ratio would be if the cores were the benchmark's alone, and it "
        "moves little when other processes take CPU time from the run. For part 4 it is the "
        "sidecar's CPU per round trip, 10k ÷ 1M.")
    add("")

    if fa:
        s = fa["settings"]
        add("## 1. `/auth/nginx` against a bare Starlette endpoint (and 6. uvicorn vs granian)")
        add("")
        add(f"`bench/forward_auth.py`. One process per server, all pinned to CPU 0 (`taskset`), wrk "
            f"`-t1 -c{s['connections']}` pinned to CPU 1; {s['warmup']} s warm-up each, then "
            f"{s['rounds']} interleaved rounds of {s['seconds']} s; median round. Every request: "
            "`GET /auth/nginx` with `X-Original-URL`, `Accept: text/html` and the Cookie header "
            "of a logged-in user with a valid 2FA cookie (user seeded in SQLite, cookie signed "
            "with the config's keys); every answer must be 200. The app's who-am-I URL is "
            "bench/whoami.py (uvicorn, pinned to CPU 0 too), asked when the sidecar's who-am-I "
            "cache (per credential, 5 s) misses; its CPU counts in the sidecar rows' CPU per "
            "request.")
        add("")
        add("| server | app | req/s (median) | rounds | p50 ms | p99 ms | server CPU per request |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        names = {"uvicorn bare": ("uvicorn", "bare Starlette endpoint (bench/bare.py)"),
                 "uvicorn sidecar": ("uvicorn, same flags", "sidecar (bench/sidecar_factory.py)"),
                 "totp-sidecar serve": ("`totp-sidecar serve`", "sidecar (its own uvicorn settings)"),
                 "granian bare": ("granian", "bare Starlette endpoint"),
                 "granian sidecar": ("granian", "sidecar (bench/sidecar_factory.py)")}
        for name, r in fa["median"].items():
            server, app = names[name]
            add(f"| {server} | {app} | {r.rps:,.0f} | {fa['spread'][name]} | {ms(r.p50_ms)} | "
                f"{ms(r.p99_ms)} | {fa['cpu_us'][name]:.1f} µs |")
        add("")
        if fa.get("whoami"):
            add("Who-am-I calls in the timed rounds: " + "; ".join(
                f"{name} {asked:,} for {reqs:,} requests" for name, (asked, reqs)
                in fa["whoami"].items()) + ".")
            add("")
        ratios = fa["ratios"]
        add(f"- **1.** sidecar ÷ bare, uvicorn: **{ratios['uvicorn']:.2f}** (target ≥ 1.0: "
            f"{verdict('1', ratios['uvicorn'])}); in requests per CPU-second: "
            f"{fa['cpu_ratios']['uvicorn']:.2f}.")
        if "serve" in ratios:
            add(f"- `totp-sidecar serve` ÷ bare uvicorn: {ratios['serve']:.2f} (the CLI's own "
                "uvicorn settings; same code).")
        if "granian" in ratios:
            add(f"- **6.** sidecar ÷ bare, granian: **{ratios['granian']:.2f}**; granian ÷ uvicorn: "
                f"{ratios['granian_vs_uvicorn_sidecar']:.2f} for the sidecar, "
                f"{ratios['granian_vs_uvicorn_bare']:.2f} for the bare endpoint.")
        add("")
        for name, prof in fa.get("profiles", {}).items():
            L.extend(profile_table(f"py-spy, {name} during a wrk run", prof))

    if ng:
        s = ng["settings"]
        add("## 2. and 3. nginx → app, with and without `auth_request` to the sidecar")
        add("")
        add("`bench/nginx_auth.py`. Real nginx with the files of `deploy/nginx` (nginx.conf with "
            "`worker_processes 1`, the upstreams with `keepalive 64`, the server block, the "
            "snippets), only ports changed, as `tests/e2e` does. `plain` is the same server "
            "block without the auth and protect includes. `cache` includes "
            "`snippets/totp-sidecar-auth-cache.conf` instead of `snippets/totp-sidecar-auth.conf` "
            "and `totp-sidecar-auth-cache-zone.conf` in `http {}`. The app is bench/upstream.py "
            "(Starlette, any path → 200 `hello <Remote-User>`) on uvicorn, 1 worker; its "
            "who-am-I URL is bench/whoami.py on uvicorn, 1 process. Sidecars: "
            f"1 worker = {ng['launch']['sidecar-1w']}, 2 workers = {ng['launch']['sidecar-2w']}"
            f"{'' if cli_has_workers() else ' (the CLI has no --workers)'}. Nothing is pinned: "
            f"wrk `-t1 -c{s['connections']}`, nginx, app and sidecar share the 2 cores. "
            f"{s['warmup']} s warm-up, {s['rounds']} interleaved rounds of {s['seconds']} s, "
            "median round. Request: `GET /reports` with a valid 2FA cookie and the app session "
            "cookie, `Accept: text/html`.")
        add("")
        add("Checked before timing: " + "; ".join(ng["checks"]) + ".")
        add("")
        add("| setup | req/s (median) | rounds | ratio to plain | p50 ms | p99 ms | added p50 / p99 ms "
            "| 1 connection: p50 / p99 ms | added (1 conn) p50 / p99 ms | new upstream conns/request |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        base, base1 = ng["median"]["plain"], ng["single"]["plain"]
        labels = {"plain": "plain (no auth)", "auth-1w": "**auth**, sidecar 1 worker",
                  "auth-2w": "**auth**, sidecar 2 workers", "cache-1w": "**auth + cache**, 1 worker",
                  "plain-ka16": "diagnostic: plain, `keepalive 16`",
                  "auth-1w-ka16": "diagnostic: auth 1 worker, `keepalive 16`"}
        for name, r in ng["median"].items():
            one = ng["single"][name]
            rb = ng["median"]["plain-ka16"] if name == "auth-1w-ka16" else base
            rb1 = ng["single"]["plain-ka16"] if name == "auth-1w-ka16" else base1
            rt = f"{ng['ratios'][name]:.2f}" if name in ng["ratios"] else "1"
            added = "" if name.startswith("plain") else \
                f"{r.p50_ms - rb.p50_ms:+.2f} / {r.p99_ms - rb.p99_ms:+.2f}"
            added1 = "" if name.startswith("plain") else \
                f"{one.p50_ms - rb1.p50_ms:+.3f} / {one.p99_ms - rb1.p99_ms:+.3f}"
            add(f"| {labels[name]} | {r.rps:,.0f} | {ng['spread'][name]} | {rt} | {ms(r.p50_ms)} | "
                f"{ms(r.p99_ms)} | {added} | {one.p50_ms:.3f} / {one.p99_ms:.3f} | {added1} | "
                f"{ng['cpu'][name]['new_conns']:.3f} |")
        add("")
        add("`auth-1w-ka16` is compared with `plain-ka16`. Latency under load (c=32) is mostly "
            "queueing, so it grows as throughput falls; the 1-connection runs (one request at a "
            f"time, {s['latency_seconds']} s each) show the time the auth subrequest adds by itself.")
        add("")
        add("CPU-cost ratio (requests per CPU-second of wrk + nginx + app + sidecar + who-am-I stub, "
            "plain ÷ setup; "
            "median of the rounds): " + ", ".join(f"{name} **{v:.2f}**" for name, v in
                                                    ng["cost_ratios"].items()) + ".")
        add("")
        add("CPU used during the median round (% of one core; µs of CPU per request):")
        add("")
        add("| setup | wrk | nginx | app | sidecar | who-am-I | total |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, r in ng["median"].items():
            cpu = ng["cpu"][name]
            sidecar = cpu["sidecar-2w"] if name == "auth-2w" else cpu["sidecar-1w"]
            cells = [cpu["wrk"], cpu["nginx"], cpu["app"], sidecar, cpu.get("whoami", 0.0)]
            add(f"| {name} | " + " | ".join(f"{c:.0f}% ({c * 1e4 / r.rps:.0f} µs)" for c in cells)
                + f" | {sum(cells):.0f}% |")
        add("")
        if ng["cache_calls"]:
            calls = sum(c for c, _ in ng["cache_calls"])
            reqs = sum(n for _, n in ng["cache_calls"])
            add(f"Auth cache: the sidecar answered {calls:,} of {reqs:,} auth subrequests in the timed "
                f"cache rounds ({100 * (1 - calls / reqs):.2f}% served from the cache; one key, "
                "valid 5 s).")
            add("")
        if "profile" in ng:
            L.extend(profile_table("py-spy, sidecar (1 worker) behind nginx during a wrk run",
                                   ng["profile"]))

    if ec:
        add("## 4. Enrollment + challenge with 10,000 and 1,000,000 enrolled users (SQLite)")
        add("")
        add("`bench/enroll_challenge.py`. Users seeded with direct SQL in bulk: each a TOTP secret "
            "sealed for that user (AES-GCM, the same plaintext), generation 1, an `enabled` "
            f"event, {ec['recovery_codes']} recovery-code rows per seeded user"
            f"{RECOVERY_NOTE if not ec['recovery_codes'] else ''}. "
            "Measured **through the HTTP pages**: per round trip, a new user does `GET /_2fa/enroll` "
            "→ `POST /_2fa/enroll` (code) → `GET /_2fa/logout` → new app session → "
            "`GET /_2fa/challenge` → `POST /_2fa/challenge` (next code): 5 requests, 2 code "
            "checks, 2 CSRF forms, 1 QR code. Sidecar: `totp-sidecar serve` (`primary.resolver: "
            "header`, no app needed) pinned to CPU 0; client: httpx, "
            f"{ec['concurrency']} concurrent flows, on CPU 1; {ec['rounds']} interleaved rounds of "
            f"{ec['seconds']} s, median. Also **through the service layer** (`Accounts`: "
            "pending secret → complete enrollment → check), in-process, one at a time.")
        add("")
        add("| enrolled users | seeding | file | HTTP round trips/s | rounds | sidecar CPU per round trip | "
            "service-layer round trips/s |")
        add("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, count in ec["sizes"].items():
            h, sv = ec["http"][label], ec["service"][label]
            trips = [t for t, _ in h["runs"]]
            rounds = f"{min(trips):.0f}–{max(trips):.0f}"
            add(f"| {count:,} | {ec['seed_seconds'][label]:.1f} s | {ec['db_bytes'][label] / 1e6:.0f} MB | "
                f"{h['rps']:.1f} | {rounds} | {h['cpu_ms']:.1f} ms | {sv['rps']:.1f} |")
        add("")
        add(f"Ratio {ec['sizes']['large']:,} ÷ {ec['sizes']['small']:,}: HTTP **{ec['ratio_http']:.2f}** "
            f"(target ≥ 0.5: {verdict('4', ec['ratio_http'])}); sidecar CPU per round trip "
            f"{ec['ratio_cpu']:.2f} (small ÷ large); service layer {ec['ratio_service']:.2f}.")
        add("")

    if mem:
        w = mem["wrk"]
        add("## 5. Memory after 100,000 `/auth/nginx` requests")
        add("")
        add(f"`bench/memory.py`. {mem['launch']} (one process) pinned to CPU 0; wrk `-t1 -c32` on "
            f"CPU 1 with `bench/mixed_cookies.lua`: {mem['users']:,} enrolled users, each with its own "
            f"app session and valid 2FA cookie, used in turn; every {mem['anon_every']}th request "
            "anonymous (no cookie). All answers 200. Who-am-I URL: bench/whoami.py (uvicorn, "
            f"CPU 0), asked {mem.get('whoami_calls', 0):,} times. CPU per request: sidecar "
            f"{mem['cpu_us']['sidecar']:.0f} µs, who-am-I stub {mem['cpu_us']['whoami']:.0f} µs.")
        add("")
        add("| | VmRSS | VmHWM |")
        add("| --- | ---: | ---: |")
        add(f"| after start | {mem['start']['rss_mb']:.1f} MB | {mem['start']['hwm_mb']:.1f} MB |")
        add(f"| after {mem['decisions']:,} requests | **{mem['after']['rss_mb']:.1f} MB** | "
            f"{mem['after']['hwm_mb']:.1f} MB |")
        add("")
        add(f"Target < 100 MB: {verdict('5', mem['after']['rss_mb'])}. Throughput of this mix: "
            f"{w.rps:,.0f} req/s (p50 {ms(w.p50_ms)} ms, p99 {ms(w.p99_ms)} ms) — each user comes "
            "back only every few seconds, so most valid cookies miss the 5-second who-am-I "
            "cache: the sidecar asks the who-am-I URL; the users' states stay in memory (an LRU "
            "kept current by the change feed), so it reads no storage.")
        add("")
    if sc:
        L.extend(scale_section(sc))
    path.write_text("\n".join(L) + "\n")


def scale_section(sc: dict[str, Any]) -> list[str]:
    L = ["## 7. Many users, two instances: the change feed", "",
         "`bench/scale.py`. `totp-sidecar serve` (one process per instance) pinned to CPU 0, wrk "
         "`-t1 -c32` on CPU 1 with `bench/mixed_users.lua`; the user is named by the `header` "
         "resolver (`Remote-User`), so no who-am-I URL is asked on either side. Every user is "
         "seen once first (a first sight reads storage once), then one user and the mix are "
         "measured in interleaved rounds (with two instances, each instance in turn).", "",
         "| storage | one user | mixed | ratio | users in memory after |",
         "| --- | ---: | ---: | ---: | ---: |"]
    for key, what in (("mixed_sqlite", "SQLite, 1 instance"), ("mixed_pg2", "PostgreSQL, 2 instances")):
        m = sc[key]
        L.append(f"| {what} | {m['median']['one'].rps:,.0f} req/s ({m['spread']['one']}) | "
                 f"{m['median']['mixed'].rps:,.0f} req/s ({m['spread']['mixed']}) | "
                 f"**{m['ratio']:.2f}** | {', '.join(f'{n:,}' for n in m['cached_users'])} |")
    L += ["", "One user is answered from the answer cache (the same headers again and again). "
          "In the mix, a user (or the anonymous request) seen within `cache.answer_seconds` "
          "is answered from it too; one not seen that long is read and decided in full, from "
          "memory: no storage read (the test `tests/integration/test_no_storage_read.py` "
          "counts them: none in 10,000 requests of 1,000 known users). Each wrk run starts "
          "again at the first user, so a round reaches users last seen in the warm-up, which "
          "takes minutes on a loaded machine.", "",
          "Revocation delay: instance B passed a user's 2FA cookie (its state in memory); a "
          "third process turns the user's 2FA off in the database; B is asked again and again "
          "until the cookie no longer passes. From the commit to B's first refusal:", "",
          "| storage | users | p50 | p90 | p99 | max |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, how in (("postgres", "PostgreSQL (LISTEN/NOTIFY, poll every 1 s)"),
                      ("sqlite", "SQLite (polled every 0.25 s)")):
        r = sc[f"rev_{kind}"]
        L.append(f"| {how} | {r['samples']} | {r['p50'] * 1000:.1f} ms | {r['p90'] * 1000:.1f} ms | "
                 f"**{r['p99'] * 1000:.1f} ms** | {r['max'] * 1000:.1f} ms |")
    return [*L, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round, small sizes")
    parser.add_argument("--only", default="1,2,4,5,7",
                        help="which parts: 1 (with 6), 2 (with 3), 4, 5, 7")
    parser.add_argument("--output", default=str(BENCH / "RESULTS.md"))
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--code", default="", help="a note on the code under test, for RESULTS.md"
                        " (e.g. which commit a `git archive` snapshot was made from)")
    opts = parser.parse_args()
    only = set(opts.only.split(","))
    seconds, rounds = (2, 1) if opts.quick else (5, 3)
    profile_seconds = 0 if opts.no_profile or not pyspy() else (3 if opts.quick else 8)
    began = time.monotonic()
    load_start = loadavg()
    info = machine()
    log(f"machine: {info['nproc']} CPUs, {info['cpu']}; sidecar changes: {info['uncommitted']}")
    res: dict[str, Any] = {"errors": {}, "load": {}}
    # part 6 needs granian (pip install granian); without it part 1 runs on uvicorn alone
    servers = ("uvicorn", "granian") if Path(GRANIAN[0]).exists() else ("uvicorn",)
    parts: list[tuple[str, str, str, Callable[[Path], dict[str, Any]]]] = [
        ("1", "fa", "1 + 6: /auth/nginx vs bare endpoint, uvicorn and granian",
         lambda d: forward_auth.measure(d, seconds, 1 if opts.quick else 5,
                                        profile_seconds=profile_seconds, servers=servers)),
        ("2", "ng", "2 + 3: nginx auth_request, 1 and 2 workers, auth cache",
         lambda d: nginx_auth.measure(d, seconds, 1 if opts.quick else 5,
                                      profile_seconds=profile_seconds,
                                      latency_seconds=2 if opts.quick else 3)),
        ("4", "ec", "4: enrollment + challenge, 10k and 1M users",
         lambda d: enroll_challenge.measure(d, small=1_000 if opts.quick else 10_000,
                                            large=20_000 if opts.quick else 1_000_000,
                                            seconds=seconds, rounds=rounds,
                                            service_seconds=2 if opts.quick else 3)),
        ("5", "mem", "5: memory after 100,000 requests of 50,000 users",
         lambda d: memory.measure(d, requests=20_000 if opts.quick else 100_000,
                                  users=2_000 if opts.quick else 50_000)),
        ("7", "sc", "7: many users, two instances, revocation delay",
         lambda d: scale.measure(d, seconds, rounds, users=2_000 if opts.quick else 20_000,
                                 samples=20 if opts.quick else 200)),
    ]
    with tempfile.TemporaryDirectory(prefix="totp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx workers run as nobody when nginx is started as root
        for number, key, title, run in parts:
            if number not in only:
                continue
            log(title)
            folder = tmp / key
            folder.mkdir()
            folder.chmod(0o755)
            load: dict[str, float] = {}
            try:
                with foreign_load(load):
                    res[key] = run(folder)
            except (Exception, SystemExit) as exc:  # one broken part does not stop the others
                res["errors"][title] = f"{type(exc).__name__}: {exc}"
                log(f"  FAILED: {res['errors'][title][:2000]}")
            res["load"][title] = load
    elapsed = time.monotonic() - began
    load_end = loadavg()
    write_results(Path(opts.output), info, opts, res, elapsed, (load_start, load_end))
    log(f"wrote {opts.output} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
