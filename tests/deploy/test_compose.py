"""envoy/docker-compose.yaml is a valid Compose file for Debian's docker-compose (1.29).

No container runtime works on the project's machines, so the file is validated, not run:
`docker-compose config -q` parses it, resolves anchors, merges and relative paths, and checks
it against the Compose schema, as `docker-compose up` would before starting anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "envoy" / "docker-compose.yaml"
DOCKER_COMPOSE = shutil.which("docker-compose")

if DOCKER_COMPOSE is None:  # not a skip: a skipped test would hide a broken setup
    pytest.fail("docker-compose not installed: `make setup` installs it (Debian package docker-compose)", pytrace=False)


def compose_config(compose_file: Path) -> subprocess.CompletedProcess:
    # Only the file decides: no COMPOSE_* settings from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run([DOCKER_COMPOSE, "-f", str(compose_file), "config", "-q"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid():
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_check_catches_a_typo(tmp_path):
    (tmp_path / "envoy").mkdir()
    copy = tmp_path / "envoy" / "docker-compose.yaml"
    text = COMPOSE_FILE.read_text()
    assert "    image: envoyproxy/envoy:" in text
    copy.write_text(text.replace("    image: envoyproxy/envoy:", "    imgae: envoyproxy/envoy:", 1))
    result = compose_config(copy)
    assert result.returncode != 0
    assert "imgae" in result.stdout + result.stderr
