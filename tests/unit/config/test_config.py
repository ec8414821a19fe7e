"""The config: validated whole, every problem named by its key path."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import (
    ENV_ENCRYPTION_KEYS,
    ENV_HASH_KEY,
    ENV_SIGNING_KEYS,
    LOOPBACK_PROXIES,
    NOTICE_EVENTS,
    ServerConfig,
    config_warnings,
    load_config,
    parse_config,
)
from sidecar.core.policy import Level
from sidecar.errors import ConfigError

KEY = "s" * 40


def base(tmp_path: Path) -> dict[str, Any]:
    return {"primary": {"introspect": {"url": "http://127.0.0.1:8000/api/me"}},
            "secrets": {"signing_keys": [KEY], "hash_key": KEY, "encryption_keys": [KEY]},
            "storage": {"sqlite": {"path": str(tmp_path / "db.sqlite")}}}


def problems(data: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ or {})
    return info.value.lines


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path), {})
    assert config.cookie.max_age == 12 * 3600
    assert config.totp.digits == 6 and config.totp.period == 30 and config.totp.algorithm == "SHA1"
    assert config.prefix == "/_2fa"
    assert config.default_level is Level.OPTIONAL


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["cookie"] = {"max_age": "forever", "nmae": "x"}
    data["totp"] = {"digits": 5}
    data["rules"] = [{"path": "/x", "level": "sometimes"}, {"path_regex": "(", "level": "bypass"}]
    data["colour"] = "blue"
    found = problems(data)
    joined = "\n".join(found)
    for key in ("cookie.max_age", "cookie.nmae", "totp.digits", "rules[0].level",
                "rules[1].path_regex", "colour"):
        assert key in joined, joined
    assert len(found) == 6


def test_secrets_are_required_and_long(tmp_path: Path) -> None:
    data = base(tmp_path)
    del data["secrets"]
    joined = "\n".join(problems(data))
    assert "secrets.signing_keys" in joined and "secrets.hash_key" in joined
    assert "secrets.encryption_keys" in joined
    data["secrets"] = {"signing_keys": ["short"], "hash_key": KEY, "encryption_keys": [KEY]}
    assert any("secrets.signing_keys" in p and "too short" in p for p in problems(data))


def test_secrets_from_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(f"{'a' * 40}\n{'b' * 40}\n")
    data = base(tmp_path)
    data["secrets"] = {"signing_keys_file": str(tmp_path / "keys"), "encryption_keys": [KEY]}
    config = parse_config(data, {ENV_HASH_KEY: "c" * 40})
    assert config.signing_keys == ("a" * 40, "b" * 40)
    assert config.hash_key == "c" * 40
    data["secrets"] = {"encryption_keys": [KEY]}
    config = parse_config(data, {ENV_SIGNING_KEYS: f"{'d' * 40},{'e' * 40}", ENV_HASH_KEY: "f" * 40})
    assert config.signing_keys == ("d" * 40, "e" * 40)


def test_secret_given_twice_is_a_problem(tmp_path: Path) -> None:
    data = base(tmp_path)
    assert any("given more than once" in p for p in problems(data, {ENV_HASH_KEY: "z" * 40}))


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["secrets"] = {"signing_keys_file": "/nonexistent/keys", "hash_key": KEY,
                       "encryption_keys": [KEY]}
    assert any(p.startswith("secrets.signing_keys_file") for p in problems(data))


def test_introspect_needs_url(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["primary"] = {"resolver": "introspect"}
    assert any(p.startswith("primary.introspect.url") for p in problems(data))
    data["primary"] = {"resolver": "header"}
    assert parse_config(data, {}).primary.resolver == "header"


def test_trusted_proxies_are_networks(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["server"] = {"trusted_proxies": ["10.0.0.0/8", "nonsense"]}
    assert any(p.startswith("server.trusted_proxies") for p in problems(data))


def test_durations(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["cookie"] = {"max_age": "2h", "idle_timeout": "15m"}
    config = parse_config(data, {})
    assert (config.cookie.max_age, config.cookie.idle_timeout) == (7200, 900)


def test_yaml_errors_and_non_mappings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: [unclosed\n")
    with pytest.raises(ConfigError):
        load_config(bad)
    assert problems(["a", "list"])


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[3] / "config.example.yaml"
    config = load_config(example, {ENV_SIGNING_KEYS: "x" * 40, ENV_HASH_KEY: "y" * 40,
                                   ENV_ENCRYPTION_KEYS: "z" * 40})
    assert config.rules
    # The example says it shows every default: a copy of it loses no notice (key_added, ...).
    assert config.notify.events == NOTICE_EVENTS


def test_trusted_proxies_default_is_loopback_everywhere(tmp_path: Path) -> None:
    loopback = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert ServerConfig().trusted_proxies == LOOPBACK_PROXIES == loopback
    assert parse_config(base(tmp_path), {}).server.trusted_proxies == loopback


@pytest.mark.parametrize("everyone", [["0.0.0.0/0"], ["::/0"], ["10.0.0.0/8", "0.0.0.0/0"], "::/0",
                                      ["0.0.0.0/0", "::/0"], ["1.2.3.4/0"]])
def test_trusting_everyone_with_the_header_resolver_is_a_problem(tmp_path: Path,
                                                                 everyone: list[str] | str) -> None:
    data = base(tmp_path)
    data["primary"] = {"resolver": "header", "header": {"user": "X-User"}}
    data["server"] = {"trusted_proxies": everyone}
    found = problems(data)
    assert len(found) == 1 and found[0].startswith("server.trusted_proxies:"), found
    assert "X-User" in found[0] and "/0" in found[0]


@pytest.mark.parametrize("proxies", [["10.0.0.0/8"], ["0.0.0.0/1", "128.0.0.0/1"], ["::/1"]])
def test_narrower_networks_with_the_header_resolver_are_fine(tmp_path: Path, proxies: list[str]) -> None:
    data = base(tmp_path)
    data["primary"] = {"resolver": "header"}
    data["server"] = {"trusted_proxies": proxies}
    assert config_warnings(parse_config(data, {})) == []


def warnings_for(tmp_path: Path, server: dict[str, Any] | None = None,
                 primary: dict[str, Any] | None = None) -> list[str]:
    data = base(tmp_path)
    if server is not None:
        data["server"] = server
    if primary is not None:
        data["primary"] = primary
    return config_warnings(parse_config(data, {}))


def introspect(url: str) -> dict[str, Any]:
    return {"resolver": "introspect", "introspect": {"url": url}}


@pytest.mark.parametrize(("server", "primary", "keys"), [
    (None, None, []),  # loopback proxies, http to 127.0.0.1
    ({"trusted_proxies": ["0.0.0.0/0"]}, None, ["server.trusted_proxies"]),
    ({"trusted_proxies": ["::/0", "10.0.0.0/8"]}, None, ["server.trusted_proxies"]),
    ({"trusted_proxies": []}, {"resolver": "header"}, ["server.trusted_proxies"]),
    ({"trusted_proxies": []}, None, []),  # introspect needs no proxy to name the user
    (None, {"resolver": "header"}, []),
    (None, introspect("http://app.internal:8000/api/me"), ["primary.introspect.url"]),
    (None, introspect("http://10.0.0.5/api/me"), ["primary.introspect.url"]),
    (None, introspect("http://[2001:db8::1]/me"), ["primary.introspect.url"]),
    (None, introspect("http://128.0.0.1/me"), ["primary.introspect.url"]),
    (None, introspect("http://localhost.evil.test/me"), ["primary.introspect.url"]),
    (None, introspect("https://app.internal/api/me"), []),
    (None, introspect("http://localhost:8000/api/me"), []),
    (None, introspect("http://LocalHost/me"), []),
    (None, introspect("http://127.8.9.10/me"), []),
    (None, introspect("http://[::1]:8000/me"), []),
    ({"trusted_proxies": ["0.0.0.0/0"]}, introspect("http://app.internal/me"),
     ["server.trusted_proxies", "primary.introspect.url"]),
])
def test_config_warnings(tmp_path: Path, server: dict[str, Any] | None, primary: dict[str, Any] | None,
                         keys: list[str]) -> None:
    found = warnings_for(tmp_path, server, primary)
    assert [w.split(":", 1)[0] for w in found] == keys, found
    assert all(": " in w for w in found)


@pytest.mark.parametrize(("entries", "expected"), [
    (["Partner.Test", ".Example.COM", "https://X.corp.test:8443", "http://legacy.test:80"],
     ("partner.test", ".example.com", "https://x.corp.test:8443", "http://legacy.test")),
    ("partner.test", ("partner.test",)),
    ([], ()),
])
def test_redirect_hosts_are_canonical(tmp_path: Path, entries: list[str] | str,
                                      expected: tuple[str, ...]) -> None:
    data = base(tmp_path)
    data["redirects"] = {"allowed_hosts": entries}
    assert parse_config(data, {}).allowed_redirect_hosts == expected


@pytest.mark.parametrize("entry", ["x.test:8443", "https://x.test/path", "ftp://x.test", "a b",
                                   "https://u@x.test", "*.example.com", "évil.test", "https://x.test:0"])
def test_bad_redirect_host_is_a_problem(tmp_path: Path, entry: str) -> None:
    data = base(tmp_path)
    data["redirects"] = {"allowed_hosts": ["partner.test", entry]}
    found = problems(data)
    assert len(found) == 1 and found[0].startswith("redirects.allowed_hosts:"), found


def test_rule_hosts_lose_their_trailing_dot(tmp_path: Path) -> None:
    data = base(tmp_path)
    data["rules"] = [{"host": ["App.Test.", "*.Admin.Test."], "level": "deny"}]
    assert parse_config(data, {}).rules[0].hosts == ("app.test", "*.admin.test")
