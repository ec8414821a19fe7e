"""Requests/s of /auth/nginx with a valid 2FA cookie, as a ratio to a bare Starlette endpoint.

Both run in one uvicorn process each (httptools, uvloop, no access log) on 127.0.0.1 and are
measured with wrk in the same run, one after the other. Usage:

    .venv/bin/python bench/forward_auth.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.config import load_config  # noqa: E402
from sidecar.context import Sidecar  # noqa: E402
from sidecar.primary import Identity, credential  # noqa: E402
from sidecar.storage import SQLiteStorage  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


async def valid_cookie(config_path: Path) -> str:
    """Enroll 'alice' in the database and sign a 2FA cookie for session 'bench'."""
    config = load_config(config_path)
    storage = SQLiteStorage(config.sqlite_path)
    await storage.open()
    await storage.put_pending("alice", "A" * 32, 2**40, 0)
    await storage.complete_enrollment("alice", "A" * 32, 1, [], 1)
    generation = (await storage.get_user("alice")).generation
    await storage.close()
    sidecar = Sidecar(config, storage=storage)
    cred = credential({"cookie": "sessionid=bench"}, (config.cookie.name,), ("sessionid",))
    return f"sessionid=bench; {config.cookie.name}={sidecar.new_pass(Identity('alice'), cred, generation)}"


def wrk(port: int, cookie: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Cookie: {cookie}",
         "-H", "X-Original-URL: http://app.test/reports", "-H", "Accept: text/html",
         f"http://127.0.0.1:{port}/auth/nginx"], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"unexpected answers:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def serve(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(yaml.safe_dump({
            "secrets": {"signing_keys": [secrets.token_urlsafe(48)], "hash_key": secrets.token_urlsafe(48),
                        "encryption_keys": [secrets.token_urlsafe(48)]},
            "storage": {"sqlite": {"path": str(Path(tmp) / "bench.db")}},
            "primary": {"session_cookies": ["sessionid"],
                        "introspect": {"url": "http://127.0.0.1:9/never-called"}},
            "server": {"log_level": "warning"},
        }))
        cookie = asyncio.run(valid_cookie(config_path))
        uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning",
                   "--http", "httptools", "--loop", "uvloop", "--no-server-header"]
        results = {}
        for name, args in (("bare starlette", [*uvicorn, "bench.bare:app"]),
                           ("sidecar /auth/nginx", [sys.executable, "-m", "sidecar", "serve",
                                                    "--config", str(config_path)])):
            port = free_port()
            if name.startswith("bare"):
                args = [*args, "--port", str(port)]
            else:
                args = [*args, "--port", str(port)]
            proc = serve(args, port)
            try:
                wrk(port, cookie, 2, opts.connections)  # warm-up
                results[name] = wrk(port, cookie, opts.seconds, opts.connections)
            finally:
                proc.terminate()
                proc.wait(10)
        base, ours = results["bare starlette"], results["sidecar /auth/nginx"]
        print(f"bare starlette endpoint : {base:10.0f} req/s")
        print(f"sidecar /auth/nginx     : {ours:10.0f} req/s (valid 2FA cookie)")
        print(f"ratio                   : {ours / base:10.2f}")


if __name__ == "__main__":
    main()
