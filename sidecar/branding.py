"""Branding of the pages: product name, logo, accent colour — and the colour arithmetic
(WCAG 2.2 contrast) that keeps a configured accent readable in the light and dark scheme."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import urlsplit

#: Backgrounds the accent is drawn on (links on the card and the page; see style.css).
LIGHT_BACKGROUNDS = ("#ffffff", "#f4f5f7")
DARK_BACKGROUNDS = ("#181b21", "#0f1115")
DARK_TEXT = "#0f1115"  # the text on a light accent button (style.css's dark --bg)
LIGHT_TEXT = "#ffffff"
MIN_TEXT_CONTRAST = 4.5  # WCAG 1.4.3, normal text
MIN_UI_CONTRAST = 3.0  # WCAG 1.4.11, component borders and focus indicators
MAX_LOGO_BYTES = 64 * 1024
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}"
                   r"[A-Za-z0-9])?)*$")
_SAFE_URL = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+$")  # no quotes, spaces, < >


def relative_luminance(color: str) -> float:
    channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    a, b = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def text_on(background: str) -> str:
    """Black-ish or white text, whichever reads better on ``background``."""
    return LIGHT_TEXT if contrast(background, LIGHT_TEXT) >= contrast(background, DARK_TEXT) \
        else DARK_TEXT


def mix(color: str, other: str, amount: float) -> str:
    """``color`` moved ``amount`` (0..1) of the way to ``other``."""
    out = []
    for i in (1, 3, 5):
        a, b = int(color[i:i + 2], 16), int(other[i:i + 2], 16)
        out.append(round(a + (b - a) * amount))
    return "#" + "".join(f"{c:02x}" for c in out)


def for_dark_scheme(accent: str) -> str:
    """The accent lightened just enough to read as link text on the dark backgrounds."""
    for step in range(21):
        candidate = mix(accent, "#ffffff", step / 20)
        if all(contrast(candidate, bg) >= MIN_TEXT_CONTRAST + 0.3 for bg in DARK_BACKGROUNDS):
            return candidate
    return "#ffffff"


def accent_problem(value: str) -> str | None:
    """Why ``value`` cannot be the accent colour, or None."""
    if not _HEX.match(value):
        return "must be a colour written #rrggbb (for example #1d4ed8)"
    worst = min(contrast(value.lower(), bg) for bg in LIGHT_BACKGROUNDS)
    if worst < MIN_TEXT_CONTRAST:
        return (f"contrast against the light page background is {worst:.1f}:1; links and buttons "
                f"need at least {MIN_TEXT_CONTRAST}:1 (WCAG 2.2 AA): choose a darker colour")
    return None


def brand_css(accent: str) -> str:
    """The generated stylesheet served at ``<prefix>/static/brand.css`` (after style.css)."""
    accent = accent.lower()
    dark = for_dark_scheme(accent)
    return (
        "/* generated from branding.accent_color */\n"
        f":root {{ --accent: {accent}; --accent-text: {text_on(accent)}; }}\n"
        "@media (prefers-color-scheme: dark) {\n"
        f"  :root {{ --accent: {dark}; --accent-text: {text_on(dark)}; }}\n"
        "}\n"
        "@media print { :root { --accent: #000000; --accent-text: #ffffff; } }\n"
    )


def logo_url_problem(value: str) -> str | None:
    """A logo URL is an absolute https URL or a path on the app's host."""
    if not value or not _SAFE_URL.match(value):
        return "must be an https:// URL or a path such as /static/logo.svg (no spaces or quotes)"
    if value.startswith("/"):
        return "must be a path (one leading slash) or an https:// URL" if value.startswith("//") \
            else None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https" or not parts.hostname or not _HOST.match(parts.hostname):
        return "must be an https:// URL or a path such as /static/logo.svg"
    if parts.username or parts.password:
        return "must not carry a user name or password"
    return None


def image_source(logo_url: str) -> str:
    """The CSP source that allows ``logo_url`` (its origin), or "" for a path on this host."""
    if not logo_url or logo_url.startswith("/"):
        return ""
    parts = urlsplit(logo_url)
    host = parts.hostname or ""
    return f"https://{host}" + (f":{parts.port}" if parts.port else "")


def logo_data_uri(path: Path) -> str:
    """A PNG or SVG file as a ``data:`` URI; ValueError saying why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_LOGO_BYTES:
        raise ValueError(f"is {len(data)} bytes; a logo may have at most {MAX_LOGO_BYTES} "
                         "(it is sent inline with every page)")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        kind = "image/png"
    elif path.suffix.lower() == ".svg" and b"<svg" in data[:4096]:
        kind = "image/svg+xml"
    else:
        raise ValueError("must be a PNG or an SVG file")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def support_link(contact: str) -> str:
    """A link for the support contact: mailto: for an e-mail address, the URL itself for a
    web address, "" for anything else (shown as text)."""
    text = contact.strip()
    if re.fullmatch(r"[^@\s<>\"']+@[^@\s<>\"']+\.[A-Za-z]{2,}", text):
        return "mailto:" + text
    if re.fullmatch(r"https?://[^\s<>\"']+", text):
        return text
    return ""
