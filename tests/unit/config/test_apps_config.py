"""``apps``: each entry read like the top level, every problem named ``apps[N].key``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import parse_config
from sidecar.config.schema import APP_SETTINGS, KEYS, names_under
from sidecar.core.policy import Level
from tests.unit.config.test_config import base, problems


def with_apps(tmp_path: Path, *apps: Any, **top: Any) -> dict[str, Any]:
    return {**base(tmp_path), **top, "apps": list(apps)}


def wiki(**more: Any) -> dict[str, Any]:
    return {"name": "wiki", "hosts": ["wiki.example.com"],
            "primary": {"introspect": {"url": "http://127.0.0.1:8100/me"}}, **more}


def test_without_apps_the_top_level_is_the_only_app(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path), {})
    (app,) = config.every_app
    assert (app.name, app.hosts, app.users_namespace, app.config) == ("default", (), "default",
                                                                      config)


def test_an_app_gives_its_own_settings_and_takes_the_rest_from_the_top(tmp_path: Path) -> None:
    data = with_apps(tmp_path, wiki(totp={"issuer": "Wiki"}, default_level="required",
                                    rules=[{"path": "/admin", "level": "deny"}]),
                     totp={"issuer": "Top", "digits": 8}, redirects={"allowed_hosts": [".ex.org"]},
                     rules=[{"path": "/x", "level": "bypass"}], hosts=["Top.Example.com."])
    config = parse_config(data, {})
    top, app = config.every_app
    assert top.hosts == ("top.example.com",)
    assert (app.name, app.hosts, app.users_namespace) == ("wiki", ("wiki.example.com",), "wiki")
    assert app.config.primary.introspect.url == "http://127.0.0.1:8100/me"
    assert app.config.totp.issuer == "Wiki" and app.config.totp.digits == 8
    assert app.config.branding.product_name == "Wiki"  # named after its issuer
    assert app.config.default_level is Level.REQUIRED and top.config.default_level is Level.OPTIONAL
    assert [r.paths for r in app.config.rules] == [("/admin",)]
    assert app.config.allowed_redirect_hosts == (".ex.org",)  # not given: the top level's
    assert app.config.signing_keys == config.signing_keys and app.config.apps == ()
    assert config.app("wiki") is app
    with pytest.raises(KeyError):
        config.app("blog")


def test_the_namespace_defaults_to_the_name_and_may_be_shared(tmp_path: Path) -> None:
    blog = {**wiki(), "name": "blog", "hosts": ["*.blog.example.com"], "users_namespace": "default"}
    config = parse_config(with_apps(tmp_path, wiki(), blog), {})
    assert [app.users_namespace for app in config.every_app] == ["default", "wiki", "default"]


def test_problems_are_named_with_the_apps_index(tmp_path: Path) -> None:
    lines = problems(with_apps(tmp_path, wiki(), {
        "name": "blog", "hosts": ["blog.example.com"],
        "primary": {"whoami_url": "http://x", "introspect": {"url": "nope"}},
        "totp": {"digits": 8}, "rules": [{"levl": "deny"}], "colour": 1,
        "users_namespace": "a b"}))
    text = "\n".join(lines)
    assert "apps[1].primary.whoami_url: unknown key (did you mean 'login_url'?" in text
    assert "apps[1].primary.introspect.url: must be an absolute http:// or https:// URL" in text
    assert "apps[1].totp.digits: unknown key (known keys: issuer)" in text
    assert "apps[1].rules[0].levl: unknown key (did you mean 'level'?" in text
    assert "apps[1].colour: unknown key" in text
    assert "apps[1].users_namespace: 'a b' must be letters" in text
    assert not any(line.startswith("apps[0]") for line in lines)


def test_names_and_hosts(tmp_path: Path) -> None:
    text = "\n".join(problems(with_apps(
        tmp_path, wiki(), {**wiki(), "hosts": ["WIKI.example.com.", "x.test:443"]},
        {"name": "default", "hosts": ["top.test"]}, {"name": "nohosts"}, "not a mapping",
        hosts=["top.test"])))
    assert "apps[1].name: 'wiki' is also the name of apps[0]" in text
    assert "apps[1].hosts: 'x.test:443' is not a host name or *.domain (no port, no path)" in text
    assert "apps[2].name: 'default' is the top-level app's name" in text
    assert "apps[2].hosts: 'top.test' is claimed by both hosts (default) and apps[2]" in text
    assert "apps[3].hosts: is required" in text
    assert "apps[4]: must be a mapping" in text
    text = "\n".join(problems(with_apps(tmp_path, wiki(), {**wiki(), "name": "blog"})))
    assert "apps[1].hosts: 'wiki.example.com' is claimed by both apps[0] (wiki) and apps[1] (blog)" \
        in text
    assert "apps: must be a list" in "\n".join(problems({**base(tmp_path), "apps": {"x": 1}}))


def test_an_app_may_set_only_what_the_schema_says(tmp_path: Path) -> None:
    assert names_under("apps[]") == {"name", "hosts", "users_namespace", "primary", "totp",
                                     "branding", "rules", "default_level", "redirects",
                                     "password_reset"}
    assert names_under("apps[].totp") == {"issuer"}
    assert names_under("apps[].primary.introspect") == names_under("primary.introspect")
    for setting in APP_SETTINGS:
        assert setting in KEYS or any(key.startswith(f"{setting}.") or key.startswith(
            f"{setting}[]") for key in KEYS)
    lines = problems(with_apps(tmp_path, wiki(storage={}, secrets={}, cookie={})))
    assert {line.split(":")[0] for line in lines} == {"apps[0].storage", "apps[0].secrets",
                                                      "apps[0].cookie"}


def test_an_app_has_its_own_password_reset_gate_or_none(tmp_path: Path) -> None:
    reset = {"paths": ["/password/reset"], "app_url": "http://127.0.0.1:8000"}
    config = parse_config(with_apps(tmp_path, wiki(password_reset={**reset,
                                                                   "app_url": "http://127.0.0.1:8100"}),
                                    {**wiki(), "name": "blog", "hosts": ["blog.example.com"]},
                                    password_reset=reset), {})
    top, wiki_app, blog = config.every_app
    assert top.config.password_reset.app_url == "http://127.0.0.1:8000"
    assert wiki_app.config.password_reset.app_url == "http://127.0.0.1:8100"
    assert blog.config.password_reset.paths == ()  # never the top level's (its app's page)
    text = "\n".join(problems(with_apps(tmp_path, wiki(password_reset={"paths": ["/reset?x"]}))))
    assert "apps[0].password_reset.paths: '/reset?x' must be a plain path" in text
    assert "apps[0].password_reset.app_url: is required with password_reset.paths" in text
