"""One contract for every backend: local subprocesses, fake Slurm (submitit), fake LSF, replay (each job recorded
from a local run, then served) and a real Slurm (``real``). A test that needs what a backend lacks (a job that
runs for a while, a submission that can fail) calls ``harness.needs`` and skips there with the reason."""

from __future__ import annotations

import time

import pytest

from agent.executors import JobHandle, JobOutcome, SubmissionError
from experiment.records import read_status
from helpers.executor_harness import Harness, fast_settings, runs, wait_started

WAIT_S = 120.0  # bounds a hang only: ex.wait returns as soon as the jobs are done


def test_four_jobs_run_once_each_and_succeed_from_their_status_files(harness: Harness) -> None:
    ex = harness.make()
    jobs = [harness.job(f"ok{i}", "ok", sleep_s=s, SLOT_TAG=f"tag{i}") for i, s in enumerate([0.3, 0.1, 0.2, 0.1])]
    handles = [ex.submit(j) for j in jobs]
    seen: list[str] = []
    results = ex.wait(handles, timeout_s=WAIT_S, on_update=lambda h, o: seen.append(h.name))
    assert results == {j.name: JobOutcome(state="succeeded", reason=None, exit_code=0) for j in jobs}
    assert sorted(seen) == sorted(j.name for j in jobs)
    for i, job in enumerate(jobs):
        (line,) = runs(job)
        assert f"tag=tag{i}" in line
        assert "working on" in (job.out_dir / "slot.log").read_text()


@pytest.mark.fault("trainer")
def test_nonzero_exit_without_status_fails_with_exit_code_and_log_tail(harness: Harness) -> None:
    ex = harness.make()
    handle = ex.submit(harness.job("crash", "crash"))
    result = ex.wait([handle], timeout_s=WAIT_S)["crash"]
    assert result.state == "failed"
    assert result.exit_code == 3
    assert "exit code 3" in result.reason
    assert "ValueError: bad thing happened" in result.reason
    assert "\n" not in result.reason


def test_failed_status_reports_its_reason(harness: Harness) -> None:
    ex = harness.make()
    handle = ex.submit(harness.job("diverged", "fail_status"))
    result = ex.wait([handle], timeout_s=WAIT_S)["diverged"]
    assert result == JobOutcome(state="failed", reason="loss diverged (NaN)", exit_code=2)


@pytest.mark.fault("trainer")
def test_a_status_file_torn_mid_write_is_no_outcome_while_the_job_runs(harness: Harness) -> None:
    harness.needs("running")
    ex = harness.make()
    handle = ex.submit(harness.job("torn", "torn", sleep_s=1.5))
    wait_torn(handle, ex)
    assert ex.outcome(handle) is None
    assert ex.wait([handle], timeout_s=WAIT_S)["torn"] == JobOutcome(state="succeeded", reason=None, exit_code=0)


@pytest.mark.fault("trainer")
def test_a_job_cancelled_while_its_status_file_is_torn_is_reported_cancelled(harness: Harness) -> None:
    harness.needs("running")
    ex = harness.make()
    handle = ex.submit(harness.job("torn_cancel", "torn", sleep_s=5.0))
    wait_torn(handle, ex)
    ex.cancel(handle)
    result = ex.wait([handle], timeout_s=WAIT_S)["torn_cancel"]
    assert result.state == "failed" and "cancel" in result.reason.lower()


@pytest.mark.fault("trainer")
def test_a_torn_status_file_left_by_an_ended_job_is_a_one_line_failure(harness: Harness) -> None:
    ex = harness.make()
    handle = ex.submit(harness.job("torn_exit", "torn_exit"))
    result = ex.wait([handle], timeout_s=WAIT_S)["torn_exit"]
    assert result.state == "failed"
    assert "status.json" in result.reason and "\n" not in result.reason


@pytest.mark.fault("trainer")
def test_clean_exit_that_leaves_a_running_status_is_a_failure(harness: Harness) -> None:
    ex = harness.make()
    handle = ex.submit(harness.job("quiet", "no_status"))
    result = ex.wait([handle], timeout_s=WAIT_S)["quiet"]
    assert result.state == "failed"
    assert result.exit_code == 0
    assert "without a status file" in result.reason


@pytest.mark.fault("trainer")
def test_job_lost_without_status_is_failed(harness: Harness) -> None:
    harness.needs("running")
    ex = harness.make()
    handle = ex.submit(harness.job("lost", "ok", sleep_s=30))
    wait_started(handle, ex)
    harness.lose(handle)
    result = ex.wait([handle], timeout_s=WAIT_S)["lost"]
    assert result.state == "failed"
    assert "without a status file" in result.reason


@pytest.mark.fault("trainer")
def test_exit_137_is_reported_as_killed(harness: Harness) -> None:
    ex = harness.make()
    handle = ex.submit(harness.job("oom", "oom"))
    result = ex.wait([handle], timeout_s=WAIT_S)["oom"]
    assert result.state == "failed"
    assert result.exit_code == 137
    assert result.reason.startswith("killed (signal 9, out of memory?)")


def wait_torn(handle: JobHandle, ex: object) -> None:
    """Poll (which also advances a local queue) until the job has written its torn status file."""
    deadline = time.monotonic() + WAIT_S
    status = handle.out_dir / "status.json"
    while not status.exists() or status.read_text() != '{"state": "succ':
        assert time.monotonic() < deadline, f"{handle.name} never wrote its torn status"
        ex.is_active(handle)
        time.sleep(0.02)


def _cancel_running(harness: Harness, name: str, kind: str, sleep_s: float, succeed_by_s: float) -> JobHandle:
    """Submit a job, cancel it once it runs, and check it ends cancelled and never succeeds afterwards."""
    ex = harness.make()
    handle = ex.submit(harness.job(name, kind, sleep_s=sleep_s))
    wait_started(handle, ex)
    started = time.monotonic()
    ex.cancel(handle)
    result = ex.wait([handle], timeout_s=WAIT_S)[name]
    assert result.state == "failed"
    assert "cancel" in result.reason.lower()
    time.sleep(max(0.0, started + succeed_by_s - time.monotonic()))  # past the moment it would have succeeded
    status = read_status(handle.out_dir)
    assert status is None or status.state != "succeeded"
    return handle


def test_cancel_stops_a_running_job(harness: Harness) -> None:
    harness.needs("running")
    _cancel_running(harness, "victim", "ok", sleep_s=0.7, succeed_by_s=1.0)


@pytest.mark.fault("trainer")
def test_cancel_stops_a_job_that_ignores_sigterm_before_it_can_succeed(
    harness: Harness,
) -> None:
    harness.needs("running")
    handle = _cancel_running(harness, "stubborn", "stubborn", sleep_s=4.0, succeed_by_s=5.0)
    assert len(runs(handle)) == 1 and "end t1=" not in (handle.out_dir / "runs.txt").read_text()


def test_restarted_controller_reattaches_without_resubmitting(harness: Harness) -> None:
    harness.needs("running")
    first = harness.make()
    jobs = [harness.job(f"keep{i}", "ok", sleep_s=0.6) for i in range(2)]
    stored = [first.submit(j).model_dump_json() for j in jobs]
    del first  # the controller process "dies"; its jobs keep running
    second = harness.make()
    handles = [JobHandle.model_validate_json(s) for s in stored]
    assert all(second.reattach(h) for h in handles)
    assert any(second.is_active(h) for h in handles)
    results = second.wait(handles, timeout_s=WAIT_S)
    assert {o.state for o in results.values()} == {"succeeded"}
    assert [len(runs(j)) for j in jobs] == [1, 1]


def test_submission_failure_is_retried_then_succeeds(harness: Harness) -> None:
    harness.needs("submission")
    ex = harness.make()
    harness.fail_next_submissions(2)
    handle = ex.submit(harness.job("retry", "ok"))
    assert ex.wait([handle], timeout_s=WAIT_S)["retry"].state == "succeeded"
    assert len(runs(handle)) == 1


def test_submission_failing_past_the_deadline_raises_one_line(harness: Harness) -> None:
    harness.needs("submission")
    ex = harness.make(fast_settings(submit_deadline_s=0.3))
    harness.fail_next_submissions(10_000)
    with pytest.raises(SubmissionError) as err:
        ex.submit(harness.job("doomed", "ok"))
    assert "doomed" in str(err.value)
    assert "\n" not in str(err.value)
