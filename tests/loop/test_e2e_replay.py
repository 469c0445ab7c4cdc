"""End to end over the tiny config with the real trainer and a committed transcript.

PARALLEL START and 2 batches; the recorded first reply to batch 1 states a metric that was never
measured, so it is rejected and re-asked; iteration 6's trainer is killed (SIGKILL) and becomes a
FAILED slot while the run goes on. Regenerate the transcript with tests/loop/make_e2e_transcripts.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.rebuild import differing_files
from helpers.agent_cli import REPO, journal_events, run_agent

TRANSCRIPTS = REPO / "tests" / "loop" / "data" / "e2e_transcripts"
CRASH_WRAPPER = REPO / "tests" / "loop" / "crash_wrapper.py"


@pytest.fixture(scope="module")
def replayed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    proc = run_agent(
        run_dir,
        "--llm",
        "replay",
        "--transcripts",
        str(TRANSCRIPTS),
        "--allow-prompt-drift",
        "--slot-command",
        f"{sys.executable} {CRASH_WRAPPER}",
        fake_slot=False,
        env={"CRASH_ITERATIONS": "6"},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_replayed_run_completes_start_and_two_batches(replayed_run: Path) -> None:
    events = journal_events(replayed_run)
    finished = sorted(e["iteration"] for e in events if e["type"] == "slot_finished")
    assert finished == list(range(1, 9))
    analysis = (replayed_run / "analysis.md").read_text()
    assert [f"## Iter {i}:" in analysis for i in range(1, 9)] == [True] * 8
    for name in ("memory.md", "ucb_scores.txt", "exploration_tree/block_01.png"):
        assert (replayed_run / name).exists(), name


def test_hallucinated_metric_is_rejected_and_reasked(replayed_run: Path) -> None:
    events = journal_events(replayed_run)
    rejected = [e for e in events if e["type"] == "reply_rejected"]
    assert [e["call_id"] for e in rejected] == ["batch-001"]
    assert any("connectivity_R2=0.999" in err and "measured" in err for err in rejected[0]["errors"])
    accepted = [e["call_id"] for e in events if e["type"] == "reply_accepted"]
    assert accepted == ["start", "batch-001-reask-1", "batch-002"]


def test_killed_trainer_is_a_failed_slot_and_the_run_goes_on(replayed_run: Path) -> None:
    results = {e["iteration"]: e["result"] for e in journal_events(replayed_run) if e["type"] == "slot_finished"}
    assert results[6]["status"] == "failed"
    assert "signal 9" in results[6]["failure_reason"]
    assert all(results[i]["status"] == "completed" for i in (1, 2, 3, 4, 5, 7, 8))
    assert "## Iter 6: failed" in (replayed_run / "analysis.md").read_text()


def test_real_training_wrote_finite_metrics_and_phase_tagged_trajectories(replayed_run: Path) -> None:
    import math

    from experiment.records import read_r2_log

    for e in journal_events(replayed_run):
        if e["type"] == "slot_finished" and e["result"]["status"] == "completed":
            assert all(math.isfinite(v) for v in e["result"]["metrics"].values())
            slot = replayed_run / "slots" / f"iter_{e['iteration']:03d}_slot_{e['result']['slot']:02d}"
            phases = {row.phase for row in read_r2_log(slot / "connectivity_r2.log")}
            assert phases == {"W", "V_rest"}, phases


def test_replayed_run_files_match_its_journal(replayed_run: Path) -> None:
    assert differing_files(replayed_run) == []


def test_replayed_run_produces_the_report_and_status(replayed_run: Path) -> None:
    from agent.views.report import build_report
    from agent.views.status import load_run_view, render_status

    html = build_report(replayed_run).read_text()
    rows = [f'id="iter-{i}"' in html for i in range(1, 9)]
    assert rows == [True] * 8, "one batch-table row per iteration"
    assert html.count('<tr class="result failed"') == 1
    assert html.count("data:image/png;base64,") >= 4  # tree, trajectories, spread, metrics
    assert "C1" in html and "Variance" in html
    status = render_status(load_run_view(replayed_run))
    assert "finished" in status
