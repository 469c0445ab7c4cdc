"""Shared executor pieces: models, exit-code words, log tails, wait(), the wrapper script."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.executors import JobHandle, SlotJob, SubmissionError
from agent.executors.base import describe_exit, log_tail, render_slot_script, retry_submission
from agent.executors.local import LocalExecutor
from experiment.records import utc_now
from helpers.executor_harness import fast_settings


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (137, "killed (signal 9, out of memory?)"),
        (-9, "killed (signal 9, out of memory?)"),
        (143, "killed by signal 15"),
        (3, "exit code 3"),
        (0, "exit code 0"),
    ],
)
def test_describe_exit_names_signals_and_codes(code: int, words: str) -> None:
    assert describe_exit(code) == words


def test_log_tail_is_one_trimmed_line_of_the_last_lines(tmp_path: Path) -> None:
    (tmp_path / "slot.log").write_text("early\n=== flyvis-agent: x submitted ===\n\na\n  b  \nc" + "x" * 500 + "\n")
    tail = log_tail(tmp_path)
    assert "\n" not in tail
    assert len(tail) == 300
    assert tail.startswith("...") and tail.endswith("x")
    assert log_tail(tmp_path / "nowhere") == ""


def test_slot_job_rejects_a_name_unsafe_for_schedulers(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="name"):
        SlotJob(name="bad name; rm", command=["true"], out_dir=tmp_path)


def test_handle_round_trips_through_json(tmp_path: Path) -> None:
    handle = JobHandle(backend="slurm", job_id="123", name="s0", out_dir=tmp_path, submitted_at=utc_now())
    assert JobHandle.model_validate_json(handle.model_dump_json()) == handle


def test_handle_of_another_backend_is_refused(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(), tmp_path, gpus=[], cores=2)
    handle = JobHandle(backend="slurm", job_id="123", name="s0", out_dir=tmp_path, submitted_at=utc_now())
    with pytest.raises(ValueError, match=r"handle\.backend"):
        ex.is_active(handle)


def test_wait_returns_only_finished_jobs_when_it_times_out(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(), tmp_path, gpus=[], cores=2)
    quick = SlotJob(
        name="quick",
        command=["sh", "-c", f'echo \'{{"state": "succeeded"}}\' > {tmp_path}/q/status.json'],
        out_dir=tmp_path / "q",
    )
    slow = SlotJob(name="slow", command=["sleep", "30"], out_dir=tmp_path / "s")
    handles = [ex.submit(quick), ex.submit(slow)]
    started = time.monotonic()
    results = ex.wait(handles, timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert list(results) == ["quick"]
    ex.cancel(handles[1])


def test_wait_refuses_two_jobs_with_the_same_name(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(), tmp_path, gpus=[], cores=2)
    handle = JobHandle(backend="local", job_id="a", name="dup", out_dir=tmp_path, submitted_at=utc_now())
    with pytest.raises(ValueError, match="twice"):
        ex.wait([handle, handle.model_copy(update={"job_id": "b"})])


def test_wrapper_records_exit_code_and_applies_job_env_last(tmp_path: Path) -> None:
    job = SlotJob(name="w", command=["sh", "-c", 'echo "$X $Y"; exit 5'], out_dir=tmp_path, env={"X": "job's"})
    script = tmp_path / "slot.sh"
    script.write_text(render_slot_script(job, {"X": "executor", "Y": "threads"}))
    assert subprocess.run(["/bin/sh", str(script)], check=False).returncode == 5
    assert (tmp_path / "slot.exit").read_text().strip() == "5"
    assert (tmp_path / "slot.log").read_text() == "job's threads\n"


def test_retry_gives_up_with_one_line_after_the_deadline() -> None:
    calls = []

    def always_fails() -> None:
        calls.append(1)
        raise OSError("sbatch: error: Socket timed out\non send/recv")

    with pytest.raises(SubmissionError) as err:
        retry_submission(always_fails, deadline_s=0.2, what="slurm: sbatch for s0", retry_on=(OSError,))
    assert len(calls) >= 2
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("slurm: sbatch for s0: gave up after")


def test_retry_does_not_retry_other_errors() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry_submission(broken, deadline_s=5, what="x", retry_on=(OSError,))
    assert calls == [1]
