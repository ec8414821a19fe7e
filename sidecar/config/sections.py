"""The sections an entry of ``apps`` may give as well as the top level: ``primary``, ``rules``
and ``branding``, each read by the schema with every problem named (``apps[1].primary.…``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sidecar.branding import accent_problem, logo_data_uri, logo_url_problem
from sidecar.config.model import (
    BrandingConfig,
    HeaderResolverConfig,
    IntrospectConfig,
    PrimaryConfig,
    ResetConfig,
    ServerConfig,
)
from sidecar.config.reader import Reader
from sidecar.config.schema import HTTP_METHODS, KEYS, LEVELS
from sidecar.config.values import Network
from sidecar.core.policy import Level, Rule


def every_address(networks: tuple[Network, ...]) -> str:
    """The first network of prefix length 0 (``0.0.0.0/0``, ``::/0``), or ""."""
    return next((str(network) for network in networks if network.prefixlen == 0), "")


def read_primary(r: Reader, data: dict[str, Any], server: ServerConfig) -> PrimaryConfig:
    p = r.section(data, "primary")
    h = r.section(p, "primary.header")
    i = r.section(p, "primary.introspect")
    resolver = r.value(p, "primary.resolver")
    values = {key.name: r.value(i, key.path) for key in KEYS.values()
              if key.parent == "primary.introspect"}
    values["timeout_seconds"] = float(values["timeout_seconds"])
    introspect = IntrospectConfig(**values)
    if resolver == "introspect" and not introspect.url:
        r.problem("primary.introspect.url", "is required when primary.resolver is introspect")
    if "@" in urlsplit(introspect.url).netloc:
        r.problem("primary.introspect.url", "must not hold user information (user:password@): "
                  "the app must be sent the request's own credentials, never these")
    header = HeaderResolverConfig(*(r.value(h, f"primary.header.{name}")
                                    for name in ("user", "email", "name", "groups")))
    if resolver == "header" and (everyone := every_address(server.trusted_proxies)):
        r.problem("server.trusted_proxies", f"{everyone} trusts every address: with primary.resolver"
                  f" header any client could send {header.user}: <someone> and be that user;"
                  " name only your proxies' addresses")
    return PrimaryConfig(resolver, r.value(p, "primary.session_cookies"),
                         r.value(p, "primary.login_url"), r.value(p, "primary.logout_url"),
                         header, introspect)


def read_rule(r: Reader, item: dict[str, Any], at: str) -> Rule:
    r.unknown(item, "rules[]", at)

    def read(name: str) -> Any:
        return r.value(item, f"rules[].{name}", at)

    level = read("level")
    if "level" not in item:
        r.problem(f"{at}level", f"is required (one of {', '.join(LEVELS)})")
    methods = read("methods")
    for method in methods:
        if method.upper() not in HTTP_METHODS:
            r.problem(f"{at}methods", f"{method!r} is not an HTTP method")
    step_up = read("step_up")
    if step_up and level in ("bypass", "deny"):
        r.problem(f"{at}step_up", f"has no meaning with level {level}")
    return Rule(level=Level(level) if level else Level.DENY,  # a missing level is a problem already
                hosts=tuple(h.lower().rstrip(".") for h in read("host") + read("hosts")),
                paths=read("path") + read("paths"), path_regex=read("path_regex"),
                methods=frozenset(m.upper() for m in methods), users=frozenset(read("users")),
                groups=frozenset(read("groups")), step_up=step_up)


def read_rules(r: Reader, value: Any) -> tuple[Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.problem("rules", "must be a list of rules")
        return ()
    rules = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            r.problem(f"rules[{index}]", "must be a mapping")
            continue
        rules.append(read_rule(r, item, f"rules[{index}]."))
    return tuple(rules)


def read_branding(r: Reader, data: dict[str, Any], issuer: str) -> BrandingConfig:
    """``branding.*``; the top-level ``support_contact`` of older configs still counts."""
    b = r.section(data, "branding")
    name = r.value(b, "branding.product_name").strip()
    logo_url = r.value(b, "branding.logo_url")
    if logo_url and (why := logo_url_problem(logo_url)):
        r.problem("branding.logo_url", why)
        logo_url = ""
    logo_data = ""
    if b.get("logo_file") is not None:
        if "logo_url" in b:
            r.problem("branding.logo_file", "give only one of branding.logo_url and "
                      "branding.logo_file")
        elif not isinstance(b["logo_file"], str):
            r.problem("branding.logo_file", "must be a file path (a PNG or SVG file)")
        else:
            try:
                logo_data = logo_data_uri(r.path(b["logo_file"]))
            except ValueError as exc:
                r.problem("branding.logo_file", str(exc))
    accent = r.value(b, "branding.accent_color")
    if accent and (why := accent_problem(accent)):
        r.problem("branding.accent_color", f"{why} (got {accent!r})")
        accent = ""
    contact = r.value(b, "branding.support_contact")
    older = r.value(data, "support_contact")
    if contact and older and contact != older:
        r.problem("support_contact", "is given twice, differently: keep only "
                  "branding.support_contact")
    return BrandingConfig(name or issuer, logo_url, logo_data, accent.lower(), contact or older)


def read_reset(r: Reader, data: dict[str, Any]) -> ResetConfig:
    """``password_reset`` (of the top level, or of one entry of ``apps``)."""
    section = r.section(data, "password_reset")
    reset = ResetConfig(**{key.name: r.value(section, key.path) for key in KEYS.values()
                           if key.parent == "password_reset"})
    for path in reset.paths:
        if not re.fullmatch(r"(/[A-Za-z0-9_.~-]+)+/?", path):
            r.problem("password_reset.paths", f"{path!r} must be a plain path such as /password/reset")
    if reset.paths and not reset.app_url:
        r.problem("password_reset.app_url", "is required with password_reset.paths (where "
                  "the sidecar forwards the reset page once the code was entered)")
    return reset
