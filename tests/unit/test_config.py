"""The config: validated whole, every problem named by its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import (ENV_ENCRYPTION_KEYS, ENV_HASH_KEY, ENV_SIGNING_KEYS, load_config,
                            parse_config)
from sidecar.errors import ConfigError

KEY = "s" * 40


def base(tmp_path: Path) -> dict[str, Any]:
    return {"primary": {"introspect": {"url": "http://127.0.0.1:8000/api/me"}},
            "secrets": {"signing_keys": [KEY], "hash_key": KEY, "encryption_keys": [KEY]},
            "storage": {"sqlite": {"path": str(tmp_path / "db.sqlite")}}}


def problems(data: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ or {})
    return info.value.problems


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path), {})
    assert config.cookie.max_age == 12 * 3600
    assert config.totp.digits == 6 and config.totp.period == 30 and config.totp.algorithm == "SHA1"
    assert config.prefix == "/_2fa"
    assert config.default_level == "optional"


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
    example = Path(__file__).parents[2] / "config.example.yaml"
    config = load_config(example, {ENV_SIGNING_KEYS: "x" * 40, ENV_HASH_KEY: "y" * 40,
                                   ENV_ENCRYPTION_KEYS: "z" * 40})
    assert config.rules
