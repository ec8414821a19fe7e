"""Shared helpers of the benchmarks: processes, ports, wrk, configs, seeded users, py-spy.

Nothing here measures by itself; ``run_all.py`` and the per-topic scripts do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
SESSION_COOKIE = "sessionid"
FACTORY_ENV = "TOTP_SIDECAR_BENCH_CONFIG"
# The same server settings for every uvicorn process (the sidecar's `serve` uses the same:
# auto http = httptools, auto loop = uvloop when installed, no access log, no Server header).
UVICORN = [PY, "-m", "uvicorn", "--no-access-log", "--log-level", "warning", "--http", "httptools",
           "--loop", "uvloop", "--no-server-header", "--ws", "none", "--no-proxy-headers",
           "--host", "127.0.0.1"]
GRANIAN = [str(Path(PY).parent / "granian"), "--interface", "asgi", "--loop", "uvloop",
           "--no-ws", "--log-level", "warning", "--no-access-log", "--workers", "1",
           "--runtime-threads", "1", "--host", "127.0.0.1"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- CPUs -----------------------------------------------------------------------------------
def cpus() -> int:
    return len(os.sched_getaffinity(0))


def pinned(cpu: int | None, args: list[str]) -> list[str]:
    """``args`` run on one CPU (taskset), when there are two or more and taskset exists."""
    if cpu is None or cpus() < 2 or not shutil.which("taskset"):
        return args
    return ["taskset", "-c", str(cpu), *args]


SERVER_CPU, CLIENT_CPU = 0, 1


# -- ports and processes --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30,
              log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise SystemExit(f"process {proc.args!r} exited with {proc.returncode}:\n{tail}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def wait_http(url: str, timeout: float = 30, headers: dict[str, str] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2, headers=headers)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready: {last}")


@dataclass
class Procs:
    """Processes started by the benchmark (each in its own process group), stopped at exit."""

    log_dir: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], port: int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        self.started[name] = proc
        if port is not None:
            wait_port(port, proc, log_path=log_path)
        return proc

    def stop(self, name: str) -> None:
        proc = self.started.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the group of a process this script started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.started)[::-1]:
            self.stop(name)


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Procs]:
    procs = Procs(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live children, in seconds."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used since boot (/proc/stat), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_busy_seconds() -> float:
    """CPU time of this process and of its children that have been waited for."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextlib.contextmanager
def foreign_load(into: dict[str, float]) -> Iterator[None]:
    """Measures how busy the machine was with processes that are not this benchmark's:
    ``into["foreign_cores"]`` (average cores used by others) and ``into["seconds"]``."""
    machine0, own0, t0 = machine_busy_seconds(), own_busy_seconds(), time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - t0
        foreign = (machine_busy_seconds() - machine0) - (own_busy_seconds() - own0)
        into["seconds"] = elapsed
        into["foreign_cores"] = max(foreign, 0.0) / elapsed if elapsed else 0.0


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# -- wrk ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, text
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(out: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    assert rps and p50 and p99 and total, out
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)),
                     int(non2xx.group(1)) if non2xx else 0,
                     sum(int(g) for g in errors.groups()) if errors else 0)


def _wrk_args(url: str, headers: Sequence[str], seconds: float, connections: int,
              script: Path | None, cpu: int | None, timeout: str,
              script_args: Sequence[str]) -> list[str]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", timeout]
    for header in headers:
        args += ["-H", header]
    if script is not None:
        args += ["-s", str(script)]
    tail = ["--", *script_args] if script_args else []
    return pinned(cpu, [*args, url, *tail])


def _checked(url: str, out: str, allow_errors: bool) -> WrkResult:
    result = parse_wrk(out)
    if not allow_errors and (result.non2xx or result.errors):
        raise SystemExit(f"unexpected answers or socket errors from {url}:\n{out}")
    return result


def wrk(url: str, headers: Sequence[str] = (), seconds: float = 5, connections: int = 32,
        script: Path | None = None, cpu: int | None = CLIENT_CPU, allow_errors: bool = False,
        timeout: str = "5s", script_args: Sequence[str] = ()) -> WrkResult:
    """One wrk run (1 thread). Any non-2xx/3xx answer or socket error fails the benchmark."""
    args = _wrk_args(url, headers, seconds, connections, script, cpu, timeout, script_args)
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return _checked(url, out, allow_errors)


def wrk_until(url: str, finished: Callable[[], bool], headers: Sequence[str] = (),
              max_seconds: float = 300, connections: int = 32, script: Path | None = None,
              cpu: int | None = CLIENT_CPU, timeout: str = "5s",
              script_args: Sequence[str] = ()) -> WrkResult:
    """wrk until ``finished()`` says so (polled twice a second), then SIGINT: wrk stops and
    reports what it did so far (its -d would otherwise run to the end)."""
    args = _wrk_args(url, headers, max_seconds, connections, script, cpu, timeout, script_args)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        while proc.poll() is None and not finished():
            time.sleep(0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -signal.SIGINT):
        raise SystemExit(f"wrk failed ({proc.returncode}): {err}")
    return _checked(url, out, False)


def median_result(results: Sequence[WrkResult]) -> WrkResult:
    """The round with the median requests/s (its latencies go with it)."""
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def spread(results: Sequence[WrkResult]) -> str:
    values = [r.rps for r in results]
    return f"{min(values):.0f}–{max(values):.0f}"


# -- configs and users ----------------------------------------------------------------------
def new_secrets() -> dict[str, Any]:
    return {"signing_keys": [secrets.token_urlsafe(48)], "hash_key": secrets.token_urlsafe(48),
            "encryption_keys": [secrets.token_urlsafe(48)]}


def write_config(path: Path, db: Path, port: int, keys: dict[str, Any],
                 resolver: str = "introspect", introspect_url: str | None = None,
                 **extra: Any) -> Path:
    """A sidecar config: SQLite at ``db``. With the ``introspect`` resolver (the default) the
    app's who-am-I URL is ``introspect_url``, normally ``whoami_url(port)`` of the stub that
    ``start_whoami`` runs: the sidecar asks it on every request whose credential is not in its
    who-am-I cache (``primary.introspect.cache_seconds``, 5 s by default)."""
    primary: dict[str, Any] = {"resolver": resolver, "session_cookies": [SESSION_COOKIE]}
    if resolver == "introspect":
        if not introspect_url:
            raise ValueError("the introspect resolver needs introspect_url (see start_whoami)")
        primary["introspect"] = {"url": introspect_url}
    config = {"server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
              "secrets": keys, "storage": {"sqlite": {"path": str(db)}}, "primary": primary,
              **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def load(config_path: Path) -> Any:
    from sidecar.config import load_config

    return load_config(config_path)


def sqlite_file(config: Any) -> str:
    """The SQLite file of a config (``storage.sqlite.path``)."""
    path = getattr(getattr(config, "storage", None), "path", None)
    return str(path) if path else str(config.sqlite_path)


def open_storage(config: Any) -> Any:
    """The storage the sidecar itself would use for ``config`` (not opened yet)."""
    try:
        from sidecar.wiring import make_storage
    except ImportError:
        from sidecar.storage import SQLiteStorage

        return SQLiteStorage(sqlite_file(config))
    return make_storage(config)


def migrate(config_path: Path) -> None:
    """Create the database with the sidecar's own migrations."""

    async def run() -> None:
        storage = open_storage(load(config_path))
        await storage.open()
        await storage.close()

    asyncio.run(run())


def user_id(i: int) -> str:
    return f"user{i:07d}"


FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def seed_users(config_path: Path, count: int, recovery_codes: int = 0, start: int = 0,
               batch: int = 100_000) -> float:
    """Enroll ``count`` users with direct SQL in bulk; returns the seconds taken.

    Each user gets a TOTP secret sealed for that user (AES-GCM, user id as associated data;
    the plaintext is the same for all, which does not matter to storage), generation 1, one
    ``enabled`` event, and ``recovery_codes`` random recovery-code hashes (0 by default: 20
    per user makes a 1M-user file 4 GB and ~90 s; see README).
    """
    from sidecar.crypto import SecretBox

    config = load(config_path)
    migrate(config_path)
    box = SecretBox(config.encryption_keys)
    began = time.perf_counter()
    now = int(time.time())
    db = sqlite3.connect(sqlite_file(config), isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -200000")
        for first in range(start, start + count, batch):
            ids = [user_id(i) for i in range(first, min(first + batch, start + count))]
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO users (user_id, secret, enabled_at, last_step, generation)"
                " VALUES (?, ?, ?, 0, 1)", ((u, box.seal(u, FIXED_SECRET), now) for u in ids))
            db.executemany("INSERT INTO events (at, event, user_id, client) VALUES (?, 'enabled', ?,"
                           " '127.0.0.1')", ((now, u) for u in ids))
            if recovery_codes:
                db.executemany("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                               ((u, os.urandom(32).hex()) for u in ids for _ in range(recovery_codes)))
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return time.perf_counter() - began


def sign_cookies(config_path: Path, users: Sequence[str]) -> list[str]:
    """A Cookie header per user: an app session cookie and a 2FA cookie bound to it, signed
    the way the challenge page signs it (generation 1, as seeded)."""
    from sidecar.wiring import build_parts

    config = load(config_path)
    passes = build_parts(config).passes  # storage is never opened: signing needs only the keys
    name = config.cookie.name
    out = []
    for user in users:
        session = f"{SESSION_COOKIE}=s-{user}"
        out.append(f"{session}; {name}={passes.issue(user, session, 1)}")
    return out


AUTH_HEADERS = ("X-Original-URL: http://app.test/reports", "X-Original-Method: GET",
                "Accept: text/html")


# -- the app's who-am-I URL (bench/whoami.py) ----------------------------------------------
WHOAMI_APP = "bench.whoami:app"
WHOAMI_PATH = "/api/me"


def whoami_url(port: int) -> str:
    """The who-am-I URL of the stub on ``port``, for ``write_config(introspect_url=...)``."""
    return f"http://127.0.0.1:{port}{WHOAMI_PATH}"


def start_whoami(procs: Procs, port: int, cpu: int | None = SERVER_CPU) -> subprocess.Popen[bytes]:
    """Run bench/whoami.py (uvicorn, the UVICORN settings, one process) on ``port``, pinned to
    ``cpu`` like the servers under test (None: not pinned), and wait until it answers."""
    proc = procs.start("whoami", pinned(cpu, [*UVICORN, WHOAMI_APP, "--port", str(port)]), port)
    wait_http(whoami_url(port), headers={"Cookie": f"{SESSION_COOKIE}=s-probe"})
    return proc


def whoami_calls(port: int) -> int:
    """How many who-am-I questions the stub on ``port`` has answered."""
    import httpx

    return int(httpx.get(f"http://127.0.0.1:{port}/_stub/calls", timeout=5).text)


# -- how the sidecar is started -------------------------------------------------------------
def cli_has_workers() -> bool:
    out = subprocess.run([PY, "-m", "sidecar", "serve", "--help"], capture_output=True, text=True,
                         cwd=ROOT).stdout
    return "--workers" in out


def sidecar_command(config_path: Path, port: int, workers: int = 1,
                    launcher: str = "auto") -> tuple[list[str], dict[str, str], str]:
    """(args, env, description) to run the sidecar with ``workers`` processes.

    ``cli``: ``python -m sidecar serve`` (with ``--workers`` when it has it); ``factory``:
    ``uvicorn --factory bench.sidecar_factory:create_app`` with the UVICORN settings;
    ``auto``: the CLI when it can do ``workers``, else the factory.
    """
    if launcher == "auto":
        launcher = "cli" if workers == 1 or cli_has_workers() else "factory"
    if launcher == "cli":
        args = [PY, "-m", "sidecar", "serve", "--config", str(config_path), "--port", str(port)]
        if workers != 1:
            args += ["--workers", str(workers)]
        return args, {}, f"`totp-sidecar serve`{f' --workers {workers}' if workers != 1 else ''}"
    args = [*UVICORN, "--factory", "bench.sidecar_factory:create_app", "--port", str(port),
            "--workers", str(workers)]
    return (args, {FACTORY_ENV: str(config_path)},
            f"`uvicorn --factory bench.sidecar_factory:create_app --workers {workers}`")


def metrics_count(port: int, metric: str = "totp_sidecar_decisions_total") -> int:
    """The sum of a counter on one sidecar process (with several workers: whichever answers)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith(metric + "{"))


# -- py-spy -------------------------------------------------------------------------------
def pyspy() -> str | None:
    found = Path(PY).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile(pid: int, seconds: int, out: Path, rate: int = 250) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` (raw collapsed stacks, non-blocking) on ``pid``; None without py-spy."""
    tool = pyspy()
    if tool is None:
        return None
    return subprocess.Popen([tool, "record", "--pid", str(pid), "--duration", str(seconds),
                             "--rate", str(rate), "--format", "raw", "--nonblocking",
                             "--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)", idle frames kept
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    parts = Path(path).parts
    for anchor in ("site-packages", "sidecar", "lib"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            path = "/".join(parts[i + 1:] if anchor != "sidecar" else parts[i:])
            break
    return f"{func} ({path})"


CATEGORIES = {  # first folder of the leaf frame's file → label
    "sidecar": "sidecar code",
    "prometheus_client": "metrics (prometheus_client)",
    "uvicorn": "uvicorn (HTTP protocol, Python part)",
    "granian": "granian",
    "starlette": "starlette",
    "asyncio": "event loop (uvloop: C code under asyncio's Runner.run)",
    "aiosqlite": "aiosqlite / sqlite3",
    "sqlite3": "aiosqlite / sqlite3",
    "itsdangerous": "itsdangerous",
}


def _category(short_frame: str) -> str:
    match = re.search(r"\((.*)\)$", short_frame)
    parts = [p for p in (match.group(1) if match else "").split("/") if p]
    if parts and re.fullmatch(r"python3\.\d+", parts[0]):
        parts = parts[1:]
    return CATEGORIES.get(parts[0] if parts else "", "other (stdlib, ...)")


def summarize_profile(raw: Path, top: int = 12) -> dict[str, Any]:
    """Sample shares from py-spy's raw collapsed stacks: per function (self time), per sidecar
    function (inclusive: with what it calls), and per category (where the leaf frame lives)."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        short = [_frame(f) for f in frames]
        cats[_category(short[-1])] += count
        self_counts[short[-1]] += count
        for f in set(short):
            if _category(f) == "sidecar code" and "__main__" not in f and "cli.py" not in f:
                incl[f] += count  # inclusive: the sidecar's own functions only

    def share(counter: Counter[str], n: int = top) -> list[tuple[str, float]]:
        return [(name, 100.0 * k / total) for name, k in counter.most_common(n)] if total else []

    return {"samples": total, "self": share(self_counts), "inclusive": share(incl),
            "categories": share(cats, 20)}


# -- the machine --------------------------------------------------------------------------
def _version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() \
        else "?"


def machine() -> dict[str, str]:
    import starlette
    import uvicorn

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    try:
        import granian
        granian_version = granian.__version__
    except ImportError:
        granian_version = "not installed"
    in_git = (ROOT / ".git").exists()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=ROOT).stdout.strip() if in_git else ""
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "sidecar", "templates",
                            "pyproject.toml"], capture_output=True, text=True,
                           cwd=ROOT).stdout if in_git else ""
    changed = [line[3:] for line in dirty.splitlines()]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "starlette": starlette.__version__,
        "granian": granian_version,
        "nginx": _version(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": _version(["wrk", "-v"]).split(" [")[0],
        "commit": git or f"— ({ROOT} is not a git checkout: see 'code under test')",
        "uncommitted": ", ".join(changed) if changed else "none" if in_git else "?",
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def med(values: Sequence[float]) -> float:
    return statistics.median(values)
