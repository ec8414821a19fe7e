"""``make demo`` installs only what the demo needs and says what it does; ``make test`` the rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target: str, tmp_path: Path) -> str:
    return subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def test_make_demo_installs_the_runtime_only_and_says_so(tmp_path: Path) -> None:
    plan = dry_run("demo", tmp_path)
    assert "pip install" in plan and "-e ." in plan and "[test]" not in plan
    assert "==> installing" in plan and "==> starting the demo" in plan


def test_make_test_installs_the_test_extras(tmp_path: Path) -> None:
    assert "-e '.[test]'" in dry_run("test", tmp_path)
