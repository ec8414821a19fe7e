"""``python -m sidecar`` is the same as the ``totp-sidecar`` command."""

from sidecar.cli import main

raise SystemExit(main())
