"""Local backend on shared GPUs: slots_per_gpu, the free-memory rule and CUDA MPS (fake GPUs, fake MPS control)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from agent.executors import SlotJob
from agent.executors.local import PID_FILE, LocalExecutor
from helpers.executor_harness import REPO, fast_settings

WAIT_S = 120.0  # bounds a hang only: ex.wait returns as soon as the jobs are done
ENV_JOB = """\
import json, os, sys, time
from pathlib import Path
out, sleep_s = Path(sys.argv[1]), float(sys.argv[2])
keys = ("CUDA_VISIBLE_DEVICES", "CUDA_MPS_PIPE_DIRECTORY", "OMP_NUM_THREADS")
(out / "env.json").write_text(json.dumps({k: os.environ.get(k) for k in keys}))
time.sleep(sleep_s)
(out / ".status.tmp").write_text(json.dumps({"state": "succeeded", "exit_code": 0}))
os.replace(out / ".status.tmp", out / "status.json")  # atomic, as the trainer writes it
"""
FAKE_MPS = """#!/bin/sh
# fake nvidia-cuda-mps-control: logs each call (argv and stdin) and creates the control pipe on -d
log="$FAKE_MPS_LOG"
if [ "$1" = "-d" ]; then
  echo "start pipe=$CUDA_MPS_PIPE_DIRECTORY" >>"$log"
  : >"$CUDA_MPS_PIPE_DIRECTORY/control"
else
  echo "command $(cat) pipe=$CUDA_MPS_PIPE_DIRECTORY" >>"$log"
fi
"""


def env_job(root: Path, name: str, sleep_s: float = 0.1) -> SlotJob:
    script = root / "env_job.py"
    if not script.exists():
        script.write_text(ENV_JOB)
    out = root / "slots" / name
    return SlotJob(name=name, command=[sys.executable, str(script), str(out), str(sleep_s)], out_dir=out,
                   env={"PYTHONPATH": str(REPO)}, cwd=REPO)  # fmt: skip


def pinned_gpus(jobs: list[SlotJob]) -> list[str | None]:
    """The GPU each started job was pinned to (from slot.pid.json); None for a job still queued."""
    out = []
    for j in jobs:
        path = j.out_dir / PID_FILE
        out.append(json.loads(path.read_text())["gpu"] if path.exists() else None)
    return out


def close_once_slots_exit(ex: LocalExecutor, log: Path) -> None:
    """close() until it stops MPS: a final status is written just before the slot's process exits."""
    deadline = time.monotonic() + WAIT_S
    while "quit" not in log.read_text() and time.monotonic() < deadline:
        ex.close()
        time.sleep(0.05)


@pytest.fixture
def fake_mps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake nvidia-cuda-mps-control first on PATH; returns its call log."""
    bin_dir = tmp_path / "mps_bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-cuda-mps-control"
    tool.write_text(FAKE_MPS)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "mps.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_LOG", str(log))
    return log


def test_max_parallel_defaults_to_gpus_times_slots_per_gpu(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(slots_per_gpu=3), tmp_path, gpus=["0", "1"], cores=12)
    assert ex.max_parallel == 6
    assert ex.threads_per_slot == 2


def test_slots_fill_the_least_loaded_gpu_up_to_slots_per_gpu(tmp_path: Path) -> None:
    ex = LocalExecutor(fast_settings(slots_per_gpu=2, mps="off"), tmp_path, gpus=["0", "1"], cores=8)
    jobs = [env_job(tmp_path, f"s{i}", sleep_s=1.5) for i in range(5)]
    handles = [ex.submit(j) for j in jobs]
    assert pinned_gpus(jobs) == ["0", "1", "0", "1", None]  # the fifth waits: both GPUs hold two slots
    results = ex.wait(handles, timeout_s=WAIT_S)
    assert {o.state for o in results.values()} == {"succeeded"}
    assert pinned_gpus(jobs)[4] in ("0", "1")


def test_a_gpu_short_of_free_memory_takes_no_second_slot(tmp_path: Path) -> None:
    settings = fast_settings(slots_per_gpu=3, gpu_min_free_gb=10.0, mps="off")
    ex = LocalExecutor(settings, tmp_path, gpus=["0", "1"], cores=8, free_memory=lambda: {"0": 1.0, "1": 50.0})
    jobs = [env_job(tmp_path, f"m{i}", sleep_s=1.5) for i in range(5)]
    handles = [ex.submit(j) for j in jobs]
    # an idle GPU always takes one slot; GPU 0 then has 1 GB free (< 10), GPU 1 takes up to three
    assert pinned_gpus(jobs) == ["0", "1", "1", "1", None]
    assert ex.gpu_load() == {"0": 1, "1": 3}
    assert {o.state for o in ex.wait(handles, timeout_s=WAIT_S).values()} == {"succeeded"}


def test_shared_gpus_start_mps_once_and_slots_get_its_pipe(tmp_path: Path, fake_mps: Path) -> None:
    ex = LocalExecutor(fast_settings(slots_per_gpu=2), tmp_path / "work", gpus=["0"], cores=4)
    jobs = [env_job(tmp_path, f"p{i}") for i in range(2)]
    results = ex.wait([ex.submit(j) for j in jobs], timeout_s=WAIT_S)
    assert {o.state for o in results.values()} == {"succeeded"}
    pipe = str(tmp_path / "work" / "mps" / "pipe")
    for j in jobs:
        env = json.loads((j.out_dir / "env.json").read_text())
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == pipe and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert fake_mps.read_text().splitlines() == [f"start pipe={pipe}"]
    close_once_slots_exit(ex, fake_mps)
    assert fake_mps.read_text().splitlines()[-1] == f"command quit pipe={pipe}"


def test_close_leaves_mps_running_while_a_slot_runs(tmp_path: Path, fake_mps: Path) -> None:
    ex = LocalExecutor(fast_settings(slots_per_gpu=2), tmp_path / "work", gpus=["0"], cores=4)
    handle = ex.submit(env_job(tmp_path, "long", sleep_s=2.0))
    ex.close()
    assert "quit" not in fake_mps.read_text()
    ex.wait([handle], timeout_s=WAIT_S)
    close_once_slots_exit(ex, fake_mps)
    assert "quit" in fake_mps.read_text()


@pytest.mark.parametrize("settings", [{"slots_per_gpu": 1}, {"slots_per_gpu": 2, "mps": "off"}])
def test_no_mps_when_slots_do_not_share_a_gpu_or_mps_is_off(
    tmp_path: Path, fake_mps: Path, settings: dict[str, object]
) -> None:
    ex = LocalExecutor(fast_settings(**settings), tmp_path / "work", gpus=["0"], cores=4)
    job = env_job(tmp_path, "solo")
    ex.wait([ex.submit(job)], timeout_s=WAIT_S)
    assert json.loads((job.out_dir / "env.json").read_text())["CUDA_MPS_PIPE_DIRECTORY"] is None
    assert fake_mps.read_text() == ""


def test_shared_gpus_without_the_mps_tool_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # python only: no nvidia-cuda-mps-control
    ex = LocalExecutor(fast_settings(slots_per_gpu=2), tmp_path / "work", gpus=["0"], cores=4)
    jobs = [env_job(tmp_path, f"n{i}") for i in range(2)]
    results = ex.wait([ex.submit(j) for j in jobs], timeout_s=WAIT_S)
    assert {o.state for o in results.values()} == {"succeeded"}
    assert all(json.loads((j.out_dir / "env.json").read_text())["CUDA_MPS_PIPE_DIRECTORY"] is None for j in jobs)
