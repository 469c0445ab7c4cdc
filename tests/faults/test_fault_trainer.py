"""Trainer faults: every broken slot ends FAILED with a one-line reason, and the run goes on.

One run of 2 batches: batch 1 has a slot killed by SIGKILL (exit 137), one hung past the time limit,
one without a metrics file and one with a truncated metrics file; batch 2 a NaN loss, NaN metrics, a
slot over the protocol's time limit and a healthy slot.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from agent.events import RunFinished, SlotFinished
from agent.journal import Journal
from agent.rebuild import differing_files
from helpers.fault_run import agent_argv, invoke, write_tiny_config

pytestmark = pytest.mark.fault("trainer")

MODES = {
    1: "exit137",
    2: "hang",
    3: "no_metrics",
    4: "corrupt_metrics",
    5: "nan_loss",
    6: "nan_metrics",
    7: "over_time",
}
SLOT_TIMEOUT_MIN = 0.1  # 6 s: far above a healthy fault slot (< 1 s), far below the hung one (60 s)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("trainer_faults")
    config = write_tiny_config(root, dispatch={"max_parallel": 4, "slot_timeout_min": SLOT_TIMEOUT_MIN})
    run_dir = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAULT_SLOT_MODES", ",".join(f"{it}:{mode}" for it, mode in MODES.items()))
        done = invoke(agent_argv(run_dir, config, iterations=8))
    journal = Journal(run_dir)
    results = {e.iteration: e.result for e in journal.of_type(SlotFinished)}
    return SimpleNamespace(run_dir=run_dir, done=done, journal=journal, results=results)


def failure(run: SimpleNamespace, iteration: int) -> str:
    """The one-line reason of a FAILED slot (the test fails if the slot did not fail)."""
    result = run.results[iteration]
    assert result.status == "failed" and result.metrics is None, result
    reason = result.failure_reason or ""
    assert reason and "\n" not in reason, repr(reason)
    return reason


def test_run_with_failing_slots_goes_on_to_the_end(faulty_run) -> None:
    assert faulty_run.done.code == 0, faulty_run.done.err
    assert sorted(faulty_run.results) == list(range(1, 9))
    assert faulty_run.journal.has(RunFinished)
    assert differing_files(faulty_run.run_dir) == []


def test_slot_killed_with_exit_137_is_failed_as_killed(faulty_run) -> None:
    reason = failure(faulty_run, 1)
    assert reason.startswith("killed (signal 9") and "log: fault slot: seed 1000" in reason, reason


def test_slot_past_its_time_limit_is_killed_and_failed(faulty_run) -> None:
    assert failure(faulty_run, 2) == f"timed out after {SLOT_TIMEOUT_MIN:g} min"


def test_slot_without_a_metrics_file_is_failed_naming_the_file(faulty_run) -> None:
    reason = failure(faulty_run, 3)
    assert reason.endswith("iter_003_slot_02/metrics.json: missing metrics file"), reason


def test_slot_with_a_truncated_metrics_file_is_failed_naming_the_file(faulty_run) -> None:
    reason = failure(faulty_run, 4)
    assert "iter_004_slot_03/metrics.json: unreadable metrics file" in reason, reason


def test_slot_with_a_nan_loss_is_failed_with_the_trainers_reason(faulty_run) -> None:
    assert failure(faulty_run, 5) == "NaN loss at iteration 17"


def test_slot_with_nan_metrics_is_failed_naming_the_field(faulty_run) -> None:
    reason = failure(faulty_run, 6)
    assert "iter_006_slot_01/metrics.json: tau_R2:" in reason and "finite" in reason, reason


def test_slot_over_the_protocol_time_limit_completes_flagged(faulty_run) -> None:
    result = faulty_run.results[7]
    assert result.status == "completed" and result.over_time_limit


def test_failures_reach_the_next_prompt_with_their_reasons(faulty_run) -> None:
    transcript = next((faulty_run.run_dir / "transcripts").glob("*_batch-001.json"))
    prompt = json.loads(transcript.read_text())["prompt"]
    for iteration in (1, 2, 3, 4):
        assert f"(iteration {iteration}) [FAILED]" in prompt
    assert faulty_run.results[2].failure_reason in prompt
