"""One typed configuration object, loaded from YAML and validated whole.

Every problem is collected with its key path (``cookie.max_age: ...``) so that an operator
sees all of them at once; unknown keys are problems too, since a typo must never be ignored.
Secrets may be written inline, read from a ``*_file`` key, or taken from an environment variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from sidecar.branding import accent_problem, logo_data_uri, logo_url_problem
from sidecar.core.forwarded import redirect_entry
from sidecar.core.policy import Level, Rule
from sidecar.errors import ConfigError, Problem

T = TypeVar("T")

#: Every language the sidecar has a catalogue for (``sidecar/locale``); English is the source.
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "ja")
SOURCE_LANGUAGE = "en"

LEVELS = tuple(level.value for level in Level)
MIN_KEY_LENGTH = 32
ENV_SIGNING_KEYS = "TOTP_SIDECAR_SIGNING_KEYS"
ENV_HASH_KEY = "TOTP_SIDECAR_HASH_KEY"
ENV_ENCRYPTION_KEYS = "TOTP_SIDECAR_ENCRYPTION_KEYS"
ENV_WEBHOOK_SECRET = "TOTP_SIDECAR_WEBHOOK_SECRET"
ENV_SMTP_PASSWORD = "TOTP_SIDECAR_SMTP_PASSWORD"
ENV_POSTGRES_DSN = "TOTP_SIDECAR_POSTGRES_DSN"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
NONE: tuple[str, ...] = ()
_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: server.trusted_proxies when the config names none: loopback only.
LOOPBACK_PROXIES: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),
                                         ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9091
    trusted_proxies: tuple[Network, ...] = LOOPBACK_PROXIES
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class HeaderResolverConfig:
    user: str = "Remote-User"
    email: str = "Remote-Email"
    name: str = "Remote-Name"
    groups: str = "Remote-Groups"


@dataclass(frozen=True, slots=True)
class IntrospectConfig:
    url: str = ""
    user_key: str = "user"
    email_key: str = "email"
    name_key: str = "name"
    groups_key: str = "groups"
    cache_seconds: int = 5
    timeout_seconds: float = 3.0


@dataclass(frozen=True, slots=True)
class PrimaryConfig:
    resolver: str = "introspect"
    session_cookies: tuple[str, ...] = ()
    header: HeaderResolverConfig = field(default_factory=HeaderResolverConfig)
    introspect: IntrospectConfig = field(default_factory=IntrospectConfig)


@dataclass(frozen=True, slots=True)
class CookieConfig:
    name: str = "totp_sidecar"
    max_age: int = 12 * 3600
    idle_timeout: int = 0
    secure: str = "auto"


@dataclass(frozen=True, slots=True)
class TotpConfig:
    issuer: str = "totp-sidecar"
    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    skew: int = 1
    enrollment_timeout: int = 600


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    max_failures: int = 5
    window: int = 300
    lockout: int = 900
    max_failures_per_client: int = 20


NOTICE_EVENTS: tuple[str, ...] = ("enabled", "disabled", "recovery_code_used", "codes_regenerated", "locked",
                 "admin_reset")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str = field(repr=False, default="")
    timeout_seconds: int = 5
    retries: int = 5


@dataclass(frozen=True, slots=True)
class EmailConfig:
    host: str
    sender: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str = ""
    password: str = field(repr=False, default="")
    retries: int = 3


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Notices to the user (e-mail) and to the operator's systems (webhook) on 2FA changes."""

    events: tuple[str, ...] = NOTICE_EVENTS
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None


@dataclass(frozen=True, slots=True)
class ResetConfig:
    """The password-reset gate: the app's reset path(s) need a code for that account first."""

    paths: tuple[str, ...] = ()
    account_field: str = "email"
    app_url: str = ""
    always_ask: bool = False
    grant_seconds: int = 600


@dataclass(frozen=True, slots=True)
class RememberConfig:
    """"Remember this device": off unless enabled; a device then vouches for max_days."""

    enabled: bool = False
    max_days: int = 30
    cookie_name: str = "totp_sidecar_device"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """API clients that log in with a password (``Authorization: Basic``)."""

    otp_header: str = "X-OTP"
    burst_seconds: int = 30  # a verified code serves further calls with the same credential this long
    bearer: str = "pass"  # pass | require_otp


@dataclass(frozen=True, slots=True)
class BrandingConfig:
    """How the pages look: name, logo, accent colour, who to ask for help."""

    product_name: str = ""  # "" = totp.issuer (parse_config fills it in)
    logo_url: str = ""  # an https:// URL (allowed in the CSP img-src) or a path on the app host
    logo_data: str = field(default="", repr=False)  # branding.logo_file as a data: URI
    accent_color: str = ""  # #rrggbb, checked for contrast; "" = the stylesheet's blue
    support_contact: str = ""  # also the older top-level support_contact

    @property
    def logo(self) -> str:
        return self.logo_url or self.logo_data


@dataclass(frozen=True, slots=True)
class LanguagesConfig:
    """The pages' languages: chosen per request from Accept-Language among ``enabled``."""

    default: str = SOURCE_LANGUAGE
    enabled: tuple[str, ...] = LANGUAGES


@dataclass(frozen=True, slots=True)
class SQLiteConfig:
    """One SQLite file (WAL): one host; several processes on it are fine."""

    path: str


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """A PostgreSQL database shared by any number of instances."""

    dsn: str = field(repr=False)  # may carry a password: never printed


StorageConfig = SQLiteConfig | PostgresConfig


@dataclass(frozen=True, slots=True)
class Config:
    signing_keys: tuple[str, ...]
    hash_key: str
    encryption_keys: tuple[str, ...]
    storage: StorageConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    primary: PrimaryConfig = field(default_factory=PrimaryConfig)
    cookie: CookieConfig = field(default_factory=CookieConfig)
    totp: TotpConfig = field(default_factory=TotpConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    remember_device: RememberConfig = field(default_factory=RememberConfig)
    password_reset: ResetConfig = field(default_factory=ResetConfig)
    prefix: str = "/_2fa"
    allowed_redirect_hosts: tuple[str, ...] = ()
    default_level: Level = Level.OPTIONAL
    rules: tuple[Rule, ...] = ()
    support_contact: str = ""
    branding: BrandingConfig = field(default_factory=BrandingConfig)
    languages: LanguagesConfig = field(default_factory=LanguagesConfig)

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (older callers; new code uses ``storage``/``make_storage``)."""
        if not isinstance(self.storage, SQLiteConfig):
            raise AttributeError("sqlite_path: the storage is PostgreSQL, not SQLite")
        return self.storage.path


class _Reader:
    """Walks a parsed YAML mapping, converting values and collecting problems by key path."""

    def __init__(self, environ: dict[str, str], base_dir: Path) -> None:
        self.problems: list[Problem] = []
        self.environ = environ
        self.base_dir = base_dir

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def section(self, data: dict[str, Any], key: str, path: str, allowed: set[str]) -> dict[str, Any]:
        value = data.get(key, {})
        full = f"{path}{key}"
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(full, f"must be a mapping, got {type(value).__name__}")
            return {}
        self.unknown(value, f"{full}.", allowed)
        return value

    def unknown(self, data: dict[str, Any], path: str, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                hint = f" (known keys: {', '.join(sorted(allowed))})"
                self.problem(f"{path}{key}", "unknown key" + hint)

    def get(self, data: dict[str, Any], key: str, path: str, default: T,
            convert: Callable[[Any], T]) -> T:
        if key not in data or data[key] is None:
            return default
        try:
            return convert(data[key])
        except (TypeError, ValueError) as exc:
            self.problem(f"{path}{key}", f"{exc} (got {data[key]!r})")
            return default

    def read_file(self, key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.problem(key, "must be a file path")
            return None
        path = Path(value)
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.problem(key, f"cannot read {str(path)!r}: {exc.strerror}")
            return None


def to_int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"must be {bound}")
        return value

    return convert


def to_duration(minimum: int) -> Callable[[Any], int]:
    """Seconds as an integer, or a string such as ``30s``, ``5m``, ``12h``, ``7d``."""

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a duration such as 30s, 5m, 12h")
        if isinstance(value, int):
            seconds = value
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = int(match.group(1)) * _UNITS[match.group(2)]
        else:
            raise ValueError("must be a duration such as 30s, 5m, 12h")
        if seconds < minimum:
            raise ValueError(f"must be at least {minimum} seconds")
        return seconds

    return convert


def to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def to_choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return convert


def to_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of non-empty strings")
    return tuple(value)


def to_networks(value: Any) -> tuple[Network, ...]:
    items = to_str_list(value)
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def to_redirect_entries(value: Any) -> tuple[str, ...]:
    """``redirects.allowed_hosts``: canonical ``host``, ``.domain`` or ``http(s)://host:port`` entries."""
    return tuple(redirect_entry(entry) for entry in to_str_list(value))


def _every_address(networks: tuple[Network, ...]) -> str:
    """The first network of prefix length 0 (``0.0.0.0/0``, ``::/0``), or ""."""
    return next((str(network) for network in networks if network.prefixlen == 0), "")


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
    if config.primary.resolver == "introspect" and (everyone := _every_address(proxies)):
        warnings.append(f"server.trusted_proxies: {everyone} trusts every address: any client may send"
                        " X-Forwarded-* headers (host, path, client address) to /auth")
    if config.primary.resolver == "header" and not proxies:
        warnings.append("server.trusted_proxies: is empty: with primary.resolver header no request"
                        " can be believed, so every /auth request is refused")
    url = config.primary.introspect.url
    if config.primary.resolver == "introspect" and url:
        parts = urlsplit(url)
        if parts.scheme == "http" and not _is_loopback_host(parts.hostname or ""):
            warnings.append("primary.introspect.url: plain http to a host that is not loopback: the"
                            " users' session cookies cross the network unencrypted; use https")
    return warnings


def to_url(value: Any) -> str:
    text = to_str(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError("must be an absolute http:// or https:// URL")
    return text


def to_prefix(value: Any) -> str:
    text = to_str(value)
    if not re.fullmatch(r"(/[A-Za-z0-9_.~-]+)+", text):
        raise ValueError("must be a path such as /_2fa (no trailing slash)")
    return text


def _secret_values(reader: _Reader, data: dict[str, Any], key: str, env: str,
                   many: bool) -> tuple[str, ...]:
    """A secret from ``key``, from ``key_file`` or from the environment variable ``env``."""
    path = "secrets."
    sources: list[tuple[str, Any]] = []
    if data.get(key) is not None:
        sources.append((f"{path}{key}", data[key]))
    if data.get(f"{key}_file") is not None:
        text = reader.read_file(f"{path}{key}_file", data[f"{key}_file"])
        if text is not None:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            sources.append((f"{path}{key}_file", lines if many else text))
    if env in reader.environ and reader.environ[env].strip():
        raw = reader.environ[env]
        sources.append((env, [p.strip() for p in raw.split(",") if p.strip()] if many else raw.strip()))
    if not sources:
        reader.problem(f"{path}{key}", f"is required (or {key}_file, or the environment variable {env})")
        return ()
    if len(sources) > 1:
        reader.problem(f"{path}{key}", "is given more than once: " + ", ".join(s for s, _ in sources))
        return ()
    where, value = sources[0]
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        reader.problem(where, "must be a string" + (" or a list of strings" if many else ""))
        return ()
    for index, item in enumerate(values):
        if len(item) < MIN_KEY_LENGTH:
            label = f"{where}[{index}]" if many and isinstance(value, list) else where
            reader.problem(label, f"is too short: use at least {MIN_KEY_LENGTH} random characters"
                           " (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    return tuple(values)


def _one_secret(reader: _Reader, data: dict[str, Any], key: str, path: str, env: str) -> str:
    """An optional secret from ``key``, ``key_file`` or the environment variable ``env``."""
    found = [(f"{path}{key}", data[key]) for k in (key,) if data.get(k) is not None]
    if data.get(f"{key}_file") is not None:
        text = reader.read_file(f"{path}{key}_file", data[f"{key}_file"])
        found.append((f"{path}{key}_file", text))
    if reader.environ.get(env, "").strip():
        found.append((env, reader.environ[env].strip()))
    if len(found) > 1:
        reader.problem(f"{path}{key}", "is given more than once: " + ", ".join(w for w, _ in found))
        return ""
    if found and not isinstance(found[0][1], str):
        reader.problem(found[0][0], "must be a string")
        return ""
    return str(found[0][1]) if found and found[0][1] is not None else ""


def _notify(reader: _Reader, data: dict[str, Any]) -> NotifyConfig:
    n = reader.section(data, "notify", "", {"events", "webhook", "email"})
    events = reader.get(n, "events", "notify.", NOTICE_EVENTS, to_str_list)
    for event in events:
        if event not in NOTICE_EVENTS:
            reader.problem("notify.events", f"{event!r} is not one of {', '.join(NOTICE_EVENTS)}")
    webhook = None
    if n.get("webhook") is not None:
        w = reader.section(n, "webhook", "notify.", {"url", "secret", "secret_file",
                                                    "timeout_seconds", "retries"})
        url = reader.get(w, "url", "notify.webhook.", "", to_url)
        if not url:
            reader.problem("notify.webhook.url", "is required (an http:// or https:// URL)")
        secret = _one_secret(reader, w, "secret", "notify.webhook.", ENV_WEBHOOK_SECRET)
        if len(secret) < MIN_KEY_LENGTH:
            reader.problem("notify.webhook.secret", f"is required, at least {MIN_KEY_LENGTH} "
                           f"characters (or secret_file, or {ENV_WEBHOOK_SECRET}): it signs the body")
        webhook = WebhookConfig(url, secret,
                                reader.get(w, "timeout_seconds", "notify.webhook.", 5, to_int(1, 60)),
                                reader.get(w, "retries", "notify.webhook.", 5, to_int(0, 10)))
    email = None
    if n.get("email") is not None:
        e = reader.section(n, "email", "notify.", {"host", "port", "security", "username",
                                                  "password", "password_file", "from", "retries"})
        host = reader.get(e, "host", "notify.email.", "", to_str)
        sender = reader.get(e, "from", "notify.email.", "", to_str)
        for key, value in (("host", host), ("from", sender)):
            if not value:
                reader.problem(f"notify.email.{key}", "is required")
        email = EmailConfig(
            host, sender, reader.get(e, "port", "notify.email.", 587, to_int(1, 65535)),
            reader.get(e, "security", "notify.email.", "starttls",
                       to_choice("starttls", "tls", "none")),
            reader.get(e, "username", "notify.email.", "", to_str),
            _one_secret(reader, e, "password", "notify.email.", ENV_SMTP_PASSWORD),
            reader.get(e, "retries", "notify.email.", 3, to_int(0, 10)))
    return NotifyConfig(events, webhook, email)


def _rules(reader: _Reader, value: Any) -> tuple[Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.problem("rules", "must be a list of rules")
        return ()
    allowed = {"host", "hosts", "path", "paths", "path_regex", "methods", "users", "groups", "level",
               "step_up"}
    rules = []
    for index, item in enumerate(value):
        path = f"rules[{index}]."
        if not isinstance(item, dict):
            reader.problem(f"rules[{index}]", "must be a mapping")
            continue
        reader.unknown(item, path, allowed)
        level = reader.get(item, "level", path, "", to_choice(*LEVELS))
        if "level" not in item:
            reader.problem(f"{path}level", f"is required (one of {', '.join(LEVELS)})")
        hosts = reader.get(item, "host", path, NONE, to_str_list) + reader.get(
            item, "hosts", path, NONE, to_str_list)
        paths = reader.get(item, "path", path, NONE, to_str_list) + reader.get(
            item, "paths", path, NONE, to_str_list)
        for p in paths:
            if not p.startswith("/"):
                reader.problem(f"{path}path", f"{p!r} must start with /")
        regex = None
        if "path_regex" in item:
            try:
                regex = re.compile(to_str(item["path_regex"]))
            except (re.error, ValueError) as exc:
                reader.problem(f"{path}path_regex", f"is not a valid regular expression: {exc}")
        methods = reader.get(item, "methods", path, NONE, to_str_list)
        for m in methods:
            if m.upper() not in _HTTP_METHODS:
                reader.problem(f"{path}methods", f"{m!r} is not an HTTP method")
        users = reader.get(item, "users", path, NONE, to_str_list)
        groups = reader.get(item, "groups", path, NONE, to_str_list)
        step_up = reader.get(item, "step_up", path, 0, to_duration(1))
        if step_up and level in ("bypass", "deny"):
            reader.problem(f"{path}step_up", f"has no meaning with level {level}")
        rules.append(Rule(
            level=Level(level) if level else Level.DENY,  # a missing level is a problem already
            hosts=tuple(h.lower().rstrip(".") for h in hosts),
            paths=paths,
            path_regex=regex,
            methods=frozenset(m.upper() for m in methods),
            users=frozenset(users),
            groups=frozenset(groups),
            step_up=step_up,
        ))
    return tuple(rules)


def _is_postgres_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("postgres", "postgresql")


def _storage(reader: _Reader, data: dict[str, Any]) -> StorageConfig:
    """Exactly one of ``storage.sqlite`` and ``storage.postgres`` (or the DSN's env variable)."""
    st = reader.section(data, "storage", "", {"sqlite", "postgres"})
    env_dsn = reader.environ.get(ENV_POSTGRES_DSN, "").strip()
    postgres = "postgres" in st or bool(env_dsn)
    if "sqlite" in st and postgres:
        also = "" if "postgres" in st else f" (the environment variable {ENV_POSTGRES_DSN} is set)"
        reader.problem("storage", f"give exactly one of storage.sqlite and storage.postgres{also}")
        return SQLiteConfig("")
    if not postgres:
        sq = reader.section(st, "sqlite", "storage.", {"path"})
        path = reader.get(sq, "path", "storage.sqlite.", "", to_str)
        if not path:
            reader.problem("storage.sqlite.path", "is required (the SQLite database file;"
                           " or storage.postgres.dsn for PostgreSQL)")
        elif path != ":memory:" and not Path(path).is_absolute():
            path = str(reader.base_dir / path)
        return SQLiteConfig(path)
    pg = reader.section(st, "postgres", "storage.", {"dsn", "dsn_file"})
    sources: list[tuple[str, Any]] = []
    if pg.get("dsn") is not None:
        sources.append(("storage.postgres.dsn", pg["dsn"]))
    if pg.get("dsn_file") is not None:
        text = reader.read_file("storage.postgres.dsn_file", pg["dsn_file"])
        if text is not None:
            sources.append(("storage.postgres.dsn_file", text))
    if env_dsn:
        sources.append((ENV_POSTGRES_DSN, env_dsn))
    if not sources:
        if "dsn_file" not in pg:  # an unreadable dsn_file is a problem already
            reader.problem("storage.postgres.dsn", "is required (or dsn_file, or the environment"
                           f" variable {ENV_POSTGRES_DSN})")
        return PostgresConfig("")
    if len(sources) > 1:
        reader.problem("storage.postgres.dsn",
                       "is given more than once: " + ", ".join(where for where, _ in sources))
        return PostgresConfig("")
    where, dsn = sources[0]
    # The value is never echoed: it may carry a password.
    if not isinstance(dsn, str) or not _is_postgres_url(dsn.strip()):
        reader.problem(where, "must be a URL such as postgresql://user:password@host:5432/dbname")
        return PostgresConfig("")
    return PostgresConfig(dsn.strip())


def _branding(reader: _Reader, data: dict[str, Any], issuer: str) -> BrandingConfig:
    """``branding.*``; the top-level ``support_contact`` of older configs still counts."""
    b = reader.section(data, "branding", "", {"product_name", "logo_url", "logo_file",
                                              "accent_color", "support_contact"})
    name = reader.get(b, "product_name", "branding.", "", to_str).strip()
    logo_url = reader.get(b, "logo_url", "branding.", "", to_str)
    if logo_url and (why := logo_url_problem(logo_url)):
        reader.problem("branding.logo_url", why)
        logo_url = ""
    logo_data = ""
    if b.get("logo_file") is not None:
        if "logo_url" in b:
            reader.problem("branding.logo_file", "give only one of branding.logo_url and "
                           "branding.logo_file")
        elif not isinstance(b["logo_file"], str):
            reader.problem("branding.logo_file", "must be a file path (a PNG or SVG file)")
        else:
            file = Path(b["logo_file"])
            try:
                logo_data = logo_data_uri(file if file.is_absolute() else reader.base_dir / file)
            except ValueError as exc:
                reader.problem("branding.logo_file", str(exc))
    accent = reader.get(b, "accent_color", "branding.", "", to_str)
    if accent and (why := accent_problem(accent)):
        reader.problem("branding.accent_color", f"{why} (got {accent!r})")
        accent = ""
    contact = reader.get(b, "support_contact", "branding.", "", to_str)
    older = reader.get(data, "support_contact", "", "", to_str)
    if contact and older and contact != older:
        reader.problem("support_contact", "is given twice, differently: keep only "
                       "branding.support_contact")
    return BrandingConfig(name or issuer, logo_url, logo_data, accent.lower(), contact or older)


def _languages(reader: _Reader, data: dict[str, Any]) -> LanguagesConfig:
    lg = reader.section(data, "languages", "", {"default", "enabled"})
    listed = reader.get(lg, "enabled", "languages.", LANGUAGES, to_str_list)
    if not listed:
        reader.problem("languages.enabled", f"must name at least one of {', '.join(LANGUAGES)}")
    for language in listed:
        if language not in LANGUAGES:
            reader.problem("languages.enabled", f"{language!r} is not one of {', '.join(LANGUAGES)}")
    enabled = tuple(dict.fromkeys(lang for lang in listed if lang in LANGUAGES)) or LANGUAGES
    default = reader.get(lg, "default", "languages.", "", to_choice(*LANGUAGES))
    if default and default not in enabled:
        reader.problem("languages.default", f"{default!r} is not in languages.enabled")
    if not default or default not in enabled:
        default = SOURCE_LANGUAGE if SOURCE_LANGUAGE in enabled else enabled[0]
    return LanguagesConfig(default, enabled)


TOP_KEYS = {"server", "primary", "cookie", "totp", "throttle", "secrets", "storage", "prefix",
            "redirects", "rules", "default_level", "support_contact", "api",
            "branding", "languages", "notify", "remember_device", "password_reset"}


def parse_config(data: Any, environ: dict[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    reader = _Reader(dict(os.environ) if environ is None else environ, base_dir or Path.cwd())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem("(top level)", "must be a mapping of keys to values")])
    reader.unknown(data, "", TOP_KEYS)

    s = reader.section(data, "server", "", {"host", "port", "trusted_proxies", "log_level"})
    server = ServerConfig(
        host=reader.get(s, "host", "server.", "127.0.0.1", to_str),
        port=reader.get(s, "port", "server.", 9091, to_int(1, 65535)),
        trusted_proxies=reader.get(s, "trusted_proxies", "server.", LOOPBACK_PROXIES, to_networks),
        log_level=reader.get(s, "log_level", "server.", "info",
                             to_choice("debug", "info", "warning", "error")),
    )

    p = reader.section(data, "primary", "", {"resolver", "session_cookies", "header", "introspect"})
    h = reader.section(p, "header", "primary.", {"user", "email", "name", "groups"})
    i = reader.section(p, "introspect", "primary.",
                       {"url", "user_key", "email_key", "name_key", "groups_key", "cache_seconds",
                        "timeout_seconds"})
    resolver = reader.get(p, "resolver", "primary.", "introspect", to_choice("introspect", "header"))
    introspect = IntrospectConfig(
        url=reader.get(i, "url", "primary.introspect.", "", to_url),
        user_key=reader.get(i, "user_key", "primary.introspect.", "user", to_str),
        email_key=reader.get(i, "email_key", "primary.introspect.", "email", to_str),
        name_key=reader.get(i, "name_key", "primary.introspect.", "name", to_str),
        groups_key=reader.get(i, "groups_key", "primary.introspect.", "groups", to_str),
        cache_seconds=reader.get(i, "cache_seconds", "primary.introspect.", 5, to_int(0, 300)),
        timeout_seconds=float(reader.get(i, "timeout_seconds", "primary.introspect.", 3, to_int(1, 60))),
    )
    if resolver == "introspect" and not introspect.url:
        reader.problem("primary.introspect.url", "is required when primary.resolver is introspect")
    header_user = reader.get(h, "user", "primary.header.", "Remote-User", to_str)
    if resolver == "header" and (everyone := _every_address(server.trusted_proxies)):
        reader.problem("server.trusted_proxies", f"{everyone} trusts every address: with primary.resolver"
                       f" header any client could send {header_user}: <someone> and be that user;"
                       " name only your proxies' addresses")
    primary = PrimaryConfig(
        resolver=resolver,
        session_cookies=reader.get(p, "session_cookies", "primary.", NONE, to_str_list),
        header=HeaderResolverConfig(
            user=header_user,
            email=reader.get(h, "email", "primary.header.", "Remote-Email", to_str),
            name=reader.get(h, "name", "primary.header.", "Remote-Name", to_str),
            groups=reader.get(h, "groups", "primary.header.", "Remote-Groups", to_str),
        ),
        introspect=introspect,
    )

    c = reader.section(data, "cookie", "", {"name", "max_age", "idle_timeout", "secure"})
    cookie = CookieConfig(
        name=reader.get(c, "name", "cookie.", "totp_sidecar", to_str),
        max_age=reader.get(c, "max_age", "cookie.", 12 * 3600, to_duration(60)),
        idle_timeout=reader.get(c, "idle_timeout", "cookie.", 0, to_duration(0)),
        secure=reader.get(c, "secure", "cookie.", "auto", to_choice("auto", "always", "never")),
    )
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", cookie.name):
        reader.problem("cookie.name", "may only contain letters, digits, _ and -")

    t = reader.section(data, "totp", "", {"issuer", "digits", "period", "algorithm", "skew",
                                          "enrollment_timeout"})
    totp = TotpConfig(
        issuer=reader.get(t, "issuer", "totp.", "totp-sidecar", to_str),
        digits=reader.get(t, "digits", "totp.", 6, to_int(6, 8)),
        period=reader.get(t, "period", "totp.", 30, to_int(15, 120)),
        algorithm=reader.get(t, "algorithm", "totp.", "SHA1", to_choice("SHA1", "SHA256", "SHA512")),
        skew=reader.get(t, "skew", "totp.", 1, to_int(0, 2)),
        enrollment_timeout=reader.get(t, "enrollment_timeout", "totp.", 600, to_duration(60)),
    )
    if ":" in totp.issuer:
        reader.problem("totp.issuer", "must not contain ':' (it separates issuer and account)")

    th = reader.section(data, "throttle", "", {"max_failures", "window", "lockout",
                                               "max_failures_per_client"})
    throttle = ThrottleConfig(
        max_failures=reader.get(th, "max_failures", "throttle.", 5, to_int(1, 1000)),
        window=reader.get(th, "window", "throttle.", 300, to_duration(1)),
        lockout=reader.get(th, "lockout", "throttle.", 900, to_duration(1)),
        max_failures_per_client=reader.get(th, "max_failures_per_client", "throttle.", 20,
                                           to_int(1, 100_000)),
    )

    pr = reader.section(data, "password_reset", "", {"paths", "account_field", "app_url",
                                                     "always_ask", "grant_seconds"})
    reset = ResetConfig(
        paths=reader.get(pr, "paths", "password_reset.", NONE, to_str_list),
        account_field=reader.get(pr, "account_field", "password_reset.", "email", to_str),
        app_url=reader.get(pr, "app_url", "password_reset.", "", to_url),
        always_ask=reader.get(pr, "always_ask", "password_reset.", False, to_bool),
        grant_seconds=reader.get(pr, "grant_seconds", "password_reset.", 600, to_duration(60)),
    )
    for reset_path in reset.paths:
        if not re.fullmatch(r"(/[A-Za-z0-9_.~-]+)+/?", reset_path):
            reader.problem("password_reset.paths", f"{reset_path!r} must be a plain path such as "
                           "/password/reset")
    if reset.paths and not reset.app_url:
        reader.problem("password_reset.app_url", "is required with password_reset.paths (where "
                       "the sidecar forwards the reset page once the code was entered)")

    rm = reader.section(data, "remember_device", "", {"enabled", "max_days", "cookie_name"})
    remember = RememberConfig(
        enabled=reader.get(rm, "enabled", "remember_device.", False, to_bool),
        max_days=reader.get(rm, "max_days", "remember_device.", 30, to_int(1, 365)),
        cookie_name=reader.get(rm, "cookie_name", "remember_device.", "totp_sidecar_device",
                               to_str),
    )
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", remember.cookie_name):
        reader.problem("remember_device.cookie_name", "may only contain letters, digits, _ and -")

    a = reader.section(data, "api", "", {"otp_header", "burst_seconds", "bearer"})
    api = ApiConfig(
        otp_header=reader.get(a, "otp_header", "api.", "X-OTP", to_str),
        burst_seconds=reader.get(a, "burst_seconds", "api.", 30, to_duration(0)),
        bearer=reader.get(a, "bearer", "api.", "pass", to_choice("pass", "require_otp")),
    )
    if not re.fullmatch(r"[A-Za-z0-9-]+", api.otp_header):
        reader.problem("api.otp_header", "must be a header name (letters, digits and -)")
    if api.burst_seconds > 300:
        reader.problem("api.burst_seconds", "must be at most 300 seconds")

    notify = _notify(reader, data)

    sec = reader.section(data, "secrets", "", {"signing_keys", "signing_keys_file", "hash_key",
                                               "hash_key_file", "encryption_keys",
                                               "encryption_keys_file"})
    signing_keys = _secret_values(reader, sec, "signing_keys", ENV_SIGNING_KEYS, many=True)
    hash_keys = _secret_values(reader, sec, "hash_key", ENV_HASH_KEY, many=False)
    encryption_keys = _secret_values(reader, sec, "encryption_keys", ENV_ENCRYPTION_KEYS, many=True)

    storage = _storage(reader, data)

    r = reader.section(data, "redirects", "", {"allowed_hosts"})
    allowed_hosts = reader.get(r, "allowed_hosts", "redirects.", NONE, to_redirect_entries)

    branding = _branding(reader, data, totp.issuer)
    config = Config(
        signing_keys=signing_keys,
        hash_key=hash_keys[0] if hash_keys else "",
        encryption_keys=encryption_keys,
        storage=storage,
        server=server,
        primary=primary,
        cookie=cookie,
        totp=totp,
        throttle=throttle,
        api=api,
        notify=notify,
        remember_device=remember,
        password_reset=reset,
        prefix=reader.get(data, "prefix", "", "/_2fa", to_prefix),
        allowed_redirect_hosts=allowed_hosts,
        default_level=Level(reader.get(data, "default_level", "", "optional",
                                       to_choice("optional", "required"))),
        rules=_rules(reader, data.get("rules")),
        support_contact=branding.support_contact,
        branding=branding,
        languages=_languages(reader, data),
    )
    if reader.problems:
        raise ConfigError(reader.problems)
    return config


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(f"(file) {path}", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"(file) {path}", f"not valid YAML: {exc}")]) from None
    return parse_config(data, environ, file.resolve().parent)
