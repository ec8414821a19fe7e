"""The configuration: one typed ``Config``, loaded from YAML and validated whole.

* ``schema``   every key once: path, default, kind (bounds), doc; the README table comes from it
* ``values``   the kinds a value may be (integer in bounds, duration, choice, URL, …)
* ``model``    the typed result, its defaults read from the schema
* ``validate`` reads a parsed document by the schema, collecting every problem with its key
* ``load``     the YAML file

The config layer imports the core and ``sidecar.errors`` (and ``sidecar.branding``, which
checks the branding keys), never storage, services or the web.
"""

from sidecar.config.load import load_config
from sidecar.config.model import (
    ApiConfig,
    AppConfig,
    BrandingConfig,
    CacheConfig,
    Config,
    CookieConfig,
    EmailConfig,
    HeaderResolverConfig,
    IntrospectConfig,
    LanguagesConfig,
    NotifyConfig,
    PostgresConfig,
    PrimaryConfig,
    RememberConfig,
    ResetConfig,
    ServerConfig,
    SQLiteConfig,
    StorageConfig,
    ThrottleConfig,
    TotpConfig,
    WebhookConfig,
)
from sidecar.config.schema import (
    ENV_ENCRYPTION_KEYS,
    ENV_HASH_KEY,
    ENV_POSTGRES_DSN,
    ENV_SIGNING_KEYS,
    ENV_SMTP_PASSWORD,
    ENV_WEBHOOK_SECRET,
    LANGUAGES,
    LOOPBACK_PROXIES,
    NOTICE_EVENTS,
    SOURCE_LANGUAGE,
)
from sidecar.config.validate import config_warnings, parse_config

__all__ = [
    "ENV_ENCRYPTION_KEYS", "ENV_HASH_KEY", "ENV_POSTGRES_DSN", "ENV_SIGNING_KEYS", "ENV_SMTP_PASSWORD",
    "ENV_WEBHOOK_SECRET", "LANGUAGES", "LOOPBACK_PROXIES", "NOTICE_EVENTS", "SOURCE_LANGUAGE",
    "ApiConfig", "AppConfig", "BrandingConfig", "CacheConfig", "Config", "CookieConfig",
    "EmailConfig",
    "HeaderResolverConfig",
    "IntrospectConfig", "LanguagesConfig", "NotifyConfig", "PostgresConfig", "PrimaryConfig",
    "RememberConfig", "ResetConfig", "SQLiteConfig", "ServerConfig", "StorageConfig",
    "ThrottleConfig", "TotpConfig", "WebhookConfig", "config_warnings", "load_config",
    "parse_config",
]
