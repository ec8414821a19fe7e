"""The pure core: request facts in, decisions and signed values out.

Nothing here does I/O or knows a framework: it imports the standard library, pyotp,
itsdangerous, ``sidecar.errors`` and itself only (``tests/unit/test_layout.py`` holds it to
that). Time comes in as an argument or an injected clock.
"""
