"""LSF backend: a thin adapter over ``bsub``, ``bjobs`` and ``bkill`` (submitit has no LSF release).

Submission: ``bsub -J NAME -o OUT/lsf_%J.log [-q QUEUE] -n CPUS [-gpu "num=N"]
-R "rusage[mem=MB] span[hosts=1]" -W MINUTES [extra_args] /bin/bash OUT/lsf_job.sh`` where
``lsf_job.sh`` holds the setup lines and then runs the slot wrapper; the job id is parsed from
``Job <123> is submitted to queue <normal>.``. Memory is given in MB (LSF's default
``LSF_UNIT_FOR_LIMITS``). Status: ``bjobs -o "JOBID STAT EXIT_CODE" -noheader ID ...`` (one call
for all tracked jobs, at most every ``poll_s / 2``); a job LSF has forgotten answers
``Job <123> is not found``. Cancel: ``bkill -s KILL ID`` (a plain ``bkill`` sends SIGTERM and lets a job
that ignores it run on for ``JOB_TERMINATE_INTERVAL``).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from experiment.atomic import atomic_write_text
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
    one_line,
    prepare_out_dir,
    read_exit_code,
    retry_submission,
    with_log_tail,
)

JOB_SCRIPT = "lsf_job.sh"
ACTIVE_STATES = frozenset({"PEND", "PROV", "WAIT", "RUN", "PSUSP", "USUSP", "SSUSP", "UNKWN"})
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted")
_NOT_FOUND = re.compile(r"Job <(\d+)> is not found")
_COMMAND_TIMEOUT_S = 120


class SchedulerCommandError(RuntimeError):
    """A scheduler command failed or answered something unreadable (retried on submission)."""


@dataclass(frozen=True)
class LsfJobState:
    """One job as bjobs reports it; ``stat`` is None when bjobs no longer knows the job."""

    stat: str | None
    exit_code: int | None = None


def parse_job_id(output: str) -> str:
    """The job id from bsub's ``Job <123> is submitted to queue <q>.`` line."""
    match = _SUBMITTED.search(output)
    if match is None:
        raise SchedulerCommandError(f"bsub: no 'Job <id> is submitted' in its output: {' '.join(output.split())[:200]}")
    return match.group(1)


def parse_bjobs(stdout: str, stderr: str) -> dict[str, LsfJobState]:
    """Rows ``JOBID STAT EXIT_CODE`` (EXIT_CODE ``-`` when none) and ``Job <id> is not found``."""
    states: dict[str, LsfJobState] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            code = fields[2] if len(fields) > 2 else "-"
            states[fields[0]] = LsfJobState(stat=fields[1].upper(), exit_code=int(code) if code.isdigit() else None)
    for match in _NOT_FOUND.finditer(stdout + "\n" + stderr):
        states[match.group(1)] = LsfJobState(stat=None)
    return states


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False)


class LsfExecutor(Executor):
    """Slot jobs as LSF jobs; states from bjobs, re-attach by job id."""

    backend = "lsf"

    def __init__(self, settings: DispatchConfig, work_dir: Path) -> None:
        super().__init__(settings.poll_s)
        missing = [cmd for cmd in ("bsub", "bjobs", "bkill") if shutil.which(cmd) is None]
        if missing:
            raise BackendUnavailableError(
                f"dispatch.executor: lsf needs {', '.join(missing)} on PATH; run the controller on a submit host"
            )
        self.settings = settings
        self.work_dir = Path(work_dir)
        self._refresh_s = min(settings.poll_s, 60.0) / 2
        self._last_refresh = float("-inf")
        self._states: dict[str, LsfJobState] = {}
        self._tracked: set[str] = set()
        self._cancelled: set[str] = set()

    def bsub_argv(self, job: SlotJob, job_script: Path) -> list[str]:
        """The full bsub command line for one slot."""
        cfg = self.settings.lsf
        argv = ["bsub", "-J", job.name, "-o", str(job.out_dir.resolve() / "lsf_%J.log")]
        if cfg.queue:
            argv += ["-q", cfg.queue]
        argv += ["-n", str(cfg.cpus_per_task)]
        if cfg.gpus_per_job:
            argv += ["-gpu", f"num={cfg.gpus_per_job}"]
        argv += ["-R", f"rusage[mem={round(cfg.mem_gb * 1024)}] span[hosts=1]", "-W", str(cfg.time_min)]
        return [*argv, *cfg.extra_args, "/bin/bash", str(job_script)]

    # -- interface -------------------------------------------------------------------------

    def submit(self, job: SlotJob) -> JobHandle:
        threads = str(self.settings.lsf.cpus_per_task)
        wrapper = prepare_out_dir(job, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        job_script = job.out_dir / JOB_SCRIPT
        body = ["#!/bin/bash", f"# flyvis-agent LSF job {job.name}", *self.settings.lsf.setup]
        atomic_write_text(job_script, "\n".join([*body, f"exec /bin/sh {shlex.quote(str(wrapper.resolve()))}", ""]))
        argv = self.bsub_argv(job, job_script.resolve())

        def attempt() -> str:
            done = _run(argv)
            if done.returncode != 0:
                raise SchedulerCommandError(
                    f"bsub exited {done.returncode}: {' '.join((done.stderr or done.stdout).split())[:200]}"
                )
            return parse_job_id(done.stdout + "\n" + done.stderr)

        job_id = retry_submission(
            attempt,
            deadline_s=self.settings.submit_deadline_s,
            what=f"lsf: bsub for {job.name}",
            retry_on=(SchedulerCommandError, OSError, subprocess.SubprocessError),
        )
        self._track(job_id)
        return JobHandle(
            backend=self.backend, job_id=job_id, name=job.name, out_dir=job.out_dir, submitted_at=utc_now()
        )

    def is_active(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        self._track(handle.job_id)
        self._refresh()
        state = self._states.get(handle.job_id)
        return state is None or state.stat in ACTIVE_STATES  # None: bjobs has not answered yet

    def cancel(self, handle: JobHandle) -> None:
        self._check_backend(handle)
        try:
            _run(["bkill", "-s", "KILL", handle.job_id])  # a finished job answers an error; nothing to do then
        except (OSError, subprocess.SubprocessError) as err:
            raise SchedulerCommandError(f"lsf: bkill -s KILL {handle.job_id}: {one_line(err)}") from err
        self._cancelled.add(handle.job_id)
        self._last_refresh = float("-inf")

    def reattach(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        self._track(handle.job_id)
        self._refresh()
        state = self._states.get(handle.job_id)
        if state is None or state.stat is not None:
            return True
        return final_status(handle.out_dir) is not None or read_exit_code(handle.out_dir) is not None

    def _lost_outcome(self, handle: JobHandle) -> JobOutcome:
        jid = handle.job_id
        state = self._states.get(jid, LsfJobState(stat=None))
        code = read_exit_code(handle.out_dir)
        if jid in self._cancelled:
            reason = f"cancelled by the controller (lsf job {jid}, state {state.stat or 'gone'})"
        elif code is not None:
            reason = f"{describe_exit(code)} without a status file (lsf job {jid}, state {state.stat or 'gone'})"
        elif state.stat is None:
            reason = f"job {jid} left the queue (bjobs: not found) without a status file"
        else:
            shown = state.stat if state.exit_code is None else f"{state.stat}, exit code {state.exit_code}"
            reason = f"job {jid} left the queue (state {shown}) without a status file"
            code = state.exit_code
        return JobOutcome(state="failed", reason=with_log_tail(reason, handle.out_dir), exit_code=code)

    # -- helpers ---------------------------------------------------------------------------

    def _track(self, job_id: str) -> None:
        if job_id not in self._tracked:
            self._tracked.add(job_id)
            self._last_refresh = float("-inf")

    def _refresh(self) -> None:
        """One bjobs call for every tracked job not yet final; a failed call keeps the old states."""
        now = time.monotonic()
        if now - self._last_refresh < self._refresh_s:
            return
        self._last_refresh = now
        ids = sorted(j for j in self._tracked if j not in self._states or self._states[j].stat in ACTIVE_STATES)
        if not ids:
            return
        try:
            done = _run(["bjobs", "-o", "JOBID STAT EXIT_CODE", "-noheader", *ids])
        except (OSError, subprocess.SubprocessError):
            return
        self._states.update({k: v for k, v in parse_bjobs(done.stdout, done.stderr).items() if k in self._tracked})
