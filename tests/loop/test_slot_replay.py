"""A run records every slot (``RUN_DIR/slot_records``) and ``--executor replay`` serves those records back:
the replayed run, with the recorded transcripts and no prompt drift allowed, writes the same results and files
without training. The fast fake slot stands in for the trainer (tests/loop/test_e2e_replay.py replays a
recording of the real one)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.executors.records import RECORD_JSON, SlotRecord
from helpers.agent_cli import journal_events, run_agent

COMPARED = ("analysis.md", "memory.md", "ucb_scores.txt", "flyvis_tiny_00.yaml", "flyvis_tiny_03.yaml")


def _results(run_dir: Path) -> dict[int, dict]:
    return {e["iteration"]: e["result"] for e in journal_events(run_dir) if e["type"] == "slot_finished"}


def _replay(run_dir: Path, recorded: Path, *extra: str, iterations: int = 8) -> subprocess.CompletedProcess[str]:
    return run_agent(
        run_dir,
        "--llm", "replay", "--transcripts", str(recorded / "transcripts"),
        "--executor", "replay", "--slot-records", str(recorded / "slot_records"),
        *extra,
        iterations=iterations,
        fake_slot=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """START + 2 batches with the fake slot; iteration 6 is killed (SIGKILL)."""
    run_dir = tmp_path_factory.mktemp("recorded") / "run"
    proc = run_agent(run_dir, env={"FAKE_SLOT_CRASH": "6"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_every_finished_slot_is_recorded_with_its_config_outcome_and_files(recorded: Path) -> None:
    folders = sorted(p.name for p in (recorded / "slot_records").iterdir())
    assert folders == sorted(p.name for p in (recorded / "slots").iterdir())
    for folder in folders:
        record = SlotRecord.model_validate_json((recorded / "slot_records" / folder / RECORD_JSON).read_text())
        assert record.name == folder
        assert record.config is not None and record.config["simulation"]["seed"] == int(folder[5:8]) * 1000 + int(
            folder[-2:]
        )
        for name, meta in record.files.items():
            assert (recorded / "slot_records" / folder / name).read_bytes() == (
                recorded / "slots" / folder / name
            ).read_bytes()
            assert meta.size == (recorded / "slots" / folder / name).stat().st_size
    crashed = SlotRecord.model_validate_json((recorded / "slot_records" / "iter_006_slot_01" / RECORD_JSON).read_text())
    assert crashed.outcome.state == "failed" and "signal 9" in (crashed.outcome.reason or "")
    assert "metrics.json" not in crashed.files


def test_a_replayed_run_serves_the_records_and_equals_the_recorded_run(recorded: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _replay(run_dir, recorded)  # no --allow-prompt-drift: every prompt and image is the recorded one
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _results(run_dir) == _results(recorded)
    assert _results(run_dir)[6]["status"] == "failed"  # the recorded failure replays as a failure
    assert [n for n in COMPARED if (run_dir / n).read_text() != (recorded / n).read_text()] == []
    submitted = [e for e in journal_events(run_dir) if e["type"] == "slot_submitted"]
    assert {e["handle"]["backend"] for e in submitted} == {"replay"} and len(submitted) == 8
    assert not list((run_dir / "slots").glob("*/fake_slot_runs.log")), "a replayed slot was trained"
    log = (run_dir / "slots" / "iter_006_slot_01" / "slot.log").read_text()
    assert "replayed from" in log and "(failed)" in log


def test_a_slot_without_a_record_stops_the_replay_with_one_line(recorded: Path, tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    for name in ("iter_001_slot_00", "iter_002_slot_01", "iter_003_slot_02"):  # iteration 4 was not recorded
        (records / name).symlink_to(recorded / "slot_records" / name)
    run_dir = tmp_path / "run"
    proc = run_agent(
        run_dir, "--llm", "replay", "--transcripts", str(recorded / "transcripts"),
        "--executor", "replay", "--slot-records", str(records), fake_slot=False,
    )  # fmt: skip
    assert proc.returncode == 2
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{records / 'iter_004_slot_03' / RECORD_JSON}: no slot record of iter_004_slot_03" in line
    assert "3 recorded: iter_001_slot_00 .. iter_003_slot_02" in line
    finished = sorted(_results(run_dir))
    assert finished == []  # nothing of the batch was collected: it stopped at the submission


def test_a_config_that_differs_from_the_recorded_one_stops_the_replay_naming_the_key(
    recorded: Path, tmp_path: Path
) -> None:
    # --trainer-iterations is stated in the system text, so the recorded prompts drift too: allowed, the slot is the point
    proc = _replay(tmp_path / "run", recorded, "--trainer-iterations", "7", "--allow-prompt-drift", iterations=8)
    assert proc.returncode == 2
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert (
        "iter_001_slot_00 asks another config than the recorded one: training.n_iterations: asked 7, recorded None"
        in line
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "replay"], "--executor replay and --slot-records DIR go together"),
        (["--slot-records", "somewhere"], "--executor replay and --slot-records DIR go together"),
        (["--executor", "replay", "--slot-records", "/nonexistent/records"], "/nonexistent/records: no such folder"),
        (["--executor", "replay", "--slot-records", "."], "--slot-records .: holds no slot record (no */record.json)"),
    ],
)
def test_replay_options_are_checked_before_anything_is_written(tmp_path: Path, args: list[str], message: str) -> None:
    run_dir = tmp_path / "run"
    proc = run_agent(run_dir, *args, fake_slot=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not run_dir.exists()


def test_a_record_changed_after_it_was_written_is_refused(recorded: Path, tmp_path: Path) -> None:
    import shutil

    records = tmp_path / "records"
    shutil.copytree(recorded / "slot_records", records)
    metrics = records / "iter_002_slot_01" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["connectivity_R2"] = 0.999
    metrics.write_text(json.dumps(data))
    proc = run_agent(
        tmp_path / "run", "--llm", "replay", "--transcripts", str(recorded / "transcripts"),
        "--executor", "replay", "--slot-records", str(records), fake_slot=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"error: {metrics}: sha256 differs from record.json (the record was changed)" in proc.stderr


def test_a_controller_killed_mid_batch_and_resumed_records_every_slot(recorded: Path, tmp_path: Path) -> None:
    from agent.journal import CRASH_ENV

    run_dir = tmp_path / "run"
    killed = run_agent(run_dir, env={"FAKE_SLOT_CRASH": "6", CRASH_ENV: "slot_finished:2"})
    assert killed.returncode != 0
    resumed = run_agent(run_dir, "--resume", env={"FAKE_SLOT_CRASH": "6"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for iteration, result in _results(run_dir).items():
        folder = run_dir / "slot_records" / f"iter_{iteration:03d}_slot_{result['slot']:02d}"
        record = SlotRecord.model_validate_json((folder / RECORD_JSON).read_text())
        assert record.outcome.state == ("succeeded" if result["status"] == "completed" else "failed")
        if result["metrics"] is not None:
            assert json.loads((folder / "metrics.json").read_text()) == result["metrics"]
    assert _results(run_dir) == _results(recorded)
