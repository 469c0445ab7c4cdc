"""Local backend specifics: queueing, GPU pinning, threads, timeouts, re-attach by pid."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest

from agent.executors import JobHandle, SlotJob
from agent.executors.local import LocalExecutor, PidRecord, detect_gpus, process_start_ticks
from experiment.records import SlotStatus, read_status, utc_now, write_status
from helpers.executor_harness import fast_settings, make_job, runs

WAIT_S = 120.0  # bounds a hang only: ex.wait returns as soon as the jobs are done


def start_end(job: SlotJob) -> tuple[float, float]:
    text = (job.out_dir / "runs.txt").read_text()
    return float(re.search(r"t0=([\d.]+)", text)[1]), float(re.search(r"t1=([\d.]+)", text)[1])


def field(job: SlotJob, key: str) -> str:
    (line,) = runs(job)
    return re.search(rf"{key}=(\S*)", line)[1]


def test_jobs_beyond_max_parallel_wait_in_the_queue(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(max_parallel=1), tmp_path, gpus=[], cores=2)
    jobs = [make_job(tmp_path, f"q{i}", sleep_s=0.2) for i in range(3)]
    handles = [ex.submit(j) for j in jobs]
    assert [ex.is_active(h) for h in handles] == [True, True, True]
    assert sum(1 for j in jobs if (j.out_dir / "slot.pid.json").exists()) == 1
    results = ex.wait(handles, timeout_s=WAIT_S)
    assert {o.state for o in results.values()} == {"succeeded"}
    spans = sorted(start_end(j) for j in jobs)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_each_running_slot_gets_its_own_gpu(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(), tmp_path, gpus=["0", "1"], cores=8)
    jobs = [make_job(tmp_path, f"g{i}", sleep_s=0.3) for i in range(4)]
    handles = [ex.submit(j) for j in jobs]
    assert {o.state for o in ex.wait(handles, timeout_s=WAIT_S).values()} == {"succeeded"}
    gpus = [field(j, "gpu") for j in jobs]
    assert set(gpus) == {"0", "1"}
    spans = [start_end(j) for j in jobs]
    for a in range(4):
        for b in range(a + 1, 4):
            overlap = spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
            assert not (overlap and gpus[a] == gpus[b]), f"g{a} and g{b} shared GPU {gpus[a]}"


def test_threads_default_to_cores_divided_by_concurrency(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(max_parallel=2), tmp_path, gpus=[], cores=8)
    job = make_job(tmp_path, "threads")
    ex.wait([ex.submit(job)], timeout_s=WAIT_S)
    assert field(job, "omp") == "4"
    assert field(job, "gpu") == ""


@pytest.mark.fault("trainer")
def test_slot_over_the_time_limit_is_killed_and_failed(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(slot_timeout_min=0.01), tmp_path, gpus=[], cores=2)
    job = make_job(tmp_path, "slow", sleep_s=30)
    handle = ex.submit(job)
    result = ex.wait([handle], timeout_s=WAIT_S)["slow"]
    assert result.state == "failed"
    assert result.reason == "timed out after 0.01 min"
    assert read_status(job.out_dir).reason == "timed out after 0.01 min"
    pid = json.loads((job.out_dir / "slot.pid.json").read_text())["pid"]
    assert process_start_ticks(pid) is None or not Path(f"/proc/{pid}").exists()


def test_cancelling_a_queued_job_means_it_never_runs(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(max_parallel=1), tmp_path, gpus=[], cores=2)
    first, second = make_job(tmp_path, "first", sleep_s=0.3), make_job(tmp_path, "second")
    h1, h2 = ex.submit(first), ex.submit(second)
    ex.cancel(h2)
    results = ex.wait([h1, h2], timeout_s=WAIT_S)
    assert results["first"].state == "succeeded"
    assert results["second"].state == "failed"
    assert results["second"].reason == "cancelled before it started"
    assert runs(second) == []


def test_job_still_queued_when_the_controller_stopped_is_unknown_after_restart(tmp_path: Path) -> None:
    first = LocalExecutor(fast_settings(max_parallel=1), tmp_path, gpus=[], cores=2)
    running, queued = make_job(tmp_path, "running", sleep_s=0.3), make_job(tmp_path, "queued")
    h_running, h_queued = first.submit(running), first.submit(queued)
    del first
    second = LocalExecutor(fast_settings(max_parallel=1), tmp_path, gpus=[], cores=2)
    assert second.reattach(h_running) is True
    assert second.reattach(h_queued) is False
    assert second.wait([h_running], timeout_s=WAIT_S)["running"].state == "succeeded"


def test_reattach_does_not_adopt_a_reused_pid(tmp_path: Path) -> None:
    out = tmp_path / "slots" / "ghost"
    out.mkdir(parents=True)
    handle = JobHandle(backend="local", job_id="local-ghost", name="ghost", out_dir=out, submitted_at=utc_now())
    ticks = process_start_ticks(os.getpid())
    record = PidRecord(job_id="local-ghost", pid=os.getpid(), start_ticks=(ticks or 0) + 1, started_epoch=0.0)
    (out / "slot.pid.json").write_text(record.model_dump_json())
    ex = LocalExecutor(fast_settings(), tmp_path, gpus=[], cores=2)
    assert ex.reattach(handle) is True
    assert ex.is_active(handle) is False
    result = ex.outcome(handle)
    assert result.state == "failed"
    assert "without a status file" in result.reason


def test_stale_status_from_an_earlier_attempt_is_not_taken_for_completion(tmp_path: Path) -> None:
    job = make_job(tmp_path, "again", mode="crash")
    job.out_dir.mkdir(parents=True)
    write_status(job.out_dir, SlotStatus(state="succeeded", exit_code=0))
    ex = LocalExecutor(fast_settings(), tmp_path, gpus=[], cores=2)
    result = ex.wait([ex.submit(job)], timeout_s=WAIT_S)["again"]
    assert result.state == "failed"
    assert json.loads((job.out_dir / "status.previous.json").read_text())["state"] == "succeeded"


@pytest.mark.parametrize(("visible", "expected"), [("2,3", ["2", "3"]), ("", []), ("0,-1,1", ["0"])])
def test_detect_gpus_follows_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, visible: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert detect_gpus() == expected
