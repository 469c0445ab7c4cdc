"""Slurm backend through submitit.

Each slot is submitted as ``submitit.helpers.CommandFunction(["/bin/sh", "OUT/slot.sh"])`` by
``AutoExecutor(cluster="slurm")`` (``sbatch``; the batch script runs ``srun python -m
submitit.core._submit``). Job states come from submitit's ``sacct`` watcher
(``sacct -o JobID,State,NodeList --parsable2 -j ID ...``, one call for all tracked jobs, at most
every ``poll_s / 2``). Jobs live in the scheduler, so a restarted controller re-attaches with
``submitit.SlurmJob(folder, job_id)``.

Two behaviours of a real Slurm (22.05, checked with ``make test-integration``) shape this module:

- a job submitted a moment ago is missing from ``sacct`` for about a second while ``squeue``
  already lists it; a job that ``sacct`` does not know is therefore looked up in ``squeue``
  before it counts as unknown, so it is never declared lost, nor resubmitted after a restart,
  while either command still knows it;
- ``scancel`` sends SIGTERM and waits ``KillWait`` (30 s by default) before SIGKILL, and
  submitit's wrapper ignores SIGTERM, so a slot that outlives SIGTERM would run on (and could
  still write a final status) after the controller cancelled it. Cancel therefore sends SIGKILL
  to step 0 (the ``srun`` that runs the slot) first, then ``scancel``s the job itself (a pending
  job, or a batch script still in its setup lines).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError
from submitit.slurm.slurm import SlurmInfoWatcher

from experiment.config import DispatchConfig
from experiment.records import utc_now

from .base import (
    BackendUnavailableError,
    Executor,
    JobHandle,
    JobOutcome,
    SlotJob,
    describe_exit,
    final_status,
    prepare_out_dir,
    read_exit_code,
    retry_submission,
    with_log_tail,
)

# Job states in which Slurm still holds the job (sacct's State column, first word).
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
    }
)
_HINTS = {
    "TIMEOUT": "hit the Slurm time limit",
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "node failure",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "node boot failure",
    "DEADLINE": "missed its deadline",
}


_COMMAND_TIMEOUT_S = 60.0


def state_word(state: str) -> str:
    """``"CANCELLED by 1000"`` -> ``"CANCELLED"``; empty -> ``"UNKNOWN"``."""
    parts = state.split()
    return parts[0].upper() if parts else "UNKNOWN"


class _Watcher(SlurmInfoWatcher):
    """submitit's sacct watcher, told which states still count as running (it lacks some), and
    remembering when sacct last answered (submitit logs and skips a failed call)."""

    last_success: float | None = None

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        """Parse sacct's answer; a job it no longer lists drops back to UNKNOWN (submitit
        would keep its last state forever)."""
        info = super().read_info(string)
        self.last_success = time.monotonic()
        for job_id in self._registered - self._finished - set(info):
            self._info_dict.pop(job_id, None)
        return info

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        word = state_word(self.get_state(job_id, mode=mode))
        return word not in ACTIVE_STATES and word != "UNKNOWN"


class SlurmExecutor(Executor):
    """Slot jobs as Slurm batch jobs; states from sacct, re-attach by job id."""

    backend = "slurm"

    def __init__(self, settings: DispatchConfig, work_dir: Path, *, lost_grace_s: float = 120.0) -> None:
        super().__init__(settings.poll_s)
        missing = [cmd for cmd in ("sbatch", "srun", "sacct", "squeue", "scancel") if shutil.which(cmd) is None]
        if missing:
            raise BackendUnavailableError(
                f"dispatch.executor: slurm needs {', '.join(missing)} on PATH; run the controller on a submit host"
            )
        self.settings = settings
        self.folder = Path(work_dir).resolve() / "submitit"
        self.lost_grace_s = lost_grace_s
        self._refresh_s = min(settings.poll_s, 60.0) / 2
        self._last_refresh = float("-inf")
        self._watcher = _Watcher(delay_s=600)
        self._jobs: dict[str, submitit.SlurmJob] = {}
        self._unknown_since: dict[str, float] = {}
        self._tracked: set[str] = set()
        self._cancelled: set[str] = set()
        self._queued: dict[str, str] = {}  # squeue's word on jobs that sacct does not list (yet)
        self._executor = submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        self._executor.update_parameters(**self._parameters())

    def _parameters(self) -> dict[str, object]:
        cfg = self.settings.slurm
        params: dict[str, object] = {
            "timeout_min": cfg.time_min,
            "cpus_per_task": cfg.cpus_per_task,
            "mem_gb": cfg.mem_gb,
            "slurm_setup": list(cfg.setup),
            "slurm_additional_parameters": dict(cfg.additional_parameters),
        }
        if cfg.gpus_per_job:
            params["gpus_per_node"] = cfg.gpus_per_job
        if cfg.partition:
            params["slurm_partition"] = cfg.partition
        return params

    # -- interface -------------------------------------------------------------------------

    def submit(self, job: SlotJob) -> JobHandle:
        threads = str(self.settings.slurm.cpus_per_task)
        script = prepare_out_dir(job, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        function = submitit.helpers.CommandFunction(["/bin/sh", str(script)], verbose=False, cwd=str(job.out_dir))

        def attempt() -> submitit.Job[str]:
            self._executor.update_parameters(name=job.name)
            return self._executor.submit(function)

        submitted = retry_submission(
            attempt,
            deadline_s=self.settings.submit_deadline_s,
            what=f"slurm: sbatch for {job.name}",
            retry_on=(FailedJobError, FailedSubmissionError, OSError, subprocess.SubprocessError),
        )
        job_id = str(submitted.job_id)
        self._jobs[job_id] = submitted  # type: ignore[assignment]
        self._track(job_id)
        return JobHandle(
            backend=self.backend, job_id=job_id, name=job.name, out_dir=job.out_dir, submitted_at=utc_now()
        )

    def is_active(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        jid = handle.job_id
        self._track(jid)
        self._refresh()
        word = self._state_word(jid)
        if word == "UNKNOWN":  # in neither sacct nor squeue: lost once sacct keeps saying so
            answered = self._watcher.last_success
            if answered is None:
                return True
            first = self._unknown_since.setdefault(jid, answered)
            return answered - first < self.lost_grace_s
        self._unknown_since.pop(jid, None)
        return word in ACTIVE_STATES

    def cancel(self, handle: JobHandle) -> None:
        self._check_backend(handle)
        jid = handle.job_id
        for argv in (["scancel", "--signal=KILL", f"{jid}.0"], ["scancel", jid]):
            try:  # a finished job, or a pending one without step 0, answers an error: nothing to do then
                subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False)
            except (OSError, subprocess.SubprocessError) as err:
                raise FailedJobError(f"slurm: {' '.join(argv)}: {err}") from err
        self._cancelled.add(jid)
        self._last_refresh = float("-inf")

    def reattach(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        jid = handle.job_id
        self._job(jid)
        self._track(jid)
        self._refresh()
        if self._state_word(jid) != "UNKNOWN":
            return True
        if final_status(handle.out_dir) is not None or read_exit_code(handle.out_dir) is not None:
            return True
        # Neither command lists it: ask both once more, fresh, before the caller resubmits it.
        self._last_refresh = float("-inf")
        self._refresh()
        return self._state_word(jid) != "UNKNOWN"

    def _lost_outcome(self, handle: JobHandle) -> JobOutcome:
        jid = handle.job_id
        state = self._watcher.get_state(jid, mode="cache") or "UNKNOWN"
        if state_word(state) == "UNKNOWN" and jid in self._queued:
            state = self._queued[jid]
        hint = _HINTS.get(state_word(state))
        shown = f"{state}: {hint}" if hint else state
        if state_word(state) == "UNKNOWN":
            shown = "UNKNOWN: sacct has no record of it"
        code = read_exit_code(handle.out_dir)
        if jid in self._cancelled:
            reason = f"cancelled by the controller (slurm job {jid}, state {shown})"
        elif code is not None:
            reason = f"{describe_exit(code)} without a status file (slurm job {jid}, state {shown})"
        else:
            reason = f"job {jid} left the queue (state {shown}) without a status file"
        return JobOutcome(state="failed", reason=with_log_tail(reason, handle.out_dir), exit_code=code)

    # -- helpers ---------------------------------------------------------------------------

    def _state_word(self, job_id: str) -> str:
        """sacct's state, else squeue's (a job sacct does not list yet), else UNKNOWN."""
        word = state_word(self._watcher.get_state(job_id, mode="cache"))
        return self._queued.get(job_id, word) if word == "UNKNOWN" else word

    def _job(self, job_id: str) -> submitit.SlurmJob:
        if job_id not in self._jobs:
            self._jobs[job_id] = submitit.SlurmJob(folder=self.folder, job_id=job_id)
        return self._jobs[job_id]

    def _track(self, job_id: str) -> None:
        if job_id not in self._tracked:
            self._tracked.add(job_id)
            self._watcher.register_job(job_id)
            self._last_refresh = float("-inf")

    def _refresh(self) -> None:
        """One sacct call for all unfinished tracked jobs, at most every poll_s / 2, and one squeue call
        for those sacct does not list."""
        now = time.monotonic()
        if now - self._last_refresh < self._refresh_s:
            return
        self._watcher.update()
        self._last_refresh = time.monotonic()
        unknown = sorted(j for j in self._tracked if state_word(self._watcher.get_state(j, mode="cache")) == "UNKNOWN")
        queued = squeue_states(unknown)
        if queued is not None:
            self._queued = queued


def squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """``{job_id: state word}`` of the jobs ``squeue`` lists (``-t all``: finished ones too, for
    ``MinJobAge``); None when squeue itself failed. It answers "Invalid job id specified" (exit 1)
    when it lists none of the ids.
    """
    if not job_ids:
        return {}
    try:
        done = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", ",".join(job_ids)],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        return None
    states = {}
    for line in done.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id in job_ids:
            states[job_id] = state_word(state)
    return states
