"""Human review between batches, user_input.md, and Ctrl-C cancelling the run's jobs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.journal import Journal
from agent.run_state import RunState
from helpers.agent_cli import REPO, agent_command, journal_events, run_agent
from helpers.fault_run import agent_argv, invoke, write_tiny_config

HANG_S = 1200  # bounds a hang only; the Ctrl-C test waits on journal events, not on time


def test_review_without_a_terminal_pauses_resumably_after_each_batch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = run_agent(run_dir, "--review")
    assert first.returncode == 3, first.stderr
    assert "paused for review after batch 1" in first.stderr
    assert "Batch 1 summary" in first.stderr
    events = journal_events(run_dir)
    assert [e["iteration"] for e in events if e["type"] == "slot_finished"] == [1, 2, 3, 4]

    second = run_agent(run_dir, "--resume")
    assert second.returncode == 0, second.stderr
    events = journal_events(run_dir)
    assert sorted(e["iteration"] for e in events if e["type"] == "slot_finished") == list(range(1, 9))


def test_user_input_reaches_the_next_prompt_and_is_acknowledged_in_memory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_agent(run_dir, "--review").returncode == 3
    note = "Please favour n_alternations 8 in the next block."
    (run_dir / "user_input.md").write_text(note + "\n")
    assert run_agent(run_dir, "--resume").returncode == 0

    # the pause came after batch 1's analysis: the next prompt is the analysis of batch 2
    prompt = next(e for e in journal_events(run_dir) if e["type"] == "memory_read" and e["batch"] == 2)
    assert prompt["user_input"].strip() == note
    transcripts = sorted((run_dir / "transcripts").glob("*batch-002.json"))
    assert note in transcripts[0].read_text()  # the prompt text the model saw
    memory = (run_dir / "memory.md").read_text()
    assert "### User Input" in memory and note in memory
    assert not (run_dir / "user_input.md").exists()
    assert (run_dir / "user_inputs" / "after_batch_002.md").read_text().strip() == note


def test_ctrl_c_cancels_the_running_slot_jobs(tmp_path: Path) -> None:
    """SIGINT once the batch's 4 slots are journaled as submitted (their pid files exist by then).

    The waits are conditions, bounded only against a hang: on 2 cores with two CPU burners beside it and the
    machine already loaded (load average 10-17) the controller took over 60 s to submit its first slot, so a
    fixed 60 s wait sent SIGINT before any submission. The fake slots sleep far longer than the bound, so none
    can succeed before the cancel; a failing test kills them itself.
    """
    run_dir = tmp_path / "run"
    cmd = agent_command(run_dir, iterations=4)
    env = {**os.environ, "FAKE_SLOT_SLEEP": str(2 * HANG_S)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = run_dir / "journal.jsonl"
    try:
        deadline = time.monotonic() + HANG_S
        while _submitted(journal) < 4:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the controller did not submit the batch's 4 slots"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        proc.kill()
        _kill_slots(run_dir)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    events = journal_events(run_dir)
    assert events[-1]["type"] == "interrupted" and events[-1]["cancelled_jobs"] == 4
    for slot in sorted((run_dir / "slots").iterdir()):
        status = (slot / "status.json").read_text()
        assert '"succeeded"' not in status, f"{slot.name} kept running to completion"


def _submitted(journal: Path) -> int:
    """slot_submitted events among the journal's complete lines.

    A line still being written is not counted: a SIGINT sent on its first bytes interrupts the append, the torn
    line is dropped, and that slot's job is never journaled (seen under load: 3 of 4 cancelled).
    """
    text = journal.read_text() if journal.exists() else ""
    lines = text[: text.rfind("\n") + 1].splitlines()
    return sum(json.loads(line)["type"] == "slot_submitted" for line in lines if line.strip())


def _kill_slots(run_dir: Path) -> None:
    """SIGKILL the process group of every slot a run launched (cleanup after a failed test)."""
    for record in run_dir.glob("slots/*/slot.pid.json"):
        with contextlib.suppress(OSError, ValueError):
            os.killpg(json.loads(record.read_text())["pid"], signal.SIGKILL)


def test_q_at_the_terminal_review_prompt_leaves_the_run_paused_in_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt="": "q")
    run_dir = tmp_path / "run"
    stopped = invoke(agent_argv(run_dir, write_tiny_config(tmp_path), "--review", iterations=8))
    assert stopped.code == 3, stopped.err
    state = RunState.from_events(Journal(run_dir).events, n_slots=4)
    assert (state.phase, state.paused_batch) == ("review_pause", 1)
