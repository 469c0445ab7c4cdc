"""The status command: the phase line for each journal state, slot progress, best node and cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.views.status import load_run_view, main, parse_progress, render_status, run_phase
from helpers.agent_cli import run_agent


def _phase(run, events: list) -> str:
    run.write(events)
    return run_phase(load_run_view(run.dir))


def test_phase_is_finished_after_run_finished(finished_run) -> None:
    assert run_phase(load_run_view(finished_run.dir)) == "finished"


def test_phase_is_training_while_slots_of_the_batch_are_missing(synth) -> None:
    phase = _phase(synth, synth.cut_at(synth.events(), "slot_finished", iteration=11))
    assert phase == "training batch 3 (iterations 9-12): 2/4 slots done"


def test_phase_is_waiting_for_analysis_when_all_slots_are_done(synth) -> None:
    phase = _phase(synth, synth.cut_at(synth.events(), "llm_response", batch=3))
    assert phase == "waiting for analysis of batch 3 (iterations 9-12)"


def test_phase_is_analysis_pending_after_rejected_replies(synth) -> None:
    events = synth.cut_at(synth.events(), "llm_response", batch=3)
    events += [("reply_rejected", {"batch": 3, "call_id": f"c{k}", "errors": ["bad"]}) for k in range(3)]
    events.append(("analysis_pending", {"batch": 3}))
    assert _phase(synth, events) == "analysis pending for batch 3 (3 rejected replies); fix, then resume"


def test_phase_is_paused_for_review_until_review_done(synth) -> None:
    events = [*synth.cut_at(synth.events(), "slot_submitted", iteration=9), ("review_pause", {"batch": 2})]
    assert _phase(synth, events) == "paused for review after batch 2"


def test_phase_returns_to_training_after_review_done(synth) -> None:
    events = [*synth.cut_at(synth.events(), "slot_submitted", iteration=9), ("review_pause", {"batch": 2})]
    events.append(("review_done", {"batch": 2}))
    assert _phase(synth, events).startswith("training batch 3 (iterations 9-12): 0/4")


def test_phase_waits_for_the_start_reply_on_a_fresh_run(synth) -> None:
    assert (
        _phase(synth, synth.cut_at(synth.events(), "llm_response", batch=0)) == "waiting for the PARALLEL START reply"
    )


def test_status_shows_running_slot_progress_and_finished_metrics(synth) -> None:
    synth.write(synth.cut_at(synth.events(), "slot_finished", iteration=11))
    synth.write_running(11, 2, 1200, 3000, 35)
    text = render_status(load_run_view(synth.dir))
    assert "slot 2 (iteration 11): running  train 40% (1200/3000, 35s, stage ETA 52s)" in text
    assert "slot 0 (iteration 9): done  conn_R2=0.910" in text
    assert "slot 3 (iteration 12): submitted" in text


def test_status_reports_best_node_cost_and_budget_left(finished_run) -> None:
    text = render_status(load_run_view(finished_run.dir))
    cost = 5 * finished_run.cost_per_call
    assert "best node: 12 conn_R2=0.9300" in text
    assert f"${cost:.2f} so far" in text
    assert f"budget ${finished_run.budget:.2f}, left ${finished_run.budget - cost:.2f}" in text


def test_parse_progress_takes_the_last_progress_line() -> None:
    text = "simulate: 5/10 (50%) 3s\ntrain: 100/400 (25%) 9s conn_R2=0.4\r train: 200/400 (50%) 18s\nsaving\n"
    p = parse_progress(text)
    assert p is not None and (p.stage, p.done, p.total, p.percent, p.elapsed_s) == ("train", 200, 400, 50, 18.0)
    assert p.eta_s == pytest.approx(18.0)
    assert parse_progress("no progress here\n") is None


def test_cli_prints_one_line_error_for_a_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run directory" in err


def test_cli_names_run_json_when_it_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.json").write_text("{not json", encoding="utf-8")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json" in err


# ---------------------------------------------------------------------------------------------- real journals
# The tiny config plans 8 iterations in batches of 4 with blocks of 12; --iterations must win over it.


def test_status_of_a_finished_run_counts_the_iterations_it_was_started_with(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_agent(run_dir, iterations=4)
    assert done.returncode == 0, done.stderr
    text = render_status(load_run_view(run_dir))
    assert "4/4 iterations done, block 1 of 1" in text
    assert "phase: finished" in text and "batch 1/1 (iterations 1-4)" in text


def test_status_of_a_paused_run_larger_than_its_config_counts_against_its_own_size(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = run_agent(run_dir, "--review", iterations=20)
    assert first.returncode == 3, first.stderr  # paused for review after batch 1
    for _ in range(3):
        paused = run_agent(run_dir, "--resume", "--review", iterations=20)
        assert paused.returncode == 3, paused.stderr
    text = render_status(load_run_view(run_dir))
    assert "16/20 iterations done, block 2 of 2" in text
    assert "phase: paused for review after batch 4" in text
    assert "batch 5/5 (iterations 17-20)" in text
    assert "16/8" not in text and "block 2 of 1" not in text


def test_under_the_vrest_profile_the_best_node_is_the_best_v_rest_run_meeting_the_conn_constraint(synth) -> None:
    events = synth.events()
    events[0] = ("run_started", {**events[0][1], "instructions": "instruction_flyvis_62_1_gs_vrest.md"})
    synth.write(events)
    view = load_run_view(synth.dir)
    assert view.profile is not None and view.profile.name == "gs_vrest"
    done = [r for r in synth.results if r.metrics is not None]
    keeps = [r for r in done if r.metrics.connectivity_R2 > 0.8]
    best = max(keeps, key=lambda r: (r.metrics.V_rest_R2, -r.iteration))
    assert best.iteration != max(done, key=lambda r: (r.conn_r2, -r.iteration)).iteration  # the two rules differ
    assert f"best node: {best.iteration} conn_R2=" in render_status(view)
