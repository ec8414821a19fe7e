"""`totp-sidecar serve` as operators run it: workers, graceful stop, JSON logs, metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import config_dict
from tests.e2e.stacks import ROOT
from tests.ports import free_port


def serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(
        tmp_path, server={"port": port},
        primary={"resolver": "header", "session_cookies": ["upstream_session"]})))
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sidecar", "serve", "--config", str(config),
                                 *extra], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port, log
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(15)


def test_two_workers_serve_and_stop_gracefully(tmp_path: Path) -> None:
    proc, port, log = serve(tmp_path, "--workers", "2")
    try:
        answers = [httpx.get(f"http://127.0.0.1:{port}/auth/nginx", timeout=5, headers={
            "x-original-url": "http://app.test/", "x-original-method": "GET",
            "remote-user": "alice", "cookie": "upstream_session=s"}) for _ in range(20)]
        assert all(a.status_code == 200 and a.headers["remote-user"] == "alice" for a in answers)
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()


def test_graceful_stop_json_logs_and_request_ids(tmp_path: Path) -> None:
    proc, port, log = serve(tmp_path)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/_2fa/enroll", timeout=5,
                         headers={"remote-user": "alice", "cookie": "upstream_session=s",
                                  "x-request-id": "req-12345"})
        assert page.status_code == 200 and page.headers["x-request-id"] == "req-12345"
        assert len(httpx.get(f"http://127.0.0.1:{port}/healthz").headers["x-request-id"]) == 16
        bad = httpx.get(f"http://127.0.0.1:{port}/auth/forward", timeout=5,
                        headers={"x-request-id": "req-bad-1"})
        assert bad.status_code == 400
    finally:
        started = time.monotonic()
        code = stop(proc)
    assert code == 0 and time.monotonic() - started < 10
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    warning = next(line for line in lines if line["logger"] == "sidecar.authz")
    assert warning["request_id"] == "req-bad-1" and warning["level"] == "warning"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    proc, port, _ = serve(tmp_path)
    try:
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/auth/nginx", timeout=5,
                      headers={"x-original-url": "http://app.test/", "x-original-method": "GET"})
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        stop(proc)
    assert 'totp_sidecar_decisions_total{app="default",outcome="allow"} 3.0' in text
    assert "totp_sidecar_auth_seconds_bucket" in text
    assert "# TYPE totp_sidecar_code_checks_total counter" in text
