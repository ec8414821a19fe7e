"""totp-sidecar: TOTP two-factor authentication for any web app, beside its reverse proxy."""

__version__ = "0.1.0"
