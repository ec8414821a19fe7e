"""Validate a parsed YAML document whole: every problem collected with its key path.

Each key is read as its schema entry says (``sidecar.config.reader``); what one key means for
another (``introspect`` needs a URL, ``paths`` need ``app_url``, a secret must be long) is
checked here, section by section. ``config_warnings`` names what is allowed but likely a
mistake.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.config.apps import read_apps
from sidecar.config.model import (
    ApiConfig,
    CacheConfig,
    Config,
    CookieConfig,
    EmailConfig,
    LanguagesConfig,
    NotifyConfig,
    PostgresConfig,
    RememberConfig,
    ServerConfig,
    SQLiteConfig,
    StorageConfig,
    ThrottleConfig,
    TotpConfig,
    WebhookConfig,
)
from sidecar.config.reader import Reader
from sidecar.config.schema import (
    ENV_POSTGRES_DSN,
    KEYS,
    LANGUAGES,
    MIN_KEY_LENGTH,
    SOURCE_LANGUAGE,
)
from sidecar.config.sections import (
    every_address,
    read_branding,
    read_primary,
    read_reset,
    read_rules,
)
from sidecar.core.policy import Level
from sidecar.errors import ConfigError, Problem

KEY_HINT = "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"


# -- the sections, in the order of the schema (primary, rules, branding: sidecar.config.sections)
def _server(r: Reader, data: dict[str, Any]) -> ServerConfig:
    s = r.section(data, "server")
    return ServerConfig(r.value(s, "server.host"), r.value(s, "server.port"),
                        r.value(s, "server.trusted_proxies"), r.value(s, "server.log_level"))


def _simple(r: Reader, data: dict[str, Any], path: str, kind: type[Any]) -> Any:
    """A section whose keys are, by name, the fields of ``kind``."""
    section = r.section(data, path)
    return kind(**{key.name: r.value(section, key.path) for key in KEYS.values()
                   if key.parent == path})


def _keys(r: Reader, data: dict[str, Any], path: str) -> tuple[str, ...]:
    """A required secret of ``secrets``: strings (or one) of at least MIN_KEY_LENGTH."""
    key = KEYS[path]
    found = r.secret(data, key)
    if found is None:
        return ()
    where, value = found
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        r.problem(where, "must be a string" + (" or a list of strings" if key.many else ""))
        return ()
    for index, item in enumerate(values):
        if len(item) < MIN_KEY_LENGTH:
            label = f"{where}[{index}]" if key.many and isinstance(value, list) else where
            r.problem(label, f"is too short: use at least {MIN_KEY_LENGTH} random characters "
                      + KEY_HINT)
    return tuple(values)


def _optional_secret(r: Reader, data: dict[str, Any], path: str) -> str:
    found = r.secret(data, KEYS[path])
    if found is None:
        return ""
    where, value = found
    if not isinstance(value, str):
        r.problem(where, "must be a string")
        return ""
    return value


def _notify(r: Reader, data: dict[str, Any]) -> NotifyConfig:
    n = r.section(data, "notify")
    webhook = email = None
    if n.get("webhook") is not None:
        w = r.section(n, "notify.webhook")
        url = r.value(w, "notify.webhook.url")
        if not url:
            r.problem("notify.webhook.url", "is required (an http:// or https:// URL)")
        secret = _optional_secret(r, w, "notify.webhook.secret")
        if len(secret) < MIN_KEY_LENGTH:
            r.problem("notify.webhook.secret", f"is required, at least {MIN_KEY_LENGTH} characters"
                      f" (or secret_file, or {KEYS['notify.webhook.secret'].env}): it signs the body")
        webhook = WebhookConfig(url, secret, r.value(w, "notify.webhook.timeout_seconds"),
                                r.value(w, "notify.webhook.retries"))
    if n.get("email") is not None:
        e = r.section(n, "notify.email")
        host, sender = r.value(e, "notify.email.host"), r.value(e, "notify.email.from")
        for name, value in (("host", host), ("from", sender)):
            if not value:
                r.problem(f"notify.email.{name}", "is required")
        email = EmailConfig(host, sender, r.value(e, "notify.email.port"),
                            r.value(e, "notify.email.security"), r.value(e, "notify.email.username"),
                            _optional_secret(r, e, "notify.email.password"),
                            r.value(e, "notify.email.retries"))
    return NotifyConfig(r.value(n, "notify.events"), webhook, email)


def _is_postgres_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("postgres", "postgresql")


def _storage(r: Reader, data: dict[str, Any]) -> StorageConfig:
    """Exactly one of ``storage.sqlite`` and ``storage.postgres`` (or the DSN's env variable)."""
    st = r.section(data, "storage")
    env_dsn = r.environ.get(ENV_POSTGRES_DSN, "").strip()
    postgres = "postgres" in st or bool(env_dsn)
    if "sqlite" in st and postgres:
        also = "" if "postgres" in st else f" (the environment variable {ENV_POSTGRES_DSN} is set)"
        r.problem("storage", f"give exactly one of storage.sqlite and storage.postgres{also}")
        return SQLiteConfig("")
    if not postgres:
        path = r.value(r.section(st, "storage.sqlite"), "storage.sqlite.path")
        if not path:
            r.problem("storage.sqlite.path", "is required (the SQLite database file;"
                      " or storage.postgres.dsn for PostgreSQL)")
        elif path != ":memory:":
            path = str(r.path(path))
        return SQLiteConfig(path)
    pg = r.section(st, "storage.postgres")
    found = r.secret(pg, KEYS["storage.postgres.dsn"])
    pgbouncer = bool(r.value(pg, "storage.postgres.pgbouncer"))
    listen = r.value(pg, "storage.postgres.listen_dsn").strip()
    # The values are never echoed: they may carry a password.
    if listen and not _is_postgres_url(listen):
        r.problem("storage.postgres.listen_dsn", "must be a URL such as "
                  "postgresql://user:password@host:5432/dbname (a direct connection)")
    if found is None:
        return PostgresConfig("")
    where, dsn = found
    if not isinstance(dsn, str) or not _is_postgres_url(dsn.strip()):
        r.problem(where, "must be a URL such as postgresql://user:password@host:5432/dbname")
        return PostgresConfig("")
    return PostgresConfig(dsn.strip(), listen, pgbouncer)


def _languages(r: Reader, data: dict[str, Any]) -> LanguagesConfig:
    lg = r.section(data, "languages")
    enabled = tuple(dict.fromkeys(r.value(lg, "languages.enabled")))
    if not enabled:
        r.problem("languages.enabled", f"must name at least one of {', '.join(LANGUAGES)}")
        enabled = LANGUAGES
    before = len(r.problems)
    default = r.value(lg, "languages.default") if lg.get("default") is not None else ""
    if len(r.problems) > before:
        default = ""  # not a language at all: a problem already
    if default and default not in enabled:
        r.problem("languages.default", f"{default!r} is not in languages.enabled")
    if not default or default not in enabled:
        default = SOURCE_LANGUAGE if SOURCE_LANGUAGE in enabled else enabled[0]
    return LanguagesConfig(default, enabled)


def parse_config(data: Any, environ: dict[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    r = Reader(dict(os.environ) if environ is None else environ, base_dir or Path.cwd())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem("(top level)", "must be a mapping of keys to values")])
    r.unknown(data, "")
    server = _server(r, data)
    primary = read_primary(r, data, server)
    totp: TotpConfig = _simple(r, data, "totp", TotpConfig)
    secrets = r.section(data, "secrets")
    signing_keys = _keys(r, secrets, "secrets.signing_keys")
    hash_keys = _keys(r, secrets, "secrets.hash_key")
    encryption_keys = _keys(r, secrets, "secrets.encryption_keys")
    storage = _storage(r, data)
    branding = read_branding(r, data, totp.issuer)
    config = Config(
        signing_keys=signing_keys,
        hash_key=hash_keys[0] if hash_keys else "",
        encryption_keys=encryption_keys,
        storage=storage,
        server=server,
        primary=primary,
        cookie=_simple(r, data, "cookie", CookieConfig),
        totp=totp,
        throttle=_simple(r, data, "throttle", ThrottleConfig),
        api=_simple(r, data, "api", ApiConfig),
        notify=_notify(r, data),
        remember_device=_simple(r, data, "remember_device", RememberConfig),
        password_reset=read_reset(r, data),
        prefix=r.value(data, "prefix"),
        allowed_redirect_hosts=r.value(r.section(data, "redirects"), "redirects.allowed_hosts"),
        default_level=Level(r.value(data, "default_level")),
        rules=read_rules(r, data.get("rules")),
        support_contact=branding.support_contact,
        branding=branding,
        languages=_languages(r, data),
        cache=_simple(r, data, "cache", CacheConfig),
    )
    config = dataclasses.replace(config, hosts=r.value(data, "hosts"))
    config = dataclasses.replace(config, apps=read_apps(r, data, config))
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _is_loopback_host(hostname: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1."""
    if hostname.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def config_warnings(config: Config) -> list[str]:
    """What is allowed but likely a mistake, one ``key: message`` line each (never a problem)."""
    warnings = []
    proxies = config.server.trusted_proxies
    if config.primary.resolver == "introspect" and (everyone := every_address(proxies)):
        warnings.append(f"server.trusted_proxies: {everyone} trusts every address: any client may send"
                        " X-Forwarded-* headers (host, path, client address) to /auth")
    if config.primary.resolver == "header" and not proxies:
        warnings.append("server.trusted_proxies: is empty: with primary.resolver header no request"
                        " can be believed, so every /auth request is refused")
    for index, app in enumerate(config.every_app):
        primary = app.config.primary
        url = primary.introspect.url
        at = f"apps[{index - 1}]." if index else ""
        if primary.resolver == "introspect" and url and (index == 0 or primary != config.primary):
            parts = urlsplit(url)
            if parts.scheme == "http" and not _is_loopback_host(parts.hostname or ""):
                warnings.append(f"{at}primary.introspect.url: plain http to a host that is not "
                                "loopback: the users' session cookies cross the network "
                                "unencrypted; use https")
    return warnings
