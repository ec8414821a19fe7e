"""``apps``: more apps behind one sidecar, each read like the top level (``sidecar.config.sections``
for the settings it may give), with unique names and no host claimed twice."""

from __future__ import annotations

import dataclasses
from typing import Any

from sidecar.config.model import AppConfig, Config, ResetConfig
from sidecar.config.reader import Reader
from sidecar.config.sections import read_branding, read_primary, read_reset, read_rules
from sidecar.core.apps import DEFAULT_APP
from sidecar.core.policy import Level


def _app(r: Reader, item: dict[str, Any], top: Config) -> AppConfig:
    """One entry of ``apps``: its own keys, and the settings it gives instead of the top level's."""
    r.unknown(item, "")
    name = r.value(item, "apps[].name", "")
    if not name:
        r.problem("name", "is required (the app's name, for --app on the command line)")
    elif name == DEFAULT_APP:
        r.problem("name", f"{DEFAULT_APP!r} is the top-level app's name: choose another")
    hosts = r.value(item, "apps[].hosts", "")
    if not hosts:
        r.problem("hosts", "is required: the host names (or *.domains) this app answers")
    primary = read_primary(r, item, top.server) if "primary" in item else top.primary
    totp = top.totp
    if "totp" in item and r.section(item, "totp").get("issuer") is not None:
        totp = dataclasses.replace(totp, issuer=r.value(item["totp"], "totp.issuer"))
    if "branding" in item:
        branding = read_branding(r, item, totp.issuer)
    else:  # the top level's, named after this app's issuer unless a product name was given
        given = (top_branding if isinstance(top_branding := r.top.get("branding"), dict)
                 else {}).get("product_name")
        named = given.strip() if isinstance(given, str) else ""
        branding = dataclasses.replace(top.branding, product_name=named or totp.issuer)
    rules = read_rules(r, item["rules"]) if "rules" in item else top.rules
    level = Level(r.value(item, "default_level")) if "default_level" in item else top.default_level
    redirects = (r.value(r.section(item, "redirects"), "redirects.allowed_hosts")
                 if "redirects" in item else top.allowed_redirect_hosts)
    # Never the top level's: its gate forwards to the top-level app's own reset page.
    reset = read_reset(r, item) if "password_reset" in item else ResetConfig()
    config = dataclasses.replace(top, primary=primary, totp=totp, branding=branding,
                                 support_contact=branding.support_contact, rules=rules,
                                 default_level=level, allowed_redirect_hosts=redirects,
                                 password_reset=reset, hosts=hosts, apps=())
    return AppConfig(name, hosts, r.value(item, "apps[].users_namespace", "") or name, config)


def read_apps(r: Reader, data: dict[str, Any], top: Config) -> tuple[AppConfig, ...]:
    """``apps``: each entry read like the top level; names unique, no host claimed twice."""
    value = data.get("apps")
    if value is None:
        return ()
    if not isinstance(value, list):
        r.problem("apps", "must be a list of apps (each with name, hosts, ...)")
        return ()
    apps: list[AppConfig] = []
    names: dict[str, str] = {}
    claims = {host: f"hosts ({DEFAULT_APP})" for host in top.hosts}
    for index, item in enumerate(value):
        label = f"apps[{index}]"
        if not isinstance(item, dict):
            r.problem(label, "must be a mapping (name, hosts, ...)")
            continue
        inner = r.within(f"{label}.", "apps[]")
        inner.top = data
        app = _app(inner, item, top)
        if app.name in names:
            r.problem(f"{label}.name", f"{app.name!r} is also the name of {names[app.name]}")
        names.setdefault(app.name, label)
        for host in app.hosts:
            if host in claims:
                r.problem(f"{label}.hosts", f"{host!r} is claimed by both {claims[host]} and "
                          f"{label} ({app.name})")
            claims.setdefault(host, f"{label} ({app.name})")
        apps.append(app)
    return tuple(apps)
