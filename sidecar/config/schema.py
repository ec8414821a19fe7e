"""Every configuration key, written once: its path, default, kind (bounds) and doc.

The typed config (``sidecar.config.model``) takes its defaults from here, the validator
(``sidecar.config.validate``) the keys it knows and how to read each, and the README's key
table is generated from here (``python -m sidecar.config``; a test compares them, and
checks ``config.example.yaml`` against the same keys).

A secret key (``env``) may instead be given as ``<key>_file`` (a file holding it) or in that
environment variable, exactly one of the three. Keys of a rule are written ``rules[].key``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from sidecar.config.values import (
    Bool,
    Choice,
    Duration,
    Hosts,
    Int,
    Kind,
    Name,
    Network,
    Networks,
    Prefix,
    RedirectHosts,
    Regex,
    Text,
    Texts,
    Url,
    duration_text,
)

#: Every language the sidecar has a catalogue for (``sidecar/locale``); English is the source.
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "ja")
SOURCE_LANGUAGE = "en"
LEVELS = ("bypass", "optional", "required", "deny")
NOTICE_EVENTS: tuple[str, ...] = ("enabled", "disabled", "recovery_code_used", "codes_regenerated",
                                  "locked", "admin_reset", "key_added", "key_removed")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
MIN_KEY_LENGTH = 32
ENV_SIGNING_KEYS = "TOTP_SIDECAR_SIGNING_KEYS"
ENV_HASH_KEY = "TOTP_SIDECAR_HASH_KEY"
ENV_ENCRYPTION_KEYS = "TOTP_SIDECAR_ENCRYPTION_KEYS"
ENV_WEBHOOK_SECRET = "TOTP_SIDECAR_WEBHOOK_SECRET"
ENV_SMTP_PASSWORD = "TOTP_SIDECAR_SMTP_PASSWORD"
ENV_POSTGRES_DSN = "TOTP_SIDECAR_POSTGRES_DSN"
#: server.trusted_proxies when the config names none: loopback only.
LOOPBACK_PROXIES: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),
                                         ipaddress.ip_network("::1/128"))
_NAME = r"[A-Za-z0-9_\-]+"
_NAME_MESSAGE = "may only contain letters, digits, _ and -"
_PAGE = Text(r"(/[^\s]*)?|https?://[^\s/]+(/[^\s]*)?",
             "must be a path starting with / or an http(s) URL")
_PATHS = Texts(pattern=r"(?s)/.*", message="{item} must start with /")


@dataclass(frozen=True, slots=True)
class Key:
    """One key: where it is, what it holds when absent, what it may be, what it means."""

    path: str
    default: Any
    kind: Kind
    doc: str
    shown: str = ""  # the default as the docs show it, when not simply the value
    required: bool = False  # (sometimes) required: the docs show no default
    env: str = ""  # a secret: also <key>_file or this environment variable
    many: bool = False  # a secret that is a list (a file: one per line; the variable: commas)

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class Section:
    """A mapping of keys (``server``), a list of them (``rules``), or an optional one."""

    path: str
    doc: str

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


def _k(path: str, default: Any, kind: Kind, doc: str, **more: Any) -> Key:
    return Key(path, default, kind, doc, **more)


SCHEMA: tuple[Key | Section, ...] = (
    Section("server", "the sidecar's own listener"),
    _k("server.host", "127.0.0.1", Text(), "listen address"),
    _k("server.port", 9091, Int(1, 65535), "listen port"),
    _k("server.trusted_proxies", LOOPBACK_PROXIES, Networks(),
       "IPs/CIDRs whose forwarded headers (and the `header` resolver's user header) are "
       "believed; others get 403 on `/auth/*`. A network of prefix length 0 trusts everyone: "
       "refused with the `header` resolver, a warning otherwise", shown="loopback"),
    _k("server.log_level", "info", Choice(("debug", "info", "warning", "error")),
       "JSON log lines on stderr from this level up"),
    _k("prefix", "/_2fa", Prefix(), "path of the sidecar's pages on the app's host"),
    _k("hosts", (), Hosts(),
       "the hosts the top-level app (named `default`) answers: exact names or `*.example.com`, "
       "any case, no port. Empty = every host no entry of `apps` claims; otherwise a request "
       "for a host no app claims is refused (400 on `/auth/*`, 404 on the pages)"),
    Section("primary", "who is logged in to the app (the primary session)"),
    _k("primary.resolver", "introspect", Choice(("introspect", "header")),
       "ask the app's who-am-I URL, or read headers set by a trusted proxy"),
    _k("primary.session_cookies", (), Texts(),
       "the app's session cookie name(s); the 2FA cookie is bound to them, and a request "
       "carrying one of them twice (or under a name apps fold into it) is refused as "
       "ambiguous. Empty = all cookies but the sidecar's (re-asks when any cookie changes; "
       "any cookie given twice is refused)"),
    _k("primary.login_url", "/", _PAGE,
       "the app's login page (a path or URL): where \"Not you? Sign out\" sends the user when "
       "`primary.logout_url` is empty. A path other than `/` is reachable without a code (an "
       "implicit `bypass` rule that `check-config` prints; an operator's `deny` still wins)"),
    _k("primary.logout_url", "", _PAGE,
       "the app's link-style logout (a path or URL answering GET), where \"Not you? Sign out\" "
       "sends the user after expiring the session cookies; reachable without a code like "
       "`primary.login_url`. Empty = go to `primary.login_url`"),
    Section("primary.introspect", "the `introspect` resolver"),
    _k("primary.introspect.url", "", Url(),
       "the app's \"who am I\" URL, called with the request's cookies (or Authorization); "
       "200 + JSON = logged in, 401/403 = anonymous (required for `introspect`; no "
       "`user:password@`: the app must see the request's credential only)", required=True),
    _k("primary.introspect.user_key", "user", Text(), "JSON key of the user id (dots reach nested keys)"),
    _k("primary.introspect.email_key", "email", Text(), "JSON key of the e-mail address (optional)"),
    _k("primary.introspect.name_key", "name", Text(), "JSON key of the display name (optional)"),
    _k("primary.introspect.groups_key", "groups", Text(),
       "JSON key of the user's groups, a list or a comma-separated string (optional; for rules)"),
    _k("primary.introspect.cache_seconds", 5, Int(0, 300),
       "answers are cached per credential this long (0 = no cache)"),
    _k("primary.introspect.timeout_seconds", 3, Int(1, 60), "how long to wait for the app's answer"),
    Section("primary.header", "the `header` resolver"),
    _k("primary.header.user", "Remote-User", Text(), "header naming the user"),
    _k("primary.header.email", "Remote-Email", Text(), "header with the e-mail address"),
    _k("primary.header.name", "Remote-Name", Text(), "header with the display name"),
    _k("primary.header.groups", "Remote-Groups", Text(), "header with the groups (comma-separated)"),
    Section("cookie", "the 2FA cookie set after a passed challenge"),
    _k("cookie.name", "totp_sidecar", Text(_NAME, _NAME_MESSAGE), "name of the 2FA cookie"),
    _k("cookie.max_age", 12 * 3600, Duration(60), "a passed challenge lasts at most this long"),
    _k("cookie.idle_timeout", 0, Duration(0),
       "0 = off; else the cookie ends after this long without requests; the forward-auth "
       "answer then carries a refreshed `Set-Cookie` about once a minute, which the proxy must "
       "copy to the response (the nginx snippet does)"),
    _k("cookie.secure", "auto", Choice(("auto", "always", "never")),
       "`auto`: when the original request was https"),
    Section("secrets", "keys; each also as `<key>_file` or an environment variable"),
    _k("secrets.signing_keys", (), Texts(),
       "list, oldest first, the last signs (cookies, CSRF tokens, reset grants); append a key and "
       "restart to rotate without logging anyone out", required=True, env=ENV_SIGNING_KEYS,
       many=True),
    _k("secrets.hash_key", "", Text(),
       "keys recovery-code hashes and session fingerprints; keep it stable", required=True,
       env=ENV_HASH_KEY),
    _k("secrets.encryption_keys", (), Texts(),
       "AES-256-GCM keys for TOTP secrets at rest, oldest first, the last encrypts; rotate: "
       "append, restart, `totp-sidecar keys rotate`, drop the old one", required=True,
       env=ENV_ENCRYPTION_KEYS, many=True),
    Section("storage", "exactly one of `storage.sqlite` and `storage.postgres`"),
    Section("storage.sqlite", "one SQLite file"),
    _k("storage.sqlite.path", "", Text(),
       "SQLite file (WAL; migrations applied at start); relative to the config file",
       required=True),
    Section("storage.postgres", "a PostgreSQL database shared by several instances"),
    _k("storage.postgres.dsn", "", Text(),
       "`postgresql://user:password@host:5432/dbname` (asyncpg URL options allowed); the "
       "environment variable alone selects PostgreSQL. Never printed: messages name only "
       "`host:port/dbname`", required=True, env=ENV_POSTGRES_DSN),
    _k("storage.postgres.pgbouncer", False, Bool(),
       "`dsn` goes through a pooler in transaction mode (PgBouncer): no prepared statements kept, "
       "no reset query, and no LISTEN on `dsn`"),
    _k("storage.postgres.listen_dsn", "", Text(),
       "a direct connection (never through a pooler) on which the sidecar LISTENs for changes "
       "made by other instances; empty: `dsn` itself, or, with `pgbouncer`, none (the change "
       "feed is then polled 4 times a second)"),
    Section("cache", "what each instance keeps in memory"),
    _k("cache.users", 100_000, Int(100, 10_000_000),
       "users whose 2FA state (and remembered devices) are kept, least recently seen dropped "
       "first; about 200 bytes each"),
    _k("cache.answers", 50_000, Int(0, 10_000_000),
       "forward-auth answers (allow) kept for reuse, oldest dropped first; about 600 bytes each "
       "(0 = none kept)"),
    _k("cache.answer_seconds", 300, Int(0, 3600),
       "how long a forward-auth answer may be reused: never longer than the who-am-I answer "
       "(`primary.introspect.cache_seconds`), the 2FA cookie (its expiry, its next idle-timeout "
       "refresh) or the step-up window it rests on; a change of the user's 2FA state on any "
       "instance, a request with an unsafe method in the same app session or a change feed "
       "gone stale ends it at once"),
    Section("totp", "the codes"),
    _k("totp.issuer", "totp-sidecar", Text(r"[^:]*", "must not contain ':' (it separates issuer "
                                           "and account)"),
       "name shown in the authenticator app"),
    _k("totp.digits", 6, Int(6, 8), "digits of a code (6 is what every app reads)"),
    _k("totp.period", 30, Int(15, 120), "seconds a code lasts"),
    _k("totp.algorithm", "SHA1", Choice(("SHA1", "SHA256", "SHA512")),
       "change only if every authenticator app used supports it"),
    _k("totp.skew", 1, Int(0, 2), "steps of clock drift accepted each way"),
    _k("totp.enrollment_timeout", 600, Duration(60),
       "how long a shown QR code stays valid (reloads show the same one)"),
    Section("throttle", "failed codes"),
    _k("throttle.max_failures", 5, Int(1, 1000),
       "failed codes (TOTP or recovery) of a user within `window` before a lockout"),
    _k("throttle.window", 300, Duration(1), "the window failures are counted in"),
    _k("throttle.lockout", 900, Duration(1), "how long a lockout lasts (`users unlock` lifts it)"),
    _k("throttle.max_failures_per_client", 20, Int(1, 100_000),
       "failed codes from one client address (any users) within `window` before that address "
       "is refused for a `window`"),
    Section("api", "API clients that log in with a password"),
    _k("api.otp_header", "X-OTP", Text(r"[A-Za-z0-9-]+", "must be a header name (letters, digits "
                                       "and -)"),
       "header in which password API clients send a code"),
    _k("api.burst_seconds", 30, Duration(0, 300),
       "how long an accepted code serves further calls with the same credential (0 = one call "
       "per code)"),
    _k("api.bearer", "pass", Choice(("pass", "require_otp")),
       "`pass`: Bearer tokens are not asked for a code; `require_otp`: treated like Basic"),
    Section("redirects", "where `rd` may point"),
    _k("redirects.allowed_hosts", (), RedirectHosts(),
       "extra hosts `rd` may point to: `app.example.org` (https on the default port), "
       "`.example.com` (it and its subdomains), or an origin such as `https://x.example.org:8443`"),
    _k("default_level", "optional", Choice(("optional", "required")), "level when no rule matches"),
    Section("rules", "ordered access rules, first match wins; every key a rule has must match"),
    _k("rules[].level", "", Choice(LEVELS),
       "`bypass` (no check), `optional` (2FA for enrolled users), `required` (must enroll), "
       "`deny` (403)", required=True),
    _k("rules[].host", (), Texts(), "exact or `*.example.com`, case-insensitive, without port"),
    _k("rules[].hosts", (), Texts(), "the same as `host`"),
    _k("rules[].path", (), _PATHS,
       "prefix of the normalized path (`/static/` covers everything below)"),
    _k("rules[].paths", (), _PATHS, "the same as `path`"),
    _k("rules[].path_regex", None, Regex(), "a regular expression searched in the normalized path"),
    _k("rules[].methods", (), Texts(), "HTTP methods (any case)"),
    _k("rules[].users", (), Texts(), "user ids"),
    _k("rules[].groups", (), Texts(), "groups (any of them)"),
    _k("rules[].step_up", 0, Duration(1),
       "a code must have been typed this recently (sudo mode)", shown="—"),
    _k("support_contact", "", Text(), "older spelling of `branding.support_contact`"),
    Section("branding", "how the pages look"),
    _k("branding.product_name", "", Text(), "the name in page titles, the header and \"Back to …\"",
       shown="`totp.issuer`"),
    _k("branding.logo_url", "", Text(),
       "logo: an `https://` URL (its origin is added to the CSP `img-src`) or a path on the "
       "app's host", shown="—"),
    _k("branding.logo_file", "", Text(),
       "logo: a PNG or SVG file (≤ 64 KiB) inlined as a `data:` URI; relative to the config "
       "file. One of `logo_url` and `logo_file`", shown="—"),
    _k("branding.accent_color", "", Text(),
       "`#rrggbb` for buttons and links; must reach 4.5:1 on the light background", shown="(blue)"),
    _k("branding.support_contact", "", Text(),
       "shown in the pages' help; an e-mail address or URL becomes a link"),
    Section("languages", "languages of the pages"),
    _k("languages.enabled", LANGUAGES, Texts(LANGUAGES),
       "languages the pages may answer in, chosen by `Accept-Language`"),
    _k("languages.default", SOURCE_LANGUAGE, Choice(LANGUAGES),
       "language when `Accept-Language` names none of them", shown="`en` (else the first enabled)"),
    Section("password_reset", "the password-reset gate (off while `paths` is empty)"),
    _k("password_reset.paths", (), Texts(), "the app's reset path(s), served through the sidecar "
       "(plain paths such as `/password/reset`)"),
    _k("password_reset.account_field", "email", Text(), "the reset form's field naming the account"),
    _k("password_reset.app_url", "", Url(),
       "where granted reset requests are forwarded (required with `paths`)", required=True),
    _k("password_reset.always_ask", False, Bool(),
       "ask every account for a code; reveals nothing about who has 2FA"),
    _k("password_reset.grant_seconds", 600, Duration(60), "how long a passed gate lasts (one reset)"),
    Section("remember_device", "\"Remember this device\""),
    _k("remember_device.enabled", False, Bool(), "offer \"Remember this device\" on the challenge"),
    _k("remember_device.max_days", 30, Int(1, 365), "how long a remembered device replaces the code"),
    _k("remember_device.cookie_name", "totp_sidecar_device", Text(_NAME, _NAME_MESSAGE),
       "name of the device cookie"),
    Section("notify", "notices on 2FA changes"),
    _k("notify.events", NOTICE_EVENTS, Texts(NOTICE_EVENTS), "which events send notices",
       shown="all eight"),
    Section("notify.webhook", "a signed webhook (optional)"),
    _k("notify.webhook.url", "", Url(), "where notices are POSTed", required=True),
    _k("notify.webhook.secret", "", Text(),
       f"signs the body (HMAC-SHA256), at least {MIN_KEY_LENGTH} characters (required)",
       env=ENV_WEBHOOK_SECRET, shown="—"),
    _k("notify.webhook.timeout_seconds", 5, Int(1, 60), "timeout of one delivery"),
    _k("notify.webhook.retries", 5, Int(0, 10), "retries, with exponential backoff from 0.5 s"),
    Section("notify.email", "e-mail to the user over SMTP (optional)"),
    _k("notify.email.host", "", Text(), "SMTP server", required=True),
    _k("notify.email.port", 587, Int(1, 65535), "SMTP port"),
    _k("notify.email.security", "starttls", Choice(("starttls", "tls", "none")), "transport security"),
    _k("notify.email.username", "", Text(), "SMTP user (optional)", shown="—"),
    _k("notify.email.password", "", Text(), "SMTP password (optional)", env=ENV_SMTP_PASSWORD,
       shown="—"),
    _k("notify.email.from", "", Text(), "sender address", required=True),
    _k("notify.email.retries", 3, Int(0, 10), "retries, with exponential backoff from 0.5 s"),

    Section("apps", "more apps behind this one sidecar, each chosen by the request's host (the "
            "top-level settings are the app named `default`)"),
    _k("apps[].name", "", Name(), "the app's name (`--app NAME` on the command line); unique, "
       "not `default`", required=True),
    _k("apps[].hosts", (), Hosts(),
       "the hosts it answers: exact names or `*.example.com` (an exact name beats a wildcard); "
       "no two apps may claim the same entry", required=True),
    _k("apps[].users_namespace", "", Name(),
       "apps with the same namespace share their users' 2FA (enrollment, recovery codes, "
       "lockouts, remembered devices); `default` is the top-level app's", shown="the app's name"),
)

#: What an entry of ``apps`` may set besides its own keys, each read exactly as the top-level
#: key (or section) of the same name; a section an app leaves out is the top level's (but
#: ``password_reset``: an app without its own has no gate).
APP_SETTINGS: tuple[str, ...] = ("primary", "totp.issuer", "branding", "rules", "default_level",
                                 "redirects", "password_reset")
KEYS: dict[str, Key] = {item.path: item for item in SCHEMA if isinstance(item, Key)}
SECTIONS: dict[str, Section] = {item.path: item for item in SCHEMA if isinstance(item, Section)}


def default(path: str) -> Any:
    """The default of the key at ``path`` (what the typed config holds when it is absent)."""
    return KEYS[path].default


def app_may_set(path: str) -> bool:
    """Whether an entry of ``apps`` may hold the top-level key or section at ``path``."""
    return any(path == setting or path.startswith((f"{setting}.", f"{setting}[]"))
               or setting.startswith(f"{path}.") for setting in APP_SETTINGS)


def names_under(section: str) -> set[str]:
    """The key and section names a mapping at ``section`` may hold ("" = the top level;
    ``apps[]`` an entry of ``apps``, ``apps[].primary`` its ``primary`` and so on)."""
    if section == "apps[]" or section.startswith("apps[]."):
        inner = section[len("apps[]."):]
        own = {item.name for item in SCHEMA if item.parent == section}
        return own | {name for name in names_under(inner)
                      if app_may_set(f"{inner}.{name}" if inner else name)}
    names: set[str] = set()
    for item in SCHEMA:
        if item.parent == section:
            names.add(item.name)
            if isinstance(item, Key) and item.env:
                names.add(f"{item.name}_file")
    return names


def every_path() -> set[str]:
    """Every key path a config file may hold, ``_file`` variants of secrets included."""
    paths = set(KEYS) | set(SECTIONS)
    paths |= {f"{key.path}_file" for key in KEYS.values() if key.env}
    return paths | {f"apps[].{path}" for path in paths if app_may_set(path)}


def shown_default(key: Key) -> str:
    """The default as the key table shows it."""
    if key.shown:
        return key.shown
    value = key.default
    if key.required or value is None:
        return "—"
    if isinstance(key.kind, Duration):
        return f"`{duration_text(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(map(str, value)) + "]`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def table_row(key: Key) -> str:
    name = f"`{key.path}`"
    if key.env:
        name += f" (or `{key.name}_file`, or env `{key.env}`)"
    meaning = key.doc
    described = key.kind.describe()
    if isinstance(key.kind, (Choice, Int, Duration)):
        meaning += f". {described[0].upper()}{described[1:]}"
    return f"| {name} | {shown_default(key)} | {meaning} |"


def markdown_table() -> str:
    """The README's key table: every key, its default and what it means."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [table_row(key) for key in KEYS.values()]
    shown = ", ".join(f"`apps[].{setting}" + (".…`" if any(k.startswith(f"{setting}.") for k in KEYS)
                                               else "`") for setting in APP_SETTINGS)
    lines.append(f"| {shown} | the top level's | for this app, as the top-level key of the same "
                 "name; a section an app leaves out is the top level's, except `password_reset` "
                 "(no gate unless the app gives its own: it forwards to that app's page) |")
    return "\n".join(lines)
