"""Adversarial review, round 2, through the shipped proxy configs (real Caddy).

Threat model (CONTRACT.md): the attacker knows alice's app password but not her phone; alice
has 2FA on; the attacker may own bob's enrolled account. Each test here fails against the
reviewed commit and passes once the seam is closed.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.stacks import Stack
from tests.e2e.test_caddy import fakes  # noqa: F401 - a fixture

IDENTITY = ("remote-user", "remote-email", "remote-name", "remote-groups")


def test_caddy_drops_every_underscore_spelling_of_the_identity_headers(
        fakes: tuple[Stack, list[dict[str, Any]]]) -> None:  # noqa: F811
    """MEDIUM. deploy/caddy/Caddyfile strips a client's ``Remote_User`` (its README: CGI/WSGI
    apps read ``Remote_User`` and ``Remote-User`` as the same ``HTTP_REMOTE_USER``; Caddy,
    unlike nginx, passes headers with underscores) but not ``Remote_Email``, ``Remote_Name``
    or ``Remote_Groups``. The sidecar sets those only where known, so for a user without
    groups (or e-mail) the app's only ``HTTP_REMOTE_GROUPS`` is the client's:
    ``curl -H 'Remote_Groups: admins'`` signed in as bob (Django under ASGI, CGI, PHP, Rack
    all fold it) gives bob the admins group; where the sidecar does send one, the app gets
    both and joins them (``staff,admins``).

    Safe: no header that folds (case, ``_`` = ``-``) to an identity header reaches the app
    except the sidecar's own (the stub sidecar here answers ``Remote-User: alice`` only)."""
    stack, seen = fakes
    spoof = {"Remote_Email": "alice@example.com", "Remote_Name": "Alice",
             "Remote_Groups": "admins", "REMOTE_GROUPS": "admins"}
    with httpx.Client(base_url=stack.base, follow_redirects=False, timeout=10.0) as client:
        r = client.get("/user", headers=spoof)
        assert r.status_code == 200, r.text
    app = [s for s in seen if s["role"] == "app"][-1]
    folded = sorted((k.replace("_", "-"), v) for k, v in app["headers"]
                    if k.replace("_", "-") in IDENTITY)
    assert folded == [("remote-user", "alice")], folded
