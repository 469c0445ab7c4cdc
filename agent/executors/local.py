"""Local backend: one subprocess per slot on this machine.

Each slot runs in its own session (``start_new_session=True``) so it can be killed as a group
and outlives a controller restart. With GPUs, every running slot gets one GPU through
``CUDA_VISIBLE_DEVICES``, and up to ``slots_per_gpu`` slots share a GPU (the least-loaded first;
with ``gpu_min_free_gb`` only while nvidia-smi reports that much free memory on it; through CUDA
MPS when ``nvidia-cuda-mps-control`` exists: the executor starts the daemon with its pipe under
``work_dir/mps`` and stops it on ``close()`` once none of its slots runs). Without GPUs, a
concurrency limit applies. Each slot gets ``threads_per_slot`` BLAS/OpenMP threads. Jobs beyond the limit wait in an in-process queue
that advances whenever the caller polls (``is_active``/``outcome``/``wait``).

The pid, its kernel start time (to tell a reused pid apart) and the GPU are written to
``slot.pid.json`` at launch; a restarted controller re-attaches from that file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from experiment.atomic import atomic_write_json
from experiment.config import DispatchConfig
from experiment.records import SLOT_LOG, RecordError, SlotStatus, read_status, utc_now, write_status

from .base import (
    Executor,
    JobHandle,
    JobOutcome,
    SlotJob,
    SubmissionError,
    describe_exit,
    final_status,
    prepare_out_dir,
    read_exit_code,
    retry_submission,
    with_log_tail,
)

PID_FILE = "slot.pid.json"
_KILL_GRACE_S = 3.0
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LOCAL_POLL_S = 0.5  # upper bound on the poll interval: checking local processes costs nothing
MPS_CONTROL = "nvidia-cuda-mps-control"
FreeMemory = Callable[[], dict[str, float]]  # GPU id -> free memory in GB


class PidRecord(BaseModel):
    """``slot.pid.json``: enough to find the process again after a controller restart."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    pid: int
    start_ticks: int | None
    started_epoch: float
    gpu: str | None = None


@dataclass
class _Running:
    handle: JobHandle
    record: PidRecord
    popen: subprocess.Popen[bytes] | None = None  # None when re-attached (not our child)


@dataclass
class _Queued:
    job: SlotJob
    handle: JobHandle
    script: Path


@dataclass
class _Done:
    exit_code: int | None
    pid: int | None = None
    note: str | None = None  # a reason that overrides the exit-code description


@dataclass
class _State:
    queue: deque[_Queued] = field(default_factory=deque)
    running: dict[str, _Running] = field(default_factory=dict)
    done: dict[str, _Done] = field(default_factory=dict)


def process_start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks (Linux /proc); None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def process_alive(pid: int, start_ticks: int | None) -> bool:
    """True when ``pid`` runs, is not a zombie, and (when known) started at ``start_ticks``."""
    if Path("/proc/self/stat").exists():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            return False
        return start_ticks is None or int(fields[19]) == start_ticks
    try:  # no /proc (macOS): existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def detect_gpus() -> list[str]:
    """GPU ids for pinning: CUDA_VISIBLE_DEVICES when set, else nvidia-smi, else torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids: list[str] = []
        for part in (p.strip() for p in visible.split(",")):
            if not part or part.startswith("-"):
                break  # CUDA ignores everything from the first invalid entry
            ids.append(part)
        return ids
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
        return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def gpu_free_memory_gb() -> dict[str, float]:
    """Free memory per GPU id (nvidia-smi's index) in GB; empty when nvidia-smi is unavailable."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    free: dict[str, float] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[1].replace(".", "", 1).isdigit():
            free[parts[0]] = float(parts[1]) / 1024.0
    return free


class _NoCapacity:
    """No GPU can take another slot right now (every one is full or short of free memory)."""


NO_CAPACITY = _NoCapacity()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LocalExecutor(Executor):
    """Subprocess slots with a concurrency limit, GPU pinning, timeouts and re-attach by pid.

    ``gpus``/``cores``/``free_memory`` override detection (tests); ``work_dir`` holds the MPS pipe and
    log folders when the executor starts CUDA MPS (slots write only into their own ``out_dir``).
    """

    backend = "local"

    def __init__(
        self,
        settings: DispatchConfig,
        work_dir: Path,
        *,
        gpus: list[str] | None = None,
        cores: int | None = None,
        free_memory: FreeMemory | None = None,
    ) -> None:
        super().__init__(min(settings.poll_s, LOCAL_POLL_S))  # polling local processes is cheap
        self.settings = settings
        self.work_dir = Path(work_dir)
        self._gpus = gpus  # None: detected on first use
        self._cores = cores
        self._free_memory = free_memory or gpu_free_memory_gb
        self._state = _State()
        self._mps_env: dict[str, str] | None = None  # set once MPS runs (started here or found running)
        self._mps_started = False

    # -- resources -------------------------------------------------------------------------

    @property
    def gpus(self) -> list[str]:
        if self._gpus is None:
            self._gpus = detect_gpus()
        return self._gpus

    @property
    def max_parallel(self) -> int:
        return self.settings.max_parallel or (len(self.gpus) * self.settings.slots_per_gpu if self.gpus else 2)

    @property
    def threads_per_slot(self) -> int:
        return self.settings.threads_per_slot or max(1, (self._cores or available_cores()) // self.max_parallel)

    def gpu_load(self) -> dict[str, int]:
        """Running slots per GPU id."""
        load = {g: 0 for g in self.gpus}
        for r in self._state.running.values():
            if r.record.gpu in load:
                load[r.record.gpu] += 1
        return load

    def _pick_gpu(self) -> str | _NoCapacity | None:
        """The least-loaded GPU that can take another slot; None without GPUs; NO_CAPACITY when all are full.

        A GPU takes up to ``slots_per_gpu`` slots; with ``gpu_min_free_gb`` a GPU that already runs a slot
        takes another only while it reports that much free memory (an idle GPU always takes one).
        """
        if not self.gpus:
            return None
        load = self.gpu_load()
        candidates = [g for g in self.gpus if load[g] < self.settings.slots_per_gpu]
        need = self.settings.gpu_min_free_gb
        if need is not None and any(load[g] for g in candidates):
            free = self._free_memory()
            candidates = [g for g in candidates if load[g] == 0 or free.get(g, float("inf")) >= need]
        if not candidates:
            return NO_CAPACITY
        return min(candidates, key=lambda g: (load[g], self.gpus.index(g)))

    # -- CUDA MPS --------------------------------------------------------------------------

    def _mps_wanted(self) -> bool:
        return bool(self.gpus) and self.settings.slots_per_gpu > 1 and self.settings.mps == "auto"

    def _ensure_mps(self) -> dict[str, str]:
        """The MPS env for slots: starts the control daemon (pipe under work_dir/mps) on first need; {} when
        MPS is off, not wanted or unavailable (slots then share the GPU by time-slicing)."""
        if self._mps_env is not None or not self._mps_wanted():
            return self._mps_env or {}
        control = shutil.which(MPS_CONTROL)
        if control is None:
            self._mps_env = {}
            return {}
        env = {
            "CUDA_MPS_PIPE_DIRECTORY": str(self.work_dir / "mps" / "pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(self.work_dir / "mps" / "log"),
        }
        for folder in env.values():
            Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run([control, "-d"], env={**os.environ, **env}, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is None or done.returncode != 0:
            # already running with this pipe (a restarted controller) answers on the pipe; else no MPS
            self._mps_env = env if (self.work_dir / "mps" / "pipe" / "control").exists() else {}
            return self._mps_env
        self._mps_started = True
        self._mps_env = env
        return env

    def close(self) -> None:
        """Stop the MPS daemon this executor started, unless slots of it still run (they would lose it)."""
        self._advance()
        if self._mps_started and not self._state.running and self._mps_env:
            control = shutil.which(MPS_CONTROL)
            if control is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run([control], input=b"quit\n", env={**os.environ, **self._mps_env}, timeout=30)
            self._mps_started = False
            self._mps_env = None

    # -- interface -------------------------------------------------------------------------

    def submit(self, job: SlotJob) -> JobHandle:
        script = prepare_out_dir(job)
        handle = JobHandle(
            backend=self.backend,
            job_id=f"local-{uuid.uuid4().hex[:12]}",
            name=job.name,
            out_dir=job.out_dir,
            submitted_at=utc_now(),
        )
        queued = _Queued(job=job, handle=handle, script=script)
        self._advance()
        if len(self._state.running) < self.max_parallel and not self._state.queue:
            gpu = self._pick_gpu()
            if not isinstance(gpu, _NoCapacity):
                self._launch(queued, gpu, raise_errors=True)
                return handle
        self._state.queue.append(queued)
        return handle

    def is_active(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        self._advance()
        jid = handle.job_id
        if jid not in self._state.done and jid not in self._state.running and not self._is_queued(jid):
            self.reattach(handle)
            self._advance()
        return jid in self._state.running or self._is_queued(jid)

    def cancel(self, handle: JobHandle) -> None:
        self._check_backend(handle)
        jid = handle.job_id
        for q in list(self._state.queue):
            if q.handle.job_id == jid:
                self._state.queue.remove(q)
                self._write_failed(handle, "cancelled before it started", None)
                self._state.done[jid] = _Done(exit_code=None, note="cancelled before it started")
                return
        if jid not in self._state.running:
            self.reattach(handle)
        if jid in self._state.running:
            self._kill(self._state.running.pop(jid), "cancelled")
        self._advance()

    def reattach(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        jid = handle.job_id
        if jid in self._state.running or jid in self._state.done or self._is_queued(jid):
            return True
        record = _read_pid_record(handle.out_dir)
        if record is None or record.job_id != jid:
            return final_status(handle.out_dir) is not None
        if process_alive(record.pid, record.start_ticks):
            self._state.running[jid] = _Running(handle=handle, record=record)
        else:
            self._state.done[jid] = _Done(exit_code=read_exit_code(handle.out_dir), pid=record.pid)
        return True

    def _poll(self) -> None:
        self._advance()

    def _lost_outcome(self, handle: JobHandle) -> JobOutcome:
        done = self._state.done.get(handle.job_id)
        if done is None:
            return JobOutcome(state="failed", reason="job was never started (unknown to this controller)")
        if done.note is not None:
            return JobOutcome(state="failed", reason=done.note, exit_code=done.exit_code)
        if done.exit_code is None:
            what = f"process {done.pid} ended" if done.pid else "job ended"
            return JobOutcome(
                state="failed",
                reason=with_log_tail(f"{what} without a status file (exit code unknown)", handle.out_dir),
            )
        reason = f"{describe_exit(done.exit_code)} without a status file"
        return JobOutcome(state="failed", reason=with_log_tail(reason, handle.out_dir), exit_code=done.exit_code)

    # -- bookkeeping -----------------------------------------------------------------------

    def _is_queued(self, job_id: str) -> bool:
        return any(q.handle.job_id == job_id for q in self._state.queue)

    def _advance(self) -> None:
        """Reap finished processes, enforce timeouts, then start queued jobs while capacity allows."""
        timeout_s = self.settings.slot_timeout_min * 60
        now = time.time()
        for jid, run in list(self._state.running.items()):
            code = _exit_code_of(run)
            if code is not _STILL_RUNNING:
                del self._state.running[jid]
                self._state.done[jid] = _Done(exit_code=code, pid=run.record.pid)
            elif now - run.record.started_epoch > timeout_s:
                del self._state.running[jid]
                self._kill(run, f"timed out after {self.settings.slot_timeout_min:g} min")
        while self._state.queue and len(self._state.running) < self.max_parallel:
            gpu = self._pick_gpu()
            if isinstance(gpu, _NoCapacity):
                break
            self._launch(self._state.queue.popleft(), gpu, raise_errors=False)

    def _launch(self, queued: _Queued, gpu: str | None, *, raise_errors: bool) -> None:
        """Start a job's wrapper in a new session on ``gpu``; retry spawn failures up to the deadline."""
        env = dict(os.environ)
        env.update({var: str(self.threads_per_slot) for var in _THREAD_VARS})
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            env.update(self._ensure_mps())

        def spawn() -> subprocess.Popen[bytes]:
            with (queued.job.out_dir / SLOT_LOG).open("ab") as log:
                return subprocess.Popen(
                    ["/bin/sh", str(queued.script)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )

        handle = queued.handle
        try:
            popen = retry_submission(
                spawn,
                deadline_s=self.settings.submit_deadline_s,
                what=f"local: starting {handle.name}",
                retry_on=(OSError,),
            )
        except SubmissionError as err:
            if raise_errors:
                raise
            self._write_failed(handle, str(err), None)
            self._state.done[handle.job_id] = _Done(exit_code=None, note=str(err))
            return
        record = PidRecord(
            job_id=handle.job_id,
            pid=popen.pid,
            start_ticks=process_start_ticks(popen.pid),
            started_epoch=time.time(),
            gpu=gpu,
        )
        atomic_write_json(handle.out_dir / PID_FILE, record.model_dump())
        self._state.running[handle.job_id] = _Running(handle=handle, record=record, popen=popen)

    def _kill(self, run: _Running, reason: str) -> None:
        """SIGTERM the slot's process group, SIGKILL it after a grace period, record ``reason``."""
        pid = run.record.pid
        if _exit_code_of(run) is _STILL_RUNNING:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + _KILL_GRACE_S
            while _exit_code_of(run) is _STILL_RUNNING and time.monotonic() < deadline:
                time.sleep(0.05)
            if _exit_code_of(run) is _STILL_RUNNING:
                _signal_group(pid, signal.SIGKILL)
                if run.popen is not None:
                    run.popen.wait()
        _signal_group(pid, signal.SIGKILL)  # stragglers the slot left in its group
        self._state.done[run.handle.job_id] = _Done(exit_code=None, pid=pid, note=reason)
        if final_status(run.handle.out_dir, unreadable_is_final=False) is None:  # a torn file is no outcome
            self._write_failed(run.handle, reason, run.record.gpu)

    def _write_failed(self, handle: JobHandle, reason: str, gpu: str | None) -> None:
        """Record a failure the executor itself caused (timeout, cancel) once the job is dead."""
        try:
            previous = read_status(handle.out_dir)
        except RecordError:
            previous = None
        write_status(
            handle.out_dir,
            SlotStatus(
                state="failed",
                reason=reason,
                host=(previous.host if previous else None) or socket.gethostname(),
                gpu=(previous.gpu if previous else None) or gpu,
                pid=previous.pid if previous else None,
                started_at=previous.started_at if previous else None,
                ended_at=utc_now(),
            ),
        )


_STILL_RUNNING = object()


def _exit_code_of(run: _Running) -> object:
    """The job's exit code, None when it ended with no known code, or _STILL_RUNNING."""
    if run.popen is not None:
        code = run.popen.poll()
        return _STILL_RUNNING if code is None else code
    if process_alive(run.record.pid, run.record.start_ticks):
        return _STILL_RUNNING
    return read_exit_code(run.handle.out_dir)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read_pid_record(out_dir: Path) -> PidRecord | None:
    try:
        return PidRecord.model_validate_json((out_dir / PID_FILE).read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError):
        return None
