"""The executor interface shared by every dispatch backend, and the pieces all backends use.

One slot is one job: a command that writes ``OUT/status.json`` (experiment.records.SlotStatus)
atomically. COMPLETION IS THE STATUS FILE: a job that is no longer active without a final status
is a failure, whatever the scheduler says about it. Every backend runs the command through the
same small shell wrapper (``slot.sh``), which appends stdout+stderr to ``slot.log`` and records
the command's exit code in ``slot.exit``, so the exit code survives a controller restart and a
scheduler that reports none.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field

from experiment.atomic import atomic_write_text
from experiment.records import SLOT_LOG, STATUS_JSON, RecordError, SlotStatus, read_status, utc_now

SLOT_SCRIPT = "slot.sh"
EXIT_FILE = "slot.exit"
PREVIOUS_STATUS = "status.previous.json"

_T = TypeVar("_T")


class SubmissionError(RuntimeError):
    """The scheduler refused a job until the retry deadline passed (one line)."""


class BackendUnavailableError(RuntimeError):
    """The configured backend cannot run here (e.g. no ``sbatch`` on PATH); one line."""


class SlotJob(BaseModel):
    """One slot to run: ``command`` in ``cwd`` (default: the controller's working directory).

    stdout+stderr go to ``out_dir / "slot.log"``; ``env`` is applied last, over anything the
    executor sets (threads, GPU pinning).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    command: list[str] = Field(min_length=1)
    out_dir: Path
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None


class JobHandle(BaseModel):
    """A submitted job; JSON-serialisable so the journal can store it and a new controller re-attach."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str
    job_id: str
    name: str
    out_dir: Path
    submitted_at: str


class JobOutcome(BaseModel):
    """How a finished job ended: from its status file, or why it has none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["succeeded", "failed"]
    reason: str | None = None
    exit_code: int | None = None

    @classmethod
    def from_status(cls, status: SlotStatus) -> JobOutcome:
        state: Literal["succeeded", "failed"] = "succeeded" if status.state == "succeeded" else "failed"
        return cls(state=state, reason=status.reason, exit_code=status.exit_code)


OnUpdate = Callable[[JobHandle, JobOutcome], None]


class Executor(ABC):
    """Runs slot jobs on one backend. Subclasses implement submit/is_active/cancel/reattach and
    ``_lost_outcome``; ``outcome`` and ``wait`` are shared."""

    backend: ClassVar[str]

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s

    @abstractmethod
    def submit(self, job: SlotJob) -> JobHandle:
        """Start (or queue) a job and return its handle at once."""

    @abstractmethod
    def is_active(self, handle: JobHandle) -> bool:
        """True while the backend has the job queued or running."""

    @abstractmethod
    def cancel(self, handle: JobHandle) -> None:
        """Stop a queued or running job; a finished job is left alone."""

    @abstractmethod
    def reattach(self, handle: JobHandle) -> bool:
        """After a controller restart: True when the job is still active or has left a trace from
        which ``outcome`` can tell how it ended; False when nothing is known (resubmit it)."""

    @abstractmethod
    def _lost_outcome(self, handle: JobHandle) -> JobOutcome:
        """The failure of a job that is no longer active and left no final status file."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what the executor started for its jobs (local: the CUDA MPS daemon) once none runs."""

    def _poll(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Advance backend bookkeeping once per outcome call (local queue, scheduler cache)."""

    def outcome(self, handle: JobHandle) -> JobOutcome | None:
        """None while the job is active without a final status; otherwise how it ended.

        A final status file counts as completion even if the scheduler still lists the job.
        """
        self._check_backend(handle)
        self._poll()
        final = final_status(handle.out_dir, unreadable_is_final=False)  # a live job may be mid-write
        if final is not None:
            return final
        if self.is_active(handle):
            return None
        final = final_status(handle.out_dir)  # written between the two reads
        return final if final is not None else self._lost_outcome(handle)

    def wait(
        self,
        handles: Iterable[JobHandle],
        *,
        timeout_s: float | None = None,
        on_update: OnUpdate | None = None,
    ) -> dict[str, JobOutcome]:
        """Poll until every job has an outcome (or ``timeout_s`` passes); keyed by job name.

        ``on_update(handle, outcome)`` is called once per job as it finishes. On timeout the
        result holds only the finished jobs.
        """
        pending: dict[str, JobHandle] = {}
        for h in handles:
            if h.name in pending:
                raise ValueError(f"wait: job name {h.name!r} appears twice; names must be unique")
            pending[h.name] = h
        results: dict[str, JobOutcome] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            for name, handle in list(pending.items()):
                result = self.outcome(handle)
                if result is None:
                    continue
                results[name] = result
                del pending[name]
                if on_update is not None:
                    on_update(handle, result)
            if not pending:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            time.sleep(self.poll_s if left is None else min(self.poll_s, left))
        return results

    def _check_backend(self, handle: JobHandle) -> None:
        if handle.backend != self.backend:
            raise ValueError(
                f"job {handle.name}: handle.backend: is {handle.backend!r}, this executor runs {self.backend!r}"
            )


# ---------------------------------------------------------------------------------------------
# Helpers shared by the backends


def final_status(out_dir: Path, *, unreadable_is_final: bool = True) -> JobOutcome | None:
    """The outcome recorded in ``status.json`` when it is final; None when absent or running.

    An unreadable status file is a failure with the reader's one-line message, or None with
    ``unreadable_is_final=False`` (the job may still be writing it, non-atomically).
    """
    try:
        status = read_status(out_dir)
    except RecordError as err:
        return JobOutcome(state="failed", reason=str(err)) if unreadable_is_final else None
    if status is None or status.state == "running":
        return None
    return JobOutcome.from_status(status)


def prepare_out_dir(job: SlotJob, extra_env: dict[str, str] | None = None) -> Path:
    """Create the slot folder, set stale control files aside and write the wrapper script.

    A status file left by an earlier attempt would read as completion before the new job even
    starts, so it is renamed to ``status.previous.json``; the old exit code is removed.
    """
    out = job.out_dir
    out.mkdir(parents=True, exist_ok=True)
    status = out / STATUS_JSON
    if status.exists():
        os.replace(status, out / PREVIOUS_STATUS)
    (out / EXIT_FILE).unlink(missing_ok=True)
    script = out / SLOT_SCRIPT
    atomic_write_text(script, render_slot_script(job, extra_env))
    with (out / SLOT_LOG).open("a", encoding="utf-8") as log:
        log.write(f"=== flyvis-agent: {job.name} submitted at {utc_now()} ===\n")
    return script


def render_slot_script(job: SlotJob, extra_env: dict[str, str] | None = None) -> str:
    """POSIX sh wrapper: cd, export env, run the command into slot.log, record its exit code."""
    out = job.out_dir.resolve()
    cwd = (job.cwd or Path.cwd()).resolve()
    log = shlex.quote(str(out / SLOT_LOG))
    exit_tmp = shlex.quote(str(out / f".{EXIT_FILE}.tmp"))
    exit_file = shlex.quote(str(out / EXIT_FILE))
    env = {**(extra_env or {}), **job.env}
    lines = [
        "#!/bin/sh",
        f"# flyvis-agent slot wrapper for {job.name}: output to slot.log, exit code to slot.exit",
        f"cd {shlex.quote(str(cwd))} || exit 97",
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
        f"{shlex.join(job.command)} >>{log} 2>&1 </dev/null",
        "rc=$?",
        f'printf "%s\\n" "$rc" >{exit_tmp} && mv -f {exit_tmp} {exit_file}',
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


def read_exit_code(out_dir: Path) -> int | None:
    """The exit code the wrapper recorded, or None when it did not get to write one."""
    try:
        return int((out_dir / EXIT_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def describe_exit(code: int) -> str:
    """Words for an exit code; negative codes are Popen's 'killed by signal N'."""
    signum = -code if code < 0 else code - 128 if 128 < code < 160 else None
    if signum == 9:
        return "killed (signal 9, out of memory?)"
    if signum is not None:
        return f"killed by signal {signum}"
    return f"exit code {code}"


def log_tail(out_dir: Path, n_lines: int = 3, max_chars: int = 300) -> str:
    """The last non-empty lines of slot.log as one trimmed line ('' when there is none)."""
    path = out_dir / SLOT_LOG
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("=== flyvis-agent:")]
    tail = re.sub(r"\s+", " ", " | ".join(lines[-n_lines:]))
    return tail if len(tail) <= max_chars else "..." + tail[-(max_chars - 3) :]


def with_log_tail(reason: str, out_dir: Path) -> str:
    tail = log_tail(out_dir)
    return f"{reason}; log: {tail}" if tail else reason


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def retry_submission(
    attempt: Callable[[], _T],
    *,
    deadline_s: float,
    what: str,
    retry_on: tuple[type[BaseException], ...],
) -> _T:
    """Call ``attempt`` with exponential backoff until it succeeds or ``deadline_s`` has passed.

    Only the exception types in ``retry_on`` are retried; past the deadline the last one becomes
    a one-line SubmissionError.
    """
    first_wait = max(0.01, min(2.0, deadline_s / 30))
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(deadline_s),
        wait=tenacity.wait_exponential(multiplier=first_wait, min=first_wait, max=max(first_wait, deadline_s / 4)),
        retry=tenacity.retry_if_exception_type(retry_on),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except tenacity.RetryError as err:
        last = err.last_attempt.exception()
        n = err.last_attempt.attempt_number
        raise SubmissionError(
            f"{what}: gave up after {n} attempts in {deadline_s:g} s: {one_line(last) if last else 'unknown error'}"
        ) from last
