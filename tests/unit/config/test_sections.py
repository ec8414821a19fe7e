"""Problems that span a section: notices, the password-reset gate, rules (each named by key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.errors import ConfigError
from tests.conftest import make_config


def test_notify_config_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, notify={"events": ["enabled", "birthday"],
                                      "webhook": {"url": "ftp://x", "secret": "short"},
                                      "email": {"port": 25}})
    joined = "\n".join(info.value.lines)
    for key in ("notify.events", "notify.webhook.url", "notify.webhook.secret",
                "notify.email.host", "notify.email.from"):
        assert key in joined


def test_reset_config_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, password_reset={"paths": ["not a path"]})
    joined = "\n".join(info.value.lines)
    assert "password_reset.paths" in joined and "password_reset.app_url" in joined


def test_the_who_am_i_url_holds_no_user_information(tmp_path: Path) -> None:
    """Sent as Authorization by the HTTP client: the app would see this account, not the request's."""
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, primary={"resolver": "introspect", "introspect": {
            "url": "http://svc:secret@127.0.0.1:8100/me"}})
    assert any(p.key == "primary.introspect.url" and "user information" in p.message
               for p in info.value.problems)


def test_step_up_must_be_a_real_duration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, rules=[{"path": "/x", "level": "bypass", "step_up": "5m"},
                                     {"path": "/y", "level": "optional", "step_up": "soon"}])
    assert any(p.key == "rules[0].step_up" for p in info.value.problems)
    assert any(p.key == "rules[1].step_up" for p in info.value.problems)
