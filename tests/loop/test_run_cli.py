"""``python -m agent.run``: what it refuses, in one line, before any compute."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.loop.agent_cli import INSTRUCTIONS, REPO, journal_events, run_agent


def _agent(*args: str, env: dict[str, str] | None = None):
    import os
    import subprocess

    full_env = {**os.environ, **(env or {})}
    full_env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "agent.run", "--instructions", INSTRUCTIONS, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_anthropic_without_api_key_fails_before_any_compute(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _agent("--config", "configs/flyvis_tiny.yaml", "--run-dir", str(run_dir), "--llm", "anthropic")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0]
    assert not run_dir.exists()


def test_full_scale_config_on_a_cpu_machine_says_so_in_one_line(tmp_path: Path) -> None:
    proc = _agent("--run-dir", str(tmp_path / "run"), "--llm", "offline")  # default config: full scale
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "flyvis_62_1_gs_alternate.yaml" in lines[0] and "GPU" in lines[0] and "DAVIS" in lines[0]


def test_existing_run_needs_resume_or_fresh(reference_run: Path) -> None:
    proc = _agent("--config", "configs/flyvis_tiny.yaml", "--run-dir", str(reference_run), "--llm", "offline")
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and proc.stderr.count("\n") == 1


def test_resume_of_a_missing_run_is_refused(tmp_path: Path) -> None:
    proc = _agent("--run-dir", str(tmp_path / "nothing"), "--llm", "offline", "--resume")
    assert proc.returncode == 2
    assert "nothing to resume" in proc.stderr


@pytest.mark.fault("yaml")
def test_broken_config_yaml_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (REPO / "configs" / "flyvis_tiny.yaml").read_text().replace("n_alternations: 4", "n_alternation: 4")
    bad.write_text(text)
    proc = _agent("--config", str(bad), "--run-dir", str(tmp_path / "run"), "--llm", "offline")
    assert proc.returncode == 2
    assert f"{bad}: training.n_alternation: Extra inputs are not permitted" in proc.stderr


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_agent(run_dir, iterations=4).returncode == 0
    before = (run_dir / "analysis.md").read_text()
    n_events = len(journal_events(run_dir))
    again = run_agent(run_dir, "--resume", iterations=4)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "analysis.md").read_text() == before
    types = [e["type"] for e in journal_events(run_dir)[n_events:]]
    assert types == ["run_resumed"], types


def test_a_finished_run_cannot_be_extended_by_resume(reference_run: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    proc = run_agent(run_dir, "--resume", iterations=16)
    assert proc.returncode == 2
    assert "has 8 iterations and its last batch was already" in proc.stderr and proc.stderr.count("\n") == 1
