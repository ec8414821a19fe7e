"""What choosing the app by host costs on the hot path: ``/auth/nginx`` called in process
(no network, no server: the sidecar's own work only) with a valid 2FA cookie, for a sidecar
with one app and for one with three apps (the request for the last listed one), as a ratio.

    .venv/bin/python bench/apps.py [--calls 20000] [--rounds 5]

Two cases each: the same request again (the one-second answer cache hits: the app is still
chosen first, so this is where the choice weighs most), and a new ``X-Request-Id`` each time
(the whole decision, with the who-am-I answer from its cache). Rounds are interleaved
(one app, three apps, one app, ...); the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.config import parse_config  # noqa: E402
from sidecar.core import totp  # noqa: E402
from sidecar.core.apps import storage_key  # noqa: E402
from sidecar.core.clock import FixedClock  # noqa: E402
from sidecar.primary import Credential, Identity, Resolved  # noqa: E402
from sidecar.web.app import SidecarApp, create_app  # noqa: E402

KEY = "k" * 48


class Alice:
    """A resolver that says alice is logged in (the who-am-I cache, without the network)."""

    async def resolve(self, reading: Any) -> Resolved:
        return Resolved(Identity("alice", "alice@example.com"))

    async def resolve_credential(self, cred: Credential) -> Resolved:
        return Resolved(Identity("alice", "alice@example.com"))

    def invalidate(self, cred: Credential) -> None:
        pass

    async def aclose(self) -> None:
        pass


def config(folder: Path, apps: int) -> Any:
    data: dict[str, Any] = {
        "primary": {"session_cookies": ["s"], "introspect": {"url": "http://127.0.0.1:9/me"}},
        "secrets": {"signing_keys": [KEY], "hash_key": KEY, "encryption_keys": [KEY]},
        "storage": {"sqlite": {"path": str(folder / f"{apps}.db")}},
    }
    if apps > 1:
        data["hosts"] = ["app0.test"]
        data["apps"] = [{"name": f"app{n}", "hosts": [f"app{n}.test", f"*.app{n}.test"],
                         "primary": {"session_cookies": ["s"],
                                     "introspect": {"url": "http://127.0.0.1:9/me"}}}
                        for n in range(1, apps)]
    return parse_config(data, environ={})


async def prepared(folder: Path, apps: int) -> tuple[SidecarApp, str, str]:
    """The sidecar, alice enrolled in the host's app, and the host the calls ask for."""
    cfg = config(folder, apps)
    name = cfg.every_app[-1].name
    clock = FixedClock(1_800_000_000)
    app = create_app(cfg, clock=clock, resolvers={a.name: Alice() for a in cfg.every_app})
    await app.parts.open()
    target = app.parts.apps.named(name)
    user = storage_key(target.namespace, "alice")
    secret = await target.accounts.pending_secret(user)
    result, _, _ = await target.accounts.complete_enrollment(user, totp.code_at(secret, clock()),
                                                             "127.0.0.1")
    assert result.check.value == "ok"
    state = await target.accounts.user(user)
    cookie = target.passes.issue(user, "s=session-value", state.generation)
    host = cfg.every_app[-1].hosts[0] if apps > 1 else "app0.test"
    return app, f"s=session-value; totp_sidecar={cookie}", host


async def calls(app: SidecarApp, cookie: str, host: str, count: int, unique: bool) -> float:
    """Seconds for ``count`` calls of /auth/nginx (each must allow)."""
    base = [(b"accept", b"text/html"), (b"cookie", cookie.encode()),
            (b"x-original-url", f"http://{host}/reports".encode()),
            (b"x-original-method", b"GET")]
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started = time.perf_counter()
    for n in range(count):
        headers = [*base, (b"x-request-id", str(n).encode())] if unique else base
        scope = {"type": "http", "method": "GET", "path": "/auth/nginx", "headers": headers,
                 "client": ("127.0.0.1", 40000), "scheme": "http", "query_string": b""}
        await app(scope, receive, send)
        assert status == 200, status
    return time.perf_counter() - started


async def main(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = await prepared(Path(tmp), 1)
        three = await prepared(Path(tmp), 3)
        for unique in (False, True):
            times: dict[int, list[float]] = {1: [], 3: []}
            await calls(*one, count // 10, unique)  # warm-up
            await calls(*three, count // 10, unique)
            for _ in range(rounds):
                times[1].append(await calls(*one, count, unique))
                times[3].append(await calls(*three, count, unique))
            rate = {n: count / statistics.median(t) for n, t in times.items()}
            what = "new X-Request-Id each call" if unique else "the same call again (answer cache)"
            print(f"{what}: one app {rate[1]:,.0f}/s, three apps {rate[3]:,.0f}/s, "
                  f"ratio {rate[3] / rate[1]:.2f}")
        for app, _, _ in (one, three):
            await app.parts.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.rounds))
