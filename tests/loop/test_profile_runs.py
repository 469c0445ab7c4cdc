"""The gs and gs_vrest explorations end to end: ``python -m agent.run`` with the offline and Optuna policies on
the tiny config (standard trainer, one baseline batch) and the fast fake slot, then the same run replayed from
its transcripts with ``--llm replay`` gives the same analysis.md and memory.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.agent_cli import FAKE_SLOT, REPO, TINY, journal_events

EXPLORATIONS = {
    "gs": "instruction_flyvis_62_1_gs.md",
    "gs_vrest": "instruction_flyvis_62_1_gs_vrest.md",
}


def _tiny_standard(tmp_path: Path) -> Path:
    """The tiny config with the standard trainer and one baseline batch (what the two profiles expect)."""
    text = TINY.read_text(encoding="utf-8")
    assert "alternate_training: true" in text and "baseline_batches: 3" in text
    text = text.replace("alternate_training: true", "alternate_training: false")
    path = tmp_path / "flyvis_tiny_standard.yaml"
    path.write_text(text.replace("baseline_batches: 3", "baseline_batches: 1"), encoding="utf-8")
    return path


def _agent(instructions: str, config: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "agent.run", "--instructions", instructions, "--config", str(config)]
    cmd += ["--run-dir", str(run_dir), "--iterations", "8", "--slot-command", f"{sys.executable} {FAKE_SLOT}", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("policy", ["offline", "optuna"])
@pytest.mark.parametrize("exploration", sorted(EXPLORATIONS))
def test_the_exploration_runs_and_replays(tmp_path: Path, exploration: str, policy: str) -> None:
    instructions, config = EXPLORATIONS[exploration], _tiny_standard(tmp_path)
    run = tmp_path / "run"
    proc = _agent(instructions, config, run, "--llm", policy)
    assert proc.returncode == 0, proc.stderr
    events = journal_events(run)
    assert events[-1]["type"] == "run_finished"
    assert not [e for e in events if e["type"] == "reply_rejected"]
    analysis = (run / "analysis.md").read_text(encoding="utf-8")
    words = ("V_rest success", "V_rest partial", "V_rest failed") if exploration == "gs_vrest" else ("converged",)
    if exploration == "gs_vrest":
        assert any(f": {w}" in analysis for w in words), analysis[:2000]
    system = next((run / "transcripts" / "system").glob("*.txt")).read_text(encoding="utf-8")
    assert "This run: 8 iterations in 2 batches of 4 slots" in system
    assert f"profile {exploration}" in system or exploration == "gs"

    replayed = tmp_path / "replayed"
    proc = _agent(instructions, config, replayed, "--llm", "replay", "--transcripts", str(run / "transcripts"))
    assert proc.returncode == 0, proc.stderr
    for name in ("analysis.md", "memory.md"):
        want = (run / name).read_text(encoding="utf-8").replace(str(run), "RUN")
        got = (replayed / name).read_text(encoding="utf-8").replace(str(replayed), "RUN")
        assert got == want, name
