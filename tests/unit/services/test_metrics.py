"""The metrics of issue 12 (item 15): who-am-I calls, storage errors, build info, enrolled users."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from sidecar import __version__
from sidecar.errors import UpstreamUnavailable
from sidecar.metrics import Metrics
from sidecar.primary import Credential, IntrospectResolver
from tests.conftest import make_config


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


ANSWERS = {
    "/user": httpx.Response(200, json={"user": "alice"}),
    "/nobody": httpx.Response(401),
    "/boom": httpx.Response(500),
    "/page": httpx.Response(200, text="<html>"),
    "/other": httpx.Response(200, json={"username": "alice"}),
    "/list": httpx.Response(200, json={"user": ["alice"]}),
}


def resolver_at(tmp_path: Path, path: str, metrics: Metrics) -> IntrospectResolver:
    config = make_config(tmp_path, primary={"resolver": "introspect", "introspect": {
        "url": f"http://app.test{path}", "cache_seconds": 0}})

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return ANSWERS[request.url.path]

    return IntrospectResolver(config, transport=httpx.MockTransport(answer),
                              observe=metrics.whoami)


@pytest.mark.anyio
async def test_whoami_calls_are_timed_and_errors_counted_by_kind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    cred = Credential("demo_session=1", "")
    for path in ("/user", "/nobody"):
        await resolver_at(tmp_path, path, metrics).resolve_credential(cred)
    kinds = {"/boom": "status", "/page": "not_json", "/other": "no_user", "/list": "bad_user",
             "/down": "unreachable"}
    for path, kind in kinds.items():
        with caplog.at_level(logging.ERROR, "sidecar.primary"), pytest.raises(UpstreamUnavailable):
            await resolver_at(tmp_path, path, metrics).resolve_credential(cred)
        assert sample(metrics, "totp_sidecar_whoami_errors_total", app="default", kind=kind) == 1
        # the serve log names the URL and the status
        assert f"http://app.test{path}" in caplog.records[-1].getMessage()
    assert "(status 500)" in caplog.text and "(status 200)" in caplog.text
    assert sample(metrics, "totp_sidecar_whoami_seconds_count", app="default") == 7


@pytest.mark.anyio
async def test_enrolled_users_are_counted_at_most_once_a_minute() -> None:
    now = [1000.0]
    metrics = Metrics(monotonic=lambda: now[0])
    counted: list[int] = []

    async def count() -> int:
        counted.append(1)
        return 3 * len(counted)

    await metrics.refresh_enrolled(count)
    await metrics.refresh_enrolled(count)
    assert sample(metrics, "totp_sidecar_enrolled_users") == 3 and len(counted) == 1
    now[0] += 61
    await metrics.refresh_enrolled(count)
    assert sample(metrics, "totp_sidecar_enrolled_users") == 6


def test_build_info_and_storage_errors() -> None:
    metrics = Metrics()
    assert b'totp_sidecar_build_info{python="' in metrics.render()
    assert f'version="{__version__}"'.encode() in metrics.render()
    metrics.storage_error()
    assert sample(metrics, "totp_sidecar_storage_errors_total") == 1


def test_decisions_and_their_latency_per_app() -> None:
    """Counted in plain ints on the hot path, exposed as a counter and a histogram."""
    import time

    metrics = Metrics()
    blog = metrics.for_app("blog")
    now = time.perf_counter()
    metrics.decided("allow", now)
    metrics.decided("allow", now)
    blog.decided("challenge", now - 0.003)  # 3 ms: in the 5 ms bucket, not the 2.5 ms one
    assert sample(metrics, "totp_sidecar_decisions_total", app="default", outcome="allow") == 2
    assert sample(metrics, "totp_sidecar_decisions_total", app="blog", outcome="challenge") == 1
    assert sample(metrics, "totp_sidecar_auth_seconds_count", app="blog") == 1
    assert sample(metrics, "totp_sidecar_auth_seconds_bucket", app="blog", le="0.0025") == 0
    assert sample(metrics, "totp_sidecar_auth_seconds_bucket", app="blog", le="0.005") == 1
    assert sample(metrics, "totp_sidecar_auth_seconds_bucket", app="blog", le="+Inf") == 1
    assert 0.003 <= sample(metrics, "totp_sidecar_auth_seconds_sum", app="blog") < 1
    assert sample(metrics, "totp_sidecar_auth_seconds_count", app="default") == 2
