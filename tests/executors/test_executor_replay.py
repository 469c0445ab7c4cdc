"""The slot records and the replay executor: what is recorded, what is served, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.executors import JobHandle, JobOutcome, SlotJob
from agent.executors.local import LocalExecutor
from agent.executors.records import (
    RECORD_JSON,
    SlotRecordError,
    export_slot_records,
    read_slot_record,
    write_slot_record,
)
from agent.executors.replay import ReplayExecutor
from experiment.records import METRICS_JSON, STATUS_JSON, Metrics, SlotStatus, write_metrics, write_status
from experiment.yaml_io import roundtrip_dump, roundtrip_load
from helpers.agent_cli import TINY
from helpers.executor_harness import fast_settings, make_job

METRICS = Metrics(
    connectivity_R2=0.123456789,
    tau_R2=0.5,
    V_rest_R2=0.25,
    cluster_accuracy=0.75,
    test_R2=0.9,
    test_pearson=0.95,
    training_time_min=0.5,
)


def _config(folder: Path, n_alternations: int = 4) -> Path:
    data = roundtrip_load(TINY.read_text(encoding="utf-8"), str(TINY))
    data["training"]["n_alternations"] = n_alternations
    path = folder / "iter_001_slot_00.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(roundtrip_dump(data), encoding="utf-8")
    return path


def _slot(tmp_path: Path, *, iterations: int | None = None, name: str = "iter_001_slot_00") -> SlotJob:
    """A finished slot folder (status, metrics, R2 log, an image) and the job that would have written it."""
    out = tmp_path / "slots" / name
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out, METRICS)
    (out / "connectivity_r2.log").write_text("epoch,iteration,connectivity_r2,phase\n0,100,0.100000,W\n")
    (out / "activity.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 8)
    (out / "model.pt").write_bytes(b"weights: never recorded")
    write_status(out, SlotStatus(state="succeeded", exit_code=0, host="recorder"))
    command = ["python", "-m", "trainer.slot", "--config", str(_config(tmp_path / "configs")), "--out", str(out)]
    if iterations is not None:
        command += ["--iterations", str(iterations)]
    return SlotJob(name=name, command=command, out_dir=out, cwd=tmp_path)


def _replay_job(job: SlotJob, tmp_path: Path) -> SlotJob:
    """The same job in another run directory (the replayed run)."""
    return job.model_copy(update={"out_dir": tmp_path / "replayed" / job.name})


SUCCEEDED = JobOutcome(state="succeeded", exit_code=0)


def test_a_record_holds_what_the_controller_reads_and_never_the_model(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    folder = write_slot_record(tmp_path / "records", job, SUCCEEDED)
    record = read_slot_record(tmp_path / "records", job.name)
    assert sorted(record.files) == sorted(
        ["status.json", "metrics.json", "metrics.txt", "connectivity_r2.log", "activity.png"]
    )
    assert not (folder / "model.pt").exists()
    assert record.outcome == SUCCEEDED
    assert record.config is not None and record.config["training"]["n_alternations"] == 4
    assert set(record.config) == {"simulation", "graph_model", "training"}


def test_replay_serves_the_recorded_files_and_outcome_without_running_anything(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    write_slot_record(tmp_path / "records", job, SUCCEEDED)
    replay = ReplayExecutor(tmp_path / "records")
    asked = _replay_job(job, tmp_path)
    handle = replay.submit(asked)
    assert handle.backend == "replay" and not replay.is_active(handle)
    assert replay.wait([handle], timeout_s=5) == {job.name: SUCCEEDED}
    for name in ("status.json", "metrics.json", "metrics.txt", "connectivity_r2.log", "activity.png"):
        assert (asked.out_dir / name).read_bytes() == (job.out_dir / name).read_bytes(), name
    assert json.loads((asked.out_dir / METRICS_JSON).read_text())["connectivity_R2"] == 0.123456789
    assert not (asked.out_dir / "model.pt").exists()


def test_a_recorded_failure_replays_as_the_same_failure(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    (job.out_dir / STATUS_JSON).unlink()
    (job.out_dir / METRICS_JSON).unlink()
    killed = JobOutcome(state="failed", reason="killed (signal 9, out of memory?) without a status file", exit_code=137)
    write_slot_record(tmp_path / "records", job, killed)
    replay = ReplayExecutor(tmp_path / "records")
    asked = _replay_job(job, tmp_path)
    (asked.out_dir).mkdir(parents=True)
    write_metrics(asked.out_dir, METRICS)  # left by an earlier attempt: must not be read as this one's
    handle = replay.submit(asked)
    assert replay.wait([handle], timeout_s=5) == {job.name: killed}
    assert not (asked.out_dir / METRICS_JSON).exists() and not (asked.out_dir / STATUS_JSON).exists()


def test_a_missing_record_is_one_line_naming_it(tmp_path: Path) -> None:
    write_slot_record(tmp_path / "records", _slot(tmp_path), SUCCEEDED)
    replay = ReplayExecutor(tmp_path / "records")
    other = _slot(tmp_path, name="iter_002_slot_01")
    with pytest.raises(SlotRecordError) as err:
        replay.submit(_replay_job(other, tmp_path))
    path = tmp_path / "records" / "iter_002_slot_01" / RECORD_JSON
    assert (
        str(err.value)
        == f"{path}: no slot record of iter_002_slot_01 (1 recorded: iter_001_slot_00 .. iter_001_slot_00)"
    )


def test_a_config_other_than_the_recorded_one_is_refused_naming_the_key(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    write_slot_record(tmp_path / "records", job, SUCCEEDED)
    _config(tmp_path / "configs", n_alternations=6)  # the same file now asks for another config
    with pytest.raises(SlotRecordError) as err:
        ReplayExecutor(tmp_path / "records").submit(_replay_job(job, tmp_path))
    assert str(err.value).endswith(
        "iter_001_slot_00 asks another config than the recorded one: training.n_alternations: asked 6, recorded 4"
    )
    assert "\n" not in str(err.value)


def test_the_iterations_override_is_part_of_the_config(tmp_path: Path) -> None:
    job = _slot(tmp_path, iterations=20)
    write_slot_record(tmp_path / "records", job, SUCCEEDED)
    replay = ReplayExecutor(tmp_path / "records")
    replay.submit(_replay_job(job, tmp_path))  # the same override: served
    shorter = job.model_copy(update={"command": [*job.command[:-1], "30"]})
    with pytest.raises(SlotRecordError, match=r"training\.n_iterations: asked 30, recorded 20"):
        replay.submit(_replay_job(shorter, tmp_path))


def test_comments_and_the_claude_and_dispatch_blocks_are_not_the_trained_config(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    write_slot_record(tmp_path / "records", job, SUCCEEDED)
    config = Path(job.command[job.command.index("--config") + 1])
    data = roundtrip_load(config.read_text(encoding="utf-8"), str(config))
    data["claude"]["ucb_c"] = 3.0
    data["dispatch"]["executor"] = "slurm"
    config.write_text("# a new comment\n" + roundtrip_dump(data), encoding="utf-8")
    handle = ReplayExecutor(tmp_path / "records").submit(_replay_job(job, tmp_path))
    assert handle.name == job.name


def test_a_changed_record_file_is_refused(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    folder = write_slot_record(tmp_path / "records", job, SUCCEEDED)
    (folder / METRICS_JSON).unlink()  # a hard link: rewrite it as a new file
    (folder / METRICS_JSON).write_text('{"connectivity_R2": 0.99}')
    with pytest.raises(SlotRecordError) as err:
        ReplayExecutor(tmp_path / "records").submit(_replay_job(job, tmp_path))
    assert str(err.value) == f"{folder / METRICS_JSON}: sha256 differs from record.json (the record was changed)"


def test_a_record_json_with_a_bad_field_is_one_line_naming_it(tmp_path: Path) -> None:
    folder = write_slot_record(tmp_path / "records", _slot(tmp_path), SUCCEEDED)
    data = json.loads((folder / RECORD_JSON).read_text())
    data["outcome"]["state"] = "finished"
    (folder / RECORD_JSON).write_text(json.dumps(data))
    with pytest.raises(SlotRecordError) as err:
        read_slot_record(tmp_path / "records", "iter_001_slot_00")
    assert str(err.value).startswith(f"{folder / RECORD_JSON}: outcome.state: ")


def test_a_restarted_controller_reattaches_to_a_recorded_job_and_not_to_an_unrecorded_one(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    write_slot_record(tmp_path / "records", job, SUCCEEDED)
    asked = _replay_job(job, tmp_path)
    stored = ReplayExecutor(tmp_path / "records").submit(asked).model_dump_json()
    (asked.out_dir / METRICS_JSON).unlink()  # the controller died before the files were all served
    second = ReplayExecutor(tmp_path / "records")
    handle = JobHandle.model_validate_json(stored)
    assert second.reattach(handle)
    assert second.outcome(handle) == SUCCEEDED
    assert (asked.out_dir / METRICS_JSON).read_bytes() == (job.out_dir / METRICS_JSON).read_bytes()
    unknown = handle.model_copy(update={"name": "iter_009_slot_00", "job_id": "replay-iter_009_slot_00"})
    assert not second.reattach(unknown)


def test_an_export_leaves_out_large_files_and_says_so(tmp_path: Path) -> None:
    job = _slot(tmp_path)
    write_slot_record(tmp_path / "records", job, SUCCEEDED)
    assert export_slot_records(tmp_path / "records", tmp_path / "small", max_file_bytes=1024) == [job.name]
    record = read_slot_record(tmp_path / "small", job.name)
    assert list(record.omitted) == ["activity.png"] and "activity.png" not in record.files
    asked = _replay_job(job, tmp_path)
    replay = ReplayExecutor(tmp_path / "small")
    replay.wait([replay.submit(asked)], timeout_s=5)
    assert not (asked.out_dir / "activity.png").exists()
    assert "left out of this copy: activity.png" in (asked.out_dir / "slot.log").read_text()


def test_a_job_run_by_the_local_executor_is_recorded_with_its_real_outcome(tmp_path: Path) -> None:
    local = LocalExecutor(fast_settings(), tmp_path / "work", gpus=[], cores=2)
    job = make_job(tmp_path, "crash", "crash")
    outcome = local.wait([local.submit(job)], timeout_s=30)["crash"]
    write_slot_record(tmp_path / "records", job, outcome)
    record = read_slot_record(tmp_path / "records", "crash")
    assert record.outcome == outcome and record.outcome.exit_code == 3
    assert record.config is None and record.config_sha256 is None  # the stand-in job names no --config
    assert list(record.files) == ["status.json"]  # the running status it wrote before it crashed
