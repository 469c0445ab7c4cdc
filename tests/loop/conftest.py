"""Fixtures of the controller-level tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.agent_cli import run_agent


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of START + 2 batches with the fake slot: the files every resumed run must equal."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = run_agent(run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir
