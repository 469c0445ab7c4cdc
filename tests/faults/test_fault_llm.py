"""LLM faults at the controller: a failed call stops the run resumably; bad replies are re-asked or pause it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import run as agent_run
from agent.events import ReplyRejected, RunFinished
from agent.journal import Journal
from agent.rebuild import differing_files
from helpers.fault_run import ScriptedPolicy, agent_argv, assert_matches_clean_run, invoke

pytestmark = pytest.mark.fault("llm")

PROSE = "Batch 1 looked fine overall. I would keep the defaults and try more alternations later."


def test_empty_llm_reply_stops_the_run_with_exit_4_and_one_line(paused_run) -> None:
    stopped = paused_run.stopped
    assert stopped.code == agent_run.EXIT_LLM, stopped.err
    line = stopped.last_err_line()
    assert line.startswith("LLM call failed: offline batch-001:") and "empty reply" in line, stopped.err
    assert "--resume" in line


def test_run_stopped_by_an_llm_failure_resumes_to_the_uninterrupted_result(
    paused_run, clean_run: Path, tmp_path: Path
) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    resumed = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert resumed.code == 0, resumed.err
    assert_matches_clean_run(run_dir, clean_run)


def test_reply_rejected_at_every_attempt_pauses_with_exit_3_then_resumes(
    paused_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    prose = {call: PROSE for call in ("batch-001", "batch-001-reask-1", "batch-001-reask-2")}
    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy(prose))
    paused = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert paused.code == agent_run.EXIT_PAUSED, paused.err
    assert "rejected 3 times" in paused.last_err_line() and "--resume" in paused.last_err_line(), paused.err
    rejected = Journal(run_dir).of_type(ReplyRejected)
    assert [e.call_id for e in rejected] == list(prose)
    assert any("<entries>: missing" in err for err in rejected[0].errors)
    assert differing_files(run_dir) == []

    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy())
    resumed = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert resumed.code == 0, resumed.err
    assert Journal(run_dir).has(RunFinished)
    assert differing_files(run_dir) == []
    # the resumed run re-asks with the errors of the last rejected reply, not the original prompt
    reask = next((run_dir / "transcripts").glob("*_batch-001-reask-3.json")).read_text()
    assert "missing" in reask and "Batch 1 looked fine overall" in reask
