"""Fixtures of the end-to-end tests; the processes themselves are run by ``stacks.py``.

``stack`` is the nginx setup that most modules share (one per module); ``test_journey.py``
runs the same user journey through every proxy of ``stacks.PROXIES``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stacks import CADDY, NGINX, Stack, proxy_binary, running


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return proxy_binary(NGINX)


@pytest.fixture(scope="session")
def caddy_bin() -> str:
    return proxy_binary(CADDY)


@pytest.fixture(scope="module")
def stack(nginx_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nginx + sidecar + demo app, shared by a module's tests (each uses its own demo user)."""
    with running(NGINX, nginx_bin, tmp_path_factory.mktemp("e2e")) as started:
        yield started
