"""The exploration loop dispatched through a real Slurm: a replayed run, and a controller SIGKILLed while
its jobs are queued and running, then resumed (re-attached, nothing resubmitted); and one real trainer
slot (``python -m trainer.slot`` on the tiny config) as a Slurm job.

The loop runs use the fast fake trainer (tests/loop/fake_slot.py, metrics a function of config and
seeds in plain Python floats, the same on every CPU), so a transcript recorded by a local offline run
replays exactly through Slurm. The slots must run as real Slurm jobs here, so these runs do not use slot
records (``--executor replay``); no real training's digits are compared.
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from agent.executors import SlotJob
from agent.executors.slurm import SlurmExecutor
from agent.journal import CRASH_ENV
from agent.rebuild import differing_files
from experiment.records import read_metrics
from helpers.agent_cli import REPO, TINY, journal_events, run_agent

pytestmark = pytest.mark.real

COMPARED = ("analysis.md", "memory.md", "ucb_scores.txt", "flyvis_tiny_00.yaml", "flyvis_tiny_03.yaml")
SLURM_DISPATCH = {
    "executor": "slurm",
    "poll_s": 1.0,
    "submit_deadline_s": 60,
    "slurm": {"gpus_per_job": 0, "cpus_per_task": 1, "mem_gb": 0.2, "time_min": 10},
}


def slurm_config(folder: Path) -> Path:
    """The tiny config with ``dispatch:`` on the real Slurm (1 CPU per slot, so 2 slots run and 2 wait)."""
    yaml = YAML()
    data = yaml.load(TINY.read_text(encoding="utf-8"))
    data["dispatch"] = SLURM_DISPATCH
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flyvis_tiny.yaml"  # same stem: the slot files keep their names
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    return path


def same_files(run_dir: Path, reference: Path) -> list[str]:
    """The compared files that differ, once a failure reason's "(slurm job N, state S)" is set aside."""

    def text(path: Path) -> str:
        return re.sub(r" \(slurm job \d+, state \w+\)", "", path.read_text())

    return [name for name in COMPARED if text(run_dir / name) != text(reference / name)]


def trainings(run_dir: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().split()) for p in (run_dir / "slots").glob("*/fake_slot_runs.log")}


def squeue_states() -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local offline run of START + 2 batches (iteration 6 killed) on the same config file (``--executor
    local``), so the prompts are the same: its transcripts and files are the reference."""
    folder = tmp_path_factory.mktemp("local")
    run_dir = folder / "run"
    config = slurm_config(folder / "cfg")
    proc = run_agent(run_dir, "--config", str(config), "--executor", "local", env={"FAKE_SLOT_CRASH": "6"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_the_real_trainer_runs_as_a_slurm_job(real_slurm, tmp_path: Path) -> None:
    from helpers.executor_harness import fast_settings, real_slurm_settings

    executor = SlurmExecutor(real_slurm_settings(fast_settings(poll_s=1.0)), tmp_path / "jobs")
    out = tmp_path / "slot"
    command = [sys.executable, "-m", "trainer.slot", "--config", str(TINY), "--out", str(out),
               "--data-dir", str(tmp_path / "data"), "--iterations", "20", "--threads", "1"]  # fmt: skip
    handle = executor.submit(SlotJob(name="tiny_trainer", command=command, out_dir=out, cwd=REPO))
    result = executor.wait([handle], timeout_s=600)["tiny_trainer"]
    assert result.state == "succeeded", result.reason
    metrics = read_metrics(out)
    assert all(math.isfinite(v) for v in metrics.model_dump().values() if isinstance(v, float))
    assert (out / "activity.png").is_file()


def test_replayed_run_through_slurm_matches_the_local_run(real_slurm, recorded: Path, tmp_path: Path) -> None:
    config = slurm_config(tmp_path / "cfg")
    run_dir = tmp_path / "run"
    proc = run_agent(
        run_dir,
        "--config", str(config), "--llm", "replay", "--transcripts", str(recorded / "transcripts"),
        "--allow-prompt-drift",  # the failed slot's reason names a slurm job instead of a local one
        env={"FAKE_SLOT_CRASH": "6", "FAKE_SLOT_SLEEP": "0.5"},
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = journal_events(run_dir)
    submitted = [e for e in events if e["type"] == "slot_submitted"]
    assert len(submitted) == 8 and {e["handle"]["backend"] for e in submitted} == {"slurm"}
    results = {e["iteration"]: e["result"] for e in events if e["type"] == "slot_finished"}
    assert sorted(results) == list(range(1, 9))
    assert results[6]["status"] == "failed" and "signal 9" in results[6]["failure_reason"]
    assert all(results[i]["status"] == "completed" for i in (1, 2, 3, 4, 5, 7, 8))
    assert same_files(run_dir, recorded) == []
    assert (run_dir / "jobs" / "submitit").is_dir()
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(e["handle"]["job_id"] for e in submitted)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert len(sacct.stdout.split()) == 8  # Slurm's accounting knows every slot job


def test_controller_killed_with_jobs_queued_and_running_resumes_without_resubmitting(
    real_slurm, recorded: Path, tmp_path: Path
) -> None:
    config = slurm_config(tmp_path / "cfg")
    run_dir = tmp_path / "run"
    env = {"FAKE_SLOT_CRASH": "6", "FAKE_SLOT_SLEEP": "4"}
    killed = run_agent(run_dir, "--config", str(config), env={**env, CRASH_ENV: "slot_submitted:4"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    deadline = time.monotonic() + 30
    states = squeue_states()
    while "RUNNING" not in states and time.monotonic() < deadline:
        time.sleep(0.2)
        states = squeue_states()
    assert "RUNNING" in states and "PENDING" in states, states  # 2 CPUs, 4 one-CPU jobs: 2 run, 2 wait

    resumed = run_agent(run_dir, "--resume", env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = journal_events(run_dir)
    job_ids = [e["handle"]["job_id"] for e in events if e["type"] == "slot_submitted"]
    assert len(job_ids) == len(set(job_ids)) == 8, "a slot was submitted twice"
    finished = Counter(e["iteration"] for e in events if e["type"] == "slot_finished")
    assert sorted(finished) == list(range(1, 9)) and set(finished.values()) == {1}
    assert set(trainings(run_dir).values()) == {1} and len(trainings(run_dir)) == 8, trainings(run_dir)
    assert same_files(run_dir, recorded) == []
    assert differing_files(run_dir) == []
