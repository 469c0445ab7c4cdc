"""Fixtures of the fault tests: an uninterrupted tiny run, and a run stopped by a failed LLM call.

Both run the controller in-process (``agent.run.main``) with the offline policy and the fault slot;
tests copy ``paused_run`` before resuming it, so each fault starts from the same stopped state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent import run as agent_run
from helpers.fault_run import Invocation, ScriptedPolicy, agent_argv, invoke, write_tiny_config


class StoppedRun:
    """A run directory and the invocation that stopped it."""

    def __init__(self, run_dir: Path, config: Path, stopped: Invocation) -> None:
        self.run_dir, self.config, self.stopped = run_dir, config, stopped

    def copy_to(self, folder: Path) -> Path:
        """A private copy of the run directory to resume (the original stays as it stopped)."""
        target = folder / "run"
        shutil.copytree(self.run_dir, target, ignore=shutil.ignore_patterns(".controller.lock"))
        return target


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config with a fast local executor (all 4 slots at once)."""
    return write_tiny_config(tmp_path_factory.mktemp("config"), dispatch={"max_parallel": 4})


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> Path:
    """START + batch 1 without any fault: the files a resumed run must end with."""
    run_dir = tmp_path_factory.mktemp("clean") / "run"
    done = invoke(agent_argv(run_dir, tiny_config))
    assert done.code == 0, done.err
    return run_dir


@pytest.fixture(scope="session")
def paused_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> StoppedRun:
    """START + batch 1 trained, then the batch-1 analysis call returned an empty reply (exit 4)."""
    run_dir = tmp_path_factory.mktemp("paused") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(agent_run, "offline_policy", ScriptedPolicy({"batch-001": ""}))
        stopped = invoke(agent_argv(run_dir, tiny_config))
    return StoppedRun(run_dir, tiny_config, stopped)
