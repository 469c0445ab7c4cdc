"""Helpers for the executor tests: the backend harness, the stand-in slot job, fake-scheduler controls.

The fake schedulers are scripts in ``tests/executors/fake_bin`` put first on PATH; they keep their state in
``FAKE_SCHED_DIR``. Jobs are tiny Python scripts (``slot_job.py``) that behave as a slot would:
write ``status.json``, sleep, print, then finish in the way the test asks for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.executors.base import Executor, JobHandle, SlotJob
from experiment.config import DispatchConfig

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = REPO / "tests" / "executors" / "fake_bin"
FAKE_SCHED = FAKE_BIN / "_fake_sched.py"

SLOT_JOB = '''\
"""A stand-in slot: argv = out_dir mode sleep_s; writes status.json as the trainer would."""
import json, os, sys, time
from pathlib import Path

out, mode, sleep_s = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
if mode == "stubborn":  # ignores SIGTERM (as submitit's own wrapper does), then succeeds if not killed
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def status(state, **fields):
    tmp = out / ".status.tmp"
    tmp.write_text(json.dumps({"state": state, "pid": os.getpid(), **fields}))
    os.replace(tmp, out / "status.json")


with open(out / "runs.txt", "a") as fh:
    env = os.environ
    fh.write(f"{os.getpid()} gpu={env.get('CUDA_VISIBLE_DEVICES', '')} omp={env.get('OMP_NUM_THREADS', '')} "
             f"t0={time.time():.3f} tag={env.get('SLOT_TAG', '')}\\n")
status("running")
if mode.startswith("torn"):  # a status file caught mid-write (a non-atomic writer)
    (out / "status.json").write_text('{"state": "succ')
time.sleep(sleep_s)
print(f"working on {out.name}")
with open(out / "runs.txt", "a") as fh:
    fh.write(f"end t1={time.time():.3f}\\n")
if mode in ("ok", "stubborn", "torn"):
    status("succeeded", exit_code=0)
elif mode == "fail_status":
    status("failed", exit_code=2, reason="loss diverged (NaN)")
    sys.exit(2)
elif mode == "crash":
    print("ValueError: bad thing happened", file=sys.stderr)
    sys.exit(3)
elif mode == "oom":
    os.kill(os.getpid(), 9)
'''


def fast_settings(**overrides: object) -> DispatchConfig:
    base: dict[str, object] = {"poll_s": 0.05, "submit_deadline_s": 2.0, "slot_timeout_min": 5.0}
    return DispatchConfig.model_validate({**base, **overrides})


def make_job(root: Path, name: str, mode: str = "ok", sleep_s: float = 0.1, **env: str) -> SlotJob:
    """The stand-in slot job ``slot_job.py`` (written under ``root`` once) for ``root/slots/name``."""
    script = root / "slot_job.py"
    if not script.exists():
        script.write_text(SLOT_JOB)
    out = root / "slots" / name
    return SlotJob(
        name=name,
        command=[sys.executable, str(script), str(out), mode, str(sleep_s)],
        out_dir=out,
        env={"PYTHONPATH": str(REPO), **env},
        cwd=REPO,
    )


@dataclass
class Harness:
    """One backend under test, with the knobs the contract suite needs.

    ``prepare(job)`` runs once per job before the test submits it (the replay backend records it there);
    ``lacks`` maps a capability a contract test needs (``running``: a job that stays active for a while;
    ``submission``: a submission step that can fail) to why this backend has none, and ``needs`` skips with it.
    """

    backend: str
    root: Path
    make: Callable[..., Executor]  # make(settings=None): a fresh instance (a restarted controller)
    lose: Callable[[JobHandle], None]
    fail_next_submissions: Callable[[int], None]
    prepare: Callable[[SlotJob], None] | None = None
    lacks: dict[str, str] = field(default_factory=dict)

    def job(self, name: str, mode: str = "ok", sleep_s: float = 0.1, **env: str) -> SlotJob:
        job = make_job(self.root, name, mode, sleep_s, **env)
        if self.prepare is not None:
            self.prepare(job)
        return job

    def needs(self, capability: str) -> None:
        """Skip the calling test, with the stated reason, where this backend lacks ``capability``."""
        if capability in self.lacks:
            import pytest

            pytest.skip(f"{self.backend}: {self.lacks[capability]}")


def runs(job_or_handle: SlotJob | JobHandle) -> list[str]:
    """Start lines the job script wrote (one per time it ran)."""
    path = job_or_handle.out_dir / "runs.txt"
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("end")] if path.exists() else []


def wait_started(handle: JobHandle, executor: Executor, timeout_s: float = 120.0) -> None:
    """Poll (which also advances a local queue) until the job script has started."""
    deadline = time.monotonic() + timeout_s
    while not runs(handle):
        assert time.monotonic() < deadline, f"{handle.name} did not start"
        executor.is_active(handle)
        time.sleep(0.05)


def kill_local_group(handle: JobHandle) -> None:
    import json

    pid = json.loads((handle.out_dir / "slot.pid.json").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)


def fake_control(action: str, job_id: str) -> None:
    subprocess.run([sys.executable, str(FAKE_SCHED), action, job_id], check=True)


# -- the real Slurm (``make test-integration`` starts one and exports SLURM_CONF) --------------------

REAL_SLURM = {"gpus_per_job": 0, "cpus_per_task": 1, "mem_gb": 0.2, "time_min": 5}


def real_slurm_missing() -> str | None:
    """Why no real Slurm can be used here (one line), or None when ``sinfo`` answers for SLURM_CONF."""
    conf = os.environ.get("SLURM_CONF")
    if not conf or not Path(conf).is_file():
        return "real Slurm: SLURM_CONF names no slurm.conf (run make test-integration)"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return f"real Slurm: sinfo failed: {err}"
    if done.returncode != 0 or "up" not in done.stdout:
        return f"real Slurm: sinfo answered {' '.join((done.stderr or done.stdout).split())[:200]!r}"
    return None


def real_slurm_settings(settings: DispatchConfig | None = None, **overrides: object) -> DispatchConfig:
    """``settings`` (default: the contract's fast settings, polling at 0.5 s) with resources one node can give."""
    base = settings or fast_settings(poll_s=0.5, submit_deadline_s=5.0, **overrides)
    return base.model_copy(update={"slurm": base.slurm.model_copy(update=REAL_SLURM)})


def flaky_sbatch(bin_dir: Path) -> Path:
    """An ``sbatch`` first on PATH that fails while ``bin_dir/fail_submissions`` counts down, then runs the real one."""
    real = shutil.which("sbatch")
    assert real is not None, "sbatch is not on PATH"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "sbatch"
    counter = bin_dir / "fail_submissions"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{counter}" 2>/dev/null || echo 0)\n'
        f'if [ "$n" -gt 0 ]; then echo $((n - 1)) > "{counter}"; '
        'echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1; fi\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return counter


def kill_slot_process(handle: JobHandle) -> None:
    """kill -9 the slot's own process (its pid is the first field of runs.txt), as the OOM killer would."""
    line = runs(handle)[-1]
    os.kill(int(line.split()[0]), signal.SIGKILL)
