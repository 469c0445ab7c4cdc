"""Fixtures for the tests against real outside systems (marker ``real``), run by ``make test-integration``.

Each test gets its own fake Anthropic server on 127.0.0.1 (``fake_api``); the real ``claude`` CLI and the
real Slurm cluster (``SLURM_CONF``, started by tests/integration/run.sh) are used when present, and the
tests that need them skip with one line otherwise (in CI, tests/integration/require_real.py turns such
a skip into a failure).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from helpers.fake_anthropic import FakeAnthropic

FAKE_KEY = "fake-integration-key-0123456789"


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """A fresh fake Anthropic API; ANTHROPIC_BASE_URL and a dummy ANTHROPIC_API_KEY point every client at it."""
    with FakeAnthropic() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        yield server


@pytest.fixture(scope="session")
def claude_cli() -> str:
    """The real ``claude`` executable (Claude Code from npm), or a skip saying it is missing."""
    path = shutil.which("claude")
    if path is None:
        pytest.skip("real claude CLI: not on PATH (make test-integration installs @anthropic-ai/claude-code)")
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or "Claude Code" not in done.stdout:
        pytest.skip(f"real claude CLI: {path} --version answered {done.stdout.strip()[:80]!r}")
    return path


@pytest.fixture(scope="session")
def real_slurm() -> None:
    """A running Slurm cluster named by SLURM_CONF, or a skip saying why not."""
    from helpers.executor_harness import real_slurm_missing

    missing = real_slurm_missing()
    if missing:
        pytest.skip(missing)
