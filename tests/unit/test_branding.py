"""The branding and languages keys of the config: defaults, checks, problems named by key."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from sidecar.branding import MAX_LOGO_BYTES, image_source, support_link
from sidecar.config import LANGUAGES, parse_config
from sidecar.errors import ConfigError
from sidecar.web.headers import content_security_policy

KEY = "s" * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'


def base(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"primary": {"introspect": {"url": "http://127.0.0.1:8000/api/me"}},
            "secrets": {"signing_keys": [KEY], "hash_key": KEY, "encryption_keys": [KEY]},
            "storage": {"sqlite": {"path": str(tmp_path / "db.sqlite")}},
            "totp": {"issuer": "Acme"}} | extra


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {}, data.get("_base"))
    return info.value.lines


def test_defaults(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path), {})
    assert config.branding.product_name == "Acme"  # totp.issuer
    assert config.branding.logo == "" and config.branding.accent_color == ""
    assert config.support_contact == config.branding.support_contact == ""
    assert config.languages.default == "en" and config.languages.enabled == LANGUAGES


def test_branding_keys(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path, branding={
        "product_name": "Acme Cloud", "logo_url": "https://cdn.example.com/a/logo.png",
        "accent_color": "#0B5CAD", "support_contact": "help@example.com"}), {})
    assert config.branding.product_name == "Acme Cloud"
    assert config.branding.logo == "https://cdn.example.com/a/logo.png"
    assert config.branding.accent_color == "#0b5cad"
    assert config.support_contact == "help@example.com"


def test_the_older_support_contact_key_still_works(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path, support_contact="it@example.com"), {})
    assert config.support_contact == config.branding.support_contact == "it@example.com"
    same = base(tmp_path, support_contact="it@example.com",
                branding={"support_contact": "it@example.com"})
    assert parse_config(same, {}).support_contact == "it@example.com"
    found = problems(base(tmp_path, support_contact="a@example.com",
                          branding={"support_contact": "b@example.com"}))
    assert found == ["support_contact: is given twice, differently: keep only "
                     "branding.support_contact"]


@pytest.mark.parametrize("url", ["http://cdn.example.com/logo.png", "//cdn.example.com/x.png",
                                 "javascript:alert(1)", "logo.png", "https://a b/x.png",
                                 "https://cdn.example.com/x.png' ; script-src *",
                                 "https://user:pw@cdn.example.com/x.png", "data:image/png,xx"])
def test_bad_logo_urls_are_named(tmp_path: Path, url: str) -> None:
    found = problems(base(tmp_path, branding={"logo_url": url}))
    assert len(found) == 1 and found[0].startswith("branding.logo_url: "), found


def test_low_contrast_accent_is_refused_by_key(tmp_path: Path) -> None:
    found = problems(base(tmp_path, branding={"accent_color": "#ffcc00"}))
    assert len(found) == 1 and found[0].startswith("branding.accent_color: contrast"), found
    assert "4.5:1" in found[0] and "'#ffcc00'" in found[0]
    found = problems(base(tmp_path, branding={"accent_color": "red"}))
    assert found[0].startswith("branding.accent_color: must be a colour written #rrggbb")


def test_logo_file_is_inlined(tmp_path: Path) -> None:
    (tmp_path / "logo.svg").write_bytes(SVG)
    (tmp_path / "logo.png").write_bytes(PNG)
    data = base(tmp_path, branding={"logo_file": "logo.svg"})
    config = parse_config(data, {}, tmp_path)  # relative to the config file's folder
    assert config.branding.logo == "data:image/svg+xml;base64," + base64.b64encode(SVG).decode()
    data["branding"] = {"logo_file": str(tmp_path / "logo.png")}
    assert parse_config(data, {}).branding.logo.startswith("data:image/png;base64,")


@pytest.mark.parametrize(("content", "name", "why"), [
    (b"GIF89a....", "logo.gif", "must be a PNG or an SVG file"),
    (b"<html></html>", "logo.svg", "must be a PNG or an SVG file"),
    (PNG + b"\x00" * MAX_LOGO_BYTES, "logo.png", "at most 65536"),
    (None, "missing.png", "cannot read"),
])
def test_bad_logo_files_are_named(tmp_path: Path, content: bytes | None, name: str,
                                  why: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    found = problems(base(tmp_path, branding={"logo_file": str(tmp_path / name)}))
    assert len(found) == 1 and found[0].startswith("branding.logo_file: ") and why in found[0]


def test_logo_url_and_file_are_exclusive(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(PNG)
    found = problems(base(tmp_path, branding={"logo_url": "/logo.png",
                                              "logo_file": str(tmp_path / "logo.png")}))
    assert found == ["branding.logo_file: give only one of branding.logo_url and "
                     "branding.logo_file"]


def test_unknown_branding_key(tmp_path: Path) -> None:
    found = problems(base(tmp_path, branding={"colour": "#000000"}))
    assert len(found) == 1 and found[0].startswith("branding.colour: unknown key")


def test_languages(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path, languages={"enabled": ["de", "fr"]}), {})
    assert config.languages.enabled == ("de", "fr") and config.languages.default == "de"
    config = parse_config(base(tmp_path, languages={"enabled": ["en", "ja"], "default": "ja"}), {})
    assert config.languages.default == "ja"
    assert problems(base(tmp_path, languages={"default": "it"}))[0].startswith(
        "languages.default: must be one of en, de, fr, es, ja")
    assert problems(base(tmp_path, languages={"enabled": ["en", "it"]})) == [
        "languages.enabled: 'it' is not one of en, de, fr, es, ja"]
    assert problems(base(tmp_path, languages={"enabled": ["de"], "default": "fr"})) == [
        "languages.default: 'fr' is not in languages.enabled"]
    assert problems(base(tmp_path, languages={"enabled": []}))[0].startswith("languages.enabled:")


def test_csp_allows_only_the_logos_origin() -> None:
    plain = content_security_policy(())
    assert "img-src 'self' data:;" in plain
    external = content_security_policy((), "https://cdn.example.com:8443/brand/logo.png?v=2")
    assert "img-src 'self' data: https://cdn.example.com:8443;" in external
    assert content_security_policy((), "/static/logo.svg") == plain
    assert image_source("https://CDN.example.com/x.png") == "https://cdn.example.com"


@pytest.mark.parametrize(("contact", "href"), [
    ("it-help@example.com", "mailto:it-help@example.com"),
    ("https://help.example.com/2fa", "https://help.example.com/2fa"),
    ("Call the IT desk on 1234", ""),
    ("javascript:alert(1)", ""),
    ("a@b", ""),
])
def test_support_link(contact: str, href: str) -> None:
    assert support_link(contact) == href
