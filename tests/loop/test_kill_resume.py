"""The controller killed with SIGKILL at each phase, then resumed, ends exactly like an uninterrupted run."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from agent.journal import CRASH_ENV
from agent.rebuild import differing_files
from helpers.agent_cli import journal_events, run_agent

# (event after which the controller dies, occurrence): every step of the cycle, in the first and a later batch.
CRASH_POINTS = [
    ("run_started", 1),
    ("memory_read", 1),
    ("llm_response", 1),
    ("reply_accepted", 1),
    ("analysis_applied", 1),
    ("configs_applied", 2),
    ("slot_submitted", 1),
    ("slot_submitted", 6),
    ("slot_finished", 2),
    ("slot_finished", 8),
    ("memory_read", 2),
    ("llm_response", 3),
    ("reply_accepted", 3),
    ("analysis_applied", 3),
]

COMPARED_FILES = ("analysis.md", "memory.md", "ucb_scores.txt", "flyvis_tiny_00.yaml", "flyvis_tiny_03.yaml")


@pytest.mark.parametrize(("event", "nth"), CRASH_POINTS, ids=[f"{e}-{n}" for e, n in CRASH_POINTS])
@pytest.mark.fault("controller")
def test_killed_controller_resumes_to_the_uninterrupted_result(
    tmp_path: Path, reference_run: Path, event: str, nth: int
) -> None:
    run_dir = tmp_path / "run"
    killed = run_agent(run_dir, env={CRASH_ENV: f"{event}:{nth}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_agent(run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    for name in COMPARED_FILES:
        assert (run_dir / name).read_text() == (reference_run / name).read_text(), name

    events = journal_events(run_dir)
    finished = Counter(e["iteration"] for e in events if e["type"] == "slot_finished")
    assert sorted(finished) == list(range(1, 9)) and set(finished.values()) == {1}, "an iteration ran twice"
    trainings = {p.parent.name: len(p.read_text().split()) for p in (run_dir / "slots").glob("*/fake_slot_runs.log")}
    assert len(trainings) == 8 and set(trainings.values()) == {1}, f"a slot trained twice: {trainings}"
    calls = Counter(e["call_id"] for e in events if e["type"] == "llm_response")
    assert set(calls.values()) == {1}, f"an LLM call was repeated: {calls}"
    assert differing_files(run_dir) == [], "files on disk differ from what the journal implies"
    transcripts = sorted(p.name for p in (run_dir / "transcripts").glob("*.json"))
    assert len(transcripts) == len(calls), transcripts
