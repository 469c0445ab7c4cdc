"""Fixtures for the executor tests: a harness per backend (local, fake Slurm, fake LSF, replay, real Slurm).

The fake schedulers are scripts in ``fake_bin`` put first on PATH; they keep their state in
``FAKE_SCHED_DIR``. The real-Slurm harness (marker ``real``) needs a running cluster named by
``SLURM_CONF``, which ``make test-integration`` starts; elsewhere it skips with one line. Helpers
live in ``helpers.executor_harness`` (shared with tests/integration).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.executors.base import Executor, SlotJob
from experiment.config import DispatchConfig
from helpers.executor_harness import (
    FAKE_BIN,
    Harness,
    fake_control,
    fast_settings,
    flaky_sbatch,
    kill_local_group,
    kill_slot_process,
    real_slurm_missing,
    real_slurm_settings,
)


@pytest.fixture
def fake_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake sbatch/srun/sacct/scancel/bsub/bjobs/bkill first on PATH; returns FAKE_SCHED_DIR."""
    sched = tmp_path / "sched"
    sched.mkdir()
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCHED_DIR", str(sched))
    monkeypatch.setenv("FAKE_SCHED_PYTHON", sys.executable)
    return sched


def _local_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: DispatchConfig) -> Harness:
    from agent.executors import local

    real_popen = subprocess.Popen
    failures = {"left": 0}

    def flaky_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_popen(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(local.subprocess, "Popen", flaky_popen)
    return Harness(
        backend="local",
        root=tmp_path,
        make=lambda s=None: local.LocalExecutor(s or settings, tmp_path / "work", gpus=[], cores=2),
        lose=kill_local_group,
        fail_next_submissions=lambda n: failures.update(left=n),
    )


def _scheduler_harness(backend: str, tmp_path: Path, sched: Path, settings: DispatchConfig) -> Harness:
    from agent.executors.lsf import LsfExecutor
    from agent.executors.slurm import SlurmExecutor

    def make(override: DispatchConfig | None = None) -> Executor:
        if backend == "slurm":
            return SlurmExecutor(override or settings, tmp_path / "work", lost_grace_s=1.0)
        return LsfExecutor(override or settings, tmp_path / "work")

    return Harness(
        backend=backend,
        root=tmp_path,
        make=make,
        lose=lambda h: fake_control("_lose", h.job_id),
        fail_next_submissions=lambda n: (sched / "fail_submissions").write_text(str(n)),
    )


REPLAY_LACKS = {
    "running": "a replayed job is finished when it is submitted (never queued, running or lost, so nothing to "
    "cancel, tear mid-write or find active after a restart); its re-attach is tested in test_executor_replay.py",
    "submission": "replay submits nothing to a scheduler, so there is no submission to fail or retry",
}


def _replay_harness(tmp_path: Path, settings: DispatchConfig) -> Harness:
    """Each job is first run once by the local executor and recorded; the replay executor then serves it."""
    from agent.executors import local
    from agent.executors.records import write_slot_record
    from agent.executors.replay import ReplayExecutor

    records = tmp_path / "slot_records"
    records.mkdir()
    recorder = local.LocalExecutor(settings, tmp_path / "record_work", gpus=[], cores=2)

    def record(job: SlotJob) -> None:
        handle = recorder.submit(job)
        outcome = recorder.wait([handle], timeout_s=30.0)[job.name]
        write_slot_record(records, job, outcome)

    def unsupported(*_: object) -> None:
        raise AssertionError("replay: the contract test should have skipped (Harness.needs)")

    return Harness(
        backend="replay",
        root=tmp_path,
        make=lambda s=None: ReplayExecutor(records),
        lose=unsupported,
        fail_next_submissions=unsupported,
        prepare=record,
        lacks=REPLAY_LACKS,
    )


def _real_slurm_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """The contract against a running Slurm (SLURM_CONF); a wrapper sbatch fails on demand, then runs the real one."""
    from agent.executors.slurm import SlurmExecutor

    missing = real_slurm_missing()
    if missing:
        pytest.skip(missing)
    counter = flaky_sbatch(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return Harness(
        backend="slurm",
        root=tmp_path,
        make=lambda s=None: SlurmExecutor(real_slurm_settings(s), tmp_path / "work", lost_grace_s=10.0),
        lose=kill_slot_process,
        fail_next_submissions=lambda n: counter.write_text(str(n)),
    )


def _cancel_real_jobs(root: Path) -> None:
    """Leave the real cluster empty for the next test: cancel every job submitted from ``root``."""
    ids = [p.name.split("_")[0] for p in (root / "work" / "submitit").glob("*_submission.sh")]
    if ids:
        subprocess.run(["scancel", "--full", "--signal=KILL", *ids], capture_output=True, timeout=30, check=False)
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30, check=False)


@pytest.fixture(params=["local", "slurm", "lsf", "replay", pytest.param("slurm-real", marks=pytest.mark.real)])
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    settings = fast_settings()
    if request.param == "local":
        yield _local_harness(tmp_path, monkeypatch, settings)
        return
    if request.param == "replay":
        yield _replay_harness(tmp_path, settings)
        return
    if request.param == "slurm-real":
        yield _real_slurm_harness(tmp_path, monkeypatch)
        _cancel_real_jobs(tmp_path)
        return
    sched = request.getfixturevalue("fake_scheduler")
    yield _scheduler_harness(request.param, tmp_path, sched, settings)
    _kill_leftover_fake_jobs(sched)


def _kill_leftover_fake_jobs(sched: Path) -> None:
    for path in (sched / "jobs").glob("*.json"):
        pid = json.loads(path.read_text()).get("runner_pid")
        cmdline = Path(f"/proc/{pid}/cmdline")
        if pid and cmdline.exists() and b"_fake_sched.py" in cmdline.read_bytes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
