"""The Dockerfile, read statically (no Docker engine in the tests): non-root, a healthcheck
without curl, no secret baked in, only the package's files copied; its config is valid."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.config import ENV_ENCRYPTION_KEYS, ENV_HASH_KEY, ENV_SIGNING_KEYS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONFIG = ROOT / "deploy" / "docker" / "config.yaml"
IMAGE_CONFIG = "/etc/totp-sidecar/config.yaml"
VOLUME = "/var/lib/totp-sidecar"
COPIED = {"pyproject.toml", "README.md", "sidecar", "templates", "deploy/docker/config.yaml"}
Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        word, _, rest = pending.partition(" ")
        found.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return found


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([])
        assert result, f"{word} before the first FROM"
        result[-1].append((word, rest))
    return result


def final(word: str) -> list[str]:
    return [rest for w, rest in stages()[-1] if w == word]


def test_base_images() -> None:
    for stage in stages():
        assert re.fullmatch(r"python:3\.11-slim( AS \w+)?", stage[0][1]), stage[0][1]


def test_runs_as_a_non_root_user() -> None:
    users = final("USER")
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    # Nothing runs as root after USER is set (a later USER root would undo it).
    words = [w for w, _ in stages()[-1]]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY"))


def test_healthcheck_asks_healthz_with_python() -> None:
    (check,) = final("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    argv = json.loads(command)
    assert argv[0] == "python", "the slim image has no curl or wget"
    assert "http://127.0.0.1:9091/healthz" in argv[-1]
    assert "--timeout=" in options


def test_entrypoint_and_port() -> None:
    (entrypoint,) = final("ENTRYPOINT")
    assert json.loads(entrypoint) == ["totp-sidecar", "serve", "--config", IMAGE_CONFIG]
    assert not final("CMD")
    assert final("EXPOSE") == ["9091"]


def test_read_only_root_friendly() -> None:
    assert [json.loads(v) for v in final("VOLUME")] == [[VOLUME]]
    env = " ".join(final("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # no __pycache__ written at run time
    config = yaml.safe_load(CONFIG.read_text())
    assert Path(config["storage"]["sqlite"]["path"]).parent == Path(VOLUME)


def test_copies_only_what_is_needed() -> None:
    sources: set[str] = set()
    for stage in stages():
        for word, rest in stage:
            assert word != "ADD", "ADD fetches and unpacks: COPY only"
            if word == "COPY" and not rest.startswith("--from="):
                sources |= {s.rstrip("/").removeprefix("./") for s in rest.split()[:-1]}
    assert sources == COPIED
    assert (ROOT / "deploy/docker/config.yaml").is_file()
    # The build context holds nothing else: .dockerignore lets through these paths only.
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:].rstrip("/") for line in lines if line.startswith("!")} == COPIED


def test_no_secret_baked_in() -> None:
    text = DOCKERFILE.read_text()
    for name in (ENV_SIGNING_KEYS, ENV_HASH_KEY, ENV_ENCRYPTION_KEYS, "PASSWORD", "DSN"):
        assert name not in text.upper(), name
    for word in ("ENV", "ARG"):
        for rest in (r for stage in stages() for w, r in stage if w == word):
            assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD", rest, re.I), rest
    config = yaml.safe_load(CONFIG.read_text())
    assert "secrets" not in config
    assert "password" not in CONFIG.read_text().lower()


def test_image_config_is_valid(tmp_path: Path) -> None:
    """check-config on the image's config, the secrets in the environment as `docker run -e`."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.read_text().replace(VOLUME, str(tmp_path)))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOTP_SIDECAR_")}
    environ |= {name: secrets.token_urlsafe(48)
                for name in (ENV_SIGNING_KEYS, ENV_HASH_KEY, ENV_ENCRYPTION_KEYS)}
    done = subprocess.run([sys.executable, "-m", "sidecar", "check-config", str(config)],
                          capture_output=True, text=True, timeout=60, env=environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("OK")
    config_data = yaml.safe_load(CONFIG.read_text())
    assert config_data["server"]["host"] == "0.0.0.0"
    assert config_data["server"]["port"] == 9091


@pytest.mark.parametrize("name", ["tests", ".git", ".venv", "config.yaml", "sidecar.db"])
def test_dockerignore_keeps_out(name: str) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert f"!{name}" not in lines and f"!{name}/" not in lines
