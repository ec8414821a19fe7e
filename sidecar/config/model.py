"""The typed configuration: what ``load_config`` returns, each default taken from the schema.

``Config`` holds one frozen section per part of the sidecar. Defaults are never written here:
``_default("cookie.max_age")`` reads them from ``sidecar.config.schema``, where each key's
default, bounds and doc live once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.config.schema import default as _default
from sidecar.config.values import Network
from sidecar.core.apps import DEFAULT_APP
from sidecar.core.policy import Level, Rule


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = _default("server.host")
    port: int = _default("server.port")
    trusted_proxies: tuple[Network, ...] = _default("server.trusted_proxies")
    log_level: str = _default("server.log_level")


@dataclass(frozen=True, slots=True)
class HeaderResolverConfig:
    user: str = _default("primary.header.user")
    email: str = _default("primary.header.email")
    name: str = _default("primary.header.name")
    groups: str = _default("primary.header.groups")


@dataclass(frozen=True, slots=True)
class IntrospectConfig:
    url: str = _default("primary.introspect.url")
    user_key: str = _default("primary.introspect.user_key")
    email_key: str = _default("primary.introspect.email_key")
    name_key: str = _default("primary.introspect.name_key")
    groups_key: str = _default("primary.introspect.groups_key")
    cache_seconds: int = _default("primary.introspect.cache_seconds")
    timeout_seconds: float = float(_default("primary.introspect.timeout_seconds"))


@dataclass(frozen=True, slots=True)
class PrimaryConfig:
    resolver: str = _default("primary.resolver")
    session_cookies: tuple[str, ...] = _default("primary.session_cookies")
    login_url: str = _default("primary.login_url")
    logout_url: str = _default("primary.logout_url")
    header: HeaderResolverConfig = field(default_factory=HeaderResolverConfig)
    introspect: IntrospectConfig = field(default_factory=IntrospectConfig)


@dataclass(frozen=True, slots=True)
class CookieConfig:
    name: str = _default("cookie.name")
    max_age: int = _default("cookie.max_age")
    idle_timeout: int = _default("cookie.idle_timeout")
    secure: str = _default("cookie.secure")


@dataclass(frozen=True, slots=True)
class TotpConfig:
    issuer: str = _default("totp.issuer")
    digits: int = _default("totp.digits")
    period: int = _default("totp.period")
    algorithm: str = _default("totp.algorithm")
    skew: int = _default("totp.skew")
    enrollment_timeout: int = _default("totp.enrollment_timeout")


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    max_failures: int = _default("throttle.max_failures")
    window: int = _default("throttle.window")
    lockout: int = _default("throttle.lockout")
    max_failures_per_client: int = _default("throttle.max_failures_per_client")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str = field(repr=False, default=_default("notify.webhook.secret"))
    timeout_seconds: int = _default("notify.webhook.timeout_seconds")
    retries: int = _default("notify.webhook.retries")


@dataclass(frozen=True, slots=True)
class EmailConfig:
    host: str
    sender: str  # notify.email.from
    port: int = _default("notify.email.port")
    security: str = _default("notify.email.security")
    username: str = _default("notify.email.username")
    password: str = field(repr=False, default=_default("notify.email.password"))
    retries: int = _default("notify.email.retries")


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Notices to the user (e-mail) and to the operator's systems (webhook) on 2FA changes."""

    events: tuple[str, ...] = _default("notify.events")
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None


@dataclass(frozen=True, slots=True)
class ResetConfig:
    """The password-reset gate: the app's reset path(s) need a code for that account first."""

    paths: tuple[str, ...] = _default("password_reset.paths")
    account_field: str = _default("password_reset.account_field")
    app_url: str = _default("password_reset.app_url")
    always_ask: bool = _default("password_reset.always_ask")
    grant_seconds: int = _default("password_reset.grant_seconds")


@dataclass(frozen=True, slots=True)
class RememberConfig:
    """"Remember this device": off unless enabled; a device then vouches for max_days."""

    enabled: bool = _default("remember_device.enabled")
    max_days: int = _default("remember_device.max_days")
    cookie_name: str = _default("remember_device.cookie_name")


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """API clients that log in with a password (``Authorization: Basic``)."""

    otp_header: str = _default("api.otp_header")
    burst_seconds: int = _default("api.burst_seconds")
    bearer: str = _default("api.bearer")


@dataclass(frozen=True, slots=True)
class BrandingConfig:
    """How the pages look: name, logo, accent colour, who to ask for help."""

    product_name: str = _default("branding.product_name")  # the loader fills in totp.issuer
    logo_url: str = _default("branding.logo_url")
    logo_data: str = field(default="", repr=False)  # branding.logo_file as a data: URI
    accent_color: str = _default("branding.accent_color")  # "" = the stylesheet's blue
    support_contact: str = _default("branding.support_contact")

    @property
    def logo(self) -> str:
        return self.logo_url or self.logo_data


@dataclass(frozen=True, slots=True)
class LanguagesConfig:
    """The pages' languages: chosen per request from Accept-Language among ``enabled``."""

    default: str = _default("languages.default")
    enabled: tuple[str, ...] = _default("languages.enabled")


@dataclass(frozen=True, slots=True)
class SQLiteConfig:
    """One SQLite file (WAL): one host; several processes on it are fine."""

    path: str


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """A PostgreSQL database shared by any number of instances."""

    dsn: str = field(repr=False)  # may carry a password: never printed
    listen_dsn: str = field(default=_default("storage.postgres.listen_dsn"), repr=False)
    pgbouncer: bool = _default("storage.postgres.pgbouncer")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """What each instance keeps in memory (bounded)."""

    users: int = _default("cache.users")
    answers: int = _default("cache.answers")
    answer_seconds: int = _default("cache.answer_seconds")


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
    prefix: str = _default("prefix")
    allowed_redirect_hosts: tuple[str, ...] = _default("redirects.allowed_hosts")
    default_level: Level = Level(_default("default_level"))
    rules: tuple[Rule, ...] = ()
    support_contact: str = _default("branding.support_contact")
    branding: BrandingConfig = field(default_factory=BrandingConfig)
    languages: LanguagesConfig = field(default_factory=LanguagesConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    hosts: tuple[str, ...] = _default("hosts")  # the top-level app's hosts (() = any)
    apps: tuple[AppConfig, ...] = ()  # the entries of ``apps`` (the top level is not one)

    @property
    def every_app(self) -> tuple[AppConfig, ...]:
        """The top-level app (``default``) first, then the entries of ``apps``."""
        return (AppConfig(DEFAULT_APP, self.hosts, DEFAULT_APP, self), *self.apps)

    def app(self, name: str) -> AppConfig:
        """The app called ``name``; KeyError when there is none."""
        for app in self.every_app:
            if app.name == name:
                return app
        raise KeyError(name)

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (older callers; new code uses ``storage``/``make_storage``)."""
        if not isinstance(self.storage, SQLiteConfig):
            raise AttributeError("sqlite_path: the storage is PostgreSQL, not SQLite")
        return self.storage.path


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One app behind the sidecar: its name, hosts and users' namespace, and the settings it
    sees (``config``: the top level with the app's own ``primary``, ``totp.issuer``,
    ``branding``, ``rules``, ``default_level`` and ``redirects``; its ``apps`` is empty)."""

    name: str
    hosts: tuple[str, ...]
    users_namespace: str
    config: Config = field(repr=False)
