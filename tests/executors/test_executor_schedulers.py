"""Slurm and LSF specifics against the fake schedulers: resources, setup lines, lost jobs, parsing."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from agent.executors import BackendUnavailableError, make_executor
from agent.executors.local import LocalExecutor
from agent.executors.lsf import LsfExecutor, LsfJobState, SchedulerCommandError, parse_bjobs, parse_job_id
from agent.executors.slurm import SlurmExecutor
from helpers.executor_harness import fake_control, fast_settings, make_job, runs, wait_started

WAIT_S = 120.0  # bounds a hang only: ex.wait returns as soon as the jobs are done
RESOURCES = {"gpus_per_job": 1, "cpus_per_task": 4, "mem_gb": 16, "time_min": 30, "setup": ["export SLOT_TAG=setup"]}


def test_slurm_batch_script_carries_resources_and_runs_setup_lines(tmp_path: Path, fake_scheduler: Path) -> None:
    slurm = {**RESOURCES, "partition": "gpu", "additional_parameters": {"account": "lab"}}
    ex = SlurmExecutor(fast_settings(slurm=slurm), tmp_path / "work")
    job = make_job(tmp_path, "res")
    handle = ex.submit(job)
    assert ex.wait([handle], timeout_s=WAIT_S)["res"].state == "succeeded"
    text = (tmp_path / "work" / "submitit" / f"{handle.job_id}_submission.sh").read_text()
    for line in [
        "--partition=gpu",
        "--gpus-per-node=1",
        "--cpus-per-task=4",
        "--mem=16GB",
        "--time=30",
        "--account=lab",
        "--job-name=res",
        "export SLOT_TAG=setup",
    ]:
        assert line in text
    assert "tag=setup" in runs(job)[0]
    assert "omp=4" in runs(job)[0]


def test_lsf_bsub_carries_resources_and_runs_setup_lines(tmp_path: Path, fake_scheduler: Path) -> None:
    lsf = {**RESOURCES, "queue": "gpu_a100", "extra_args": ["-P", "flyvis"]}
    ex = LsfExecutor(fast_settings(lsf=lsf), tmp_path / "work")
    job = make_job(tmp_path, "res")
    handle = ex.submit(job)
    assert ex.wait([handle], timeout_s=WAIT_S)["res"].state == "succeeded"
    argv = json.loads((fake_scheduler / "jobs" / f"{handle.job_id}.json").read_text())["argv"]
    joined = " ".join(argv)
    for part in [
        "-J res",
        "-q gpu_a100",
        "-n 4",
        "-gpu num=1",
        "-R rusage[mem=16384] span[hosts=1]",
        "-W 30",
        "-P flyvis",
    ]:
        assert part in joined
    assert argv[-2:] == ["/bin/bash", str((job.out_dir / "lsf_job.sh").resolve())]
    assert "tag=setup" in runs(job)[0]


def test_slurm_job_missing_from_sacct_is_lost_after_the_grace_period(tmp_path: Path, fake_scheduler: Path) -> None:
    ex = SlurmExecutor(fast_settings(), tmp_path / "work", lost_grace_s=0.5)
    handle = ex.submit(make_job(tmp_path, "vanish", sleep_s=30))
    wait_started(handle, ex)
    fake_control("_forget", handle.job_id)
    result = ex.wait([handle], timeout_s=WAIT_S)["vanish"]
    assert result.state == "failed"
    assert "sacct has no record of it" in result.reason
    fake_control("_fail", handle.job_id)  # stop the orphan


def test_slurm_job_that_only_squeue_lists_is_active_and_reattached_not_lost(
    tmp_path: Path, fake_scheduler: Path
) -> None:
    first = SlurmExecutor(fast_settings(), tmp_path / "work", lost_grace_s=0.2)
    handle = first.submit(make_job(tmp_path, "lagging", sleep_s=1.0))
    fake_control("_hide", handle.job_id)  # sacct lags behind squeue, as after a fresh sbatch
    second = SlurmExecutor(fast_settings(), tmp_path / "work", lost_grace_s=0.2)
    assert second.reattach(handle)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:  # well past the grace period
        assert second.outcome(handle) is None
        time.sleep(0.05)
    fake_control("_unhide", handle.job_id)
    assert second.wait([handle], timeout_s=WAIT_S)["lagging"].state == "succeeded"
    assert len(runs(handle)) == 1


def test_slurm_cancel_kills_the_running_step_before_cancelling_the_job(tmp_path: Path, fake_scheduler: Path) -> None:
    ex = SlurmExecutor(fast_settings(), tmp_path / "work")
    handle = ex.submit(make_job(tmp_path, "stubborn", mode="stubborn", sleep_s=30))
    wait_started(handle, ex)
    ex.cancel(handle)
    job = json.loads((fake_scheduler / "jobs" / f"{handle.job_id}.json").read_text())
    assert job["state"] == "FAILED"  # step 0 got SIGKILL; scancel alone would wait KillWait after SIGTERM
    result = ex.wait([handle], timeout_s=WAIT_S)["stubborn"]
    assert result.reason.startswith(f"cancelled by the controller (slurm job {handle.job_id}")


def test_slurm_node_failure_names_the_state(tmp_path: Path, fake_scheduler: Path) -> None:
    ex = SlurmExecutor(fast_settings(), tmp_path / "work")
    handle = ex.submit(make_job(tmp_path, "node", sleep_s=30))
    wait_started(handle, ex)
    fake_control("_fail", handle.job_id)
    result = ex.wait([handle], timeout_s=WAIT_S)["node"]
    assert result.state == "failed"
    assert result.reason.startswith(f"job {handle.job_id} left the queue (state NODE_FAIL: node failure)")


def test_parse_job_id_reads_the_bsub_answer() -> None:
    assert parse_job_id("Job <8123> is submitted to queue <gpu_a100>.\n") == "8123"
    with pytest.raises(SchedulerCommandError, match="no 'Job <id> is submitted'"):
        parse_job_id("Request aborted by esub. Job not submitted.")


def test_parse_bjobs_reads_rows_and_forgotten_jobs() -> None:
    states = parse_bjobs("11 RUN -\n12 EXIT 137\n13 DONE -\n", "Job <14> is not found\n")
    assert states == {
        "11": LsfJobState("RUN"),
        "12": LsfJobState("EXIT", 137),
        "13": LsfJobState("DONE"),
        "14": LsfJobState(None),
    }


@pytest.mark.parametrize("backend", ["slurm", "lsf"])
def test_scheduler_backend_without_its_commands_is_one_clear_error(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailableError, match=rf"^dispatch.executor: {backend} needs .* on PATH") as err:
        make_executor(fast_settings(executor=backend), tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("backend", "cls"), [("local", LocalExecutor), ("slurm", SlurmExecutor), ("lsf", LsfExecutor)])
def test_make_executor_builds_the_configured_backend(
    backend: str, cls: type, tmp_path: Path, fake_scheduler: Path
) -> None:
    assert type(make_executor(fast_settings(executor=backend), tmp_path)) is cls


def test_slurm_reason_keeps_the_exit_code_the_wrapper_recorded(tmp_path: Path, fake_scheduler: Path) -> None:
    ex = SlurmExecutor(fast_settings(), tmp_path / "work")
    handle = ex.submit(make_job(tmp_path, "crash", mode="crash"))
    result = ex.wait([handle], timeout_s=WAIT_S)["crash"]
    assert re.match(rf"exit code 3 without a status file \(slurm job {handle.job_id}, state FAILED\)", result.reason)
