"""Names shared by ``totp-sidecar serve --workers N`` and the worker processes it starts."""

CONFIG_ENV = "TOTP_SIDECAR_CONFIG"
