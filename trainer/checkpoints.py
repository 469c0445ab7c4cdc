"""The connectivity R2 checkpoints of a training run, scored in the loop or on a background thread.

Each checkpoint scores the parameters of its iteration (``Probe.recover``, then ``connectivity_r2``), writes its
row to ``connectivity_r2.log`` and keeps the recovered parameters of the run's last one (the final evaluation
reuses them instead of recovering the same parameters again). Scoring runs the model on its usual ops (the
``plain_ops`` it had when the checkpoints were set up, before a compiled loss switched it to plain ones): the
ops the final evaluation runs with, so the reused recovery is exactly the one it would compute.

In the background mode (``training.r2_async``) the loop only takes a snapshot (detached copies of the
parameters, on the model's device: an asynchronous copy on a GPU) and a single worker thread scores the
snapshots in submission order on a private copy of the model that shares the constant buffers (edge indices).
The loop never waits on it except in ``finish``. Rows, values and errors are the in-loop ones: the worker
scores the same parameters with the same code, writes rows in iteration order, stops at the first failure
(later checkpoints write nothing, as the in-loop mode never reaches them) and that failure re-raises in the
loop, as the same exception, at its next ``poll`` or in ``finish``.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import torch

from experiment.records import R2_HEADER, Phase, R2Row, format_r2_row
from trainer.metrics import Probe, Recovered, connectivity_r2
from trainer.model import FlyVisGNN

R2Async = Literal["auto", "on", "off"]


def background_r2(setting: R2Async, device: torch.device) -> bool:
    """``training.r2_async``: ``auto`` scores in the background on CUDA only (on the CPU a worker thread would
    compete with the training step's own threads for the same cores)."""
    return device.type == "cuda" if setting == "auto" else setting == "on"


class R2Log:
    """``connectivity_r2.log`` writer: header first, each row flushed as soon as it is known."""

    def __init__(self, path: Path | None) -> None:
        self._fh: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("w", encoding="utf-8")
            self._fh.write(R2_HEADER + "\n")
            self._fh.flush()

    def write(self, row: R2Row) -> None:
        if self._fh is not None:
            self._fh.write(format_r2_row(row))
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


@dataclass(frozen=True)
class _Job:
    epoch: int
    iteration: int
    phase: Phase
    final: bool  # the run's last checkpoint: its recovered parameters are kept


@dataclass(frozen=True)
class _Scored:
    row: R2Row
    recovered: Recovered | None
    final: bool = False


class R2Checkpoints:
    """Scores checkpoints of ``model`` with ``probe``; ``on_row`` sees each row in the loop's thread, in order."""

    def __init__(
        self,
        model: FlyVisGNN,
        probe: Probe,
        log_path: Path | None,
        *,
        background: bool,
        on_row: Callable[[R2Row], None] | None = None,
        on_recovered: Callable[[R2Row, Recovered], None] | None = None,
    ) -> None:
        self.model, self.probe = model, probe
        self._plain_ops = model.plain_ops  # the usual ops (evaluate's): built before the loss function sets its own
        self.rows: list[R2Row] = []
        self.recovered: Recovered | None = None
        self._on_row = on_row
        self._on_recovered = on_recovered  # sees every checkpoint's recovered parameters (tau, V_rest, W*)
        self._log = R2Log(log_path)
        self._pending: deque[Future[_Scored | None]] = deque()
        self._failed = False  # worker thread only: set at the first failure, later jobs are skipped
        self._executor: ThreadPoolExecutor | None = None
        self._shell: FlyVisGNN | None = None
        if background:
            shared = {id(b): b for b in model.buffers()}  # constant index buffers: shared, not copied
            self._shell = copy.deepcopy(model, shared)  # keeps the usual ops: the loss function never touches it
            # the worker thread gets the loop's denormal flushing (a per-thread CPU flag; train() sets it)
            self._executor = ThreadPoolExecutor(1, "r2", initializer=torch.set_flush_denormal, initargs=(True,))

    def submit(self, epoch: int, iteration: int, phase: Phase, *, final: bool = False) -> None:
        """Score the model's current parameters as the checkpoint (epoch, iteration)."""
        job = _Job(epoch, iteration, phase, final)
        if self._executor is None:
            loop_ops = self.model.plain_ops
            self.model.plain_ops = self._plain_ops
            try:
                self._collect(self._score(self.model, job))
            finally:
                self.model.plain_ops = loop_ops
            return
        snapshot = [p.detach().clone() for p in self.model.parameters()]
        self._pending.append(self._executor.submit(self._score_snapshot, snapshot, job))

    def poll(self) -> None:
        """Take the finished background rows, in order, without waiting; re-raises a checkpoint's failure."""
        while self._pending and self._pending[0].done():
            self._collect(self._pending.popleft().result())

    def finish(self) -> tuple[list[R2Row], Recovered | None]:
        """Wait for every checkpoint; the rows in iteration order and the last checkpoint's recovered parameters."""
        while self._pending:
            self._collect(self._pending.popleft().result())
        return self.rows, self.recovered

    def close(self) -> None:
        """Let the submitted checkpoints finish (their rows are written, as in the loop), then close the log."""
        try:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
        finally:
            self._log.close()

    # -- scoring ----------------------------------------------------------------------------------------------
    def _score(self, model: FlyVisGNN, job: _Job) -> _Scored:
        rec = self.probe.recover(model)
        row = R2Row(
            epoch=job.epoch,
            iteration=job.iteration,
            connectivity_r2=connectivity_r2(rec.W_corrected, self.probe.w_true),
            phase=job.phase,
        )
        self._log.write(row)
        return _Scored(row, rec if job.final or self._on_recovered is not None else None, job.final)

    def _score_snapshot(self, snapshot: list[torch.Tensor], job: _Job) -> _Scored | None:
        """Worker thread: load the snapshot into the private model and score it; nothing after a failure."""
        if self._failed or self._shell is None:
            return None
        try:
            with torch.no_grad():
                for p, value in zip(self._shell.parameters(), snapshot, strict=True):
                    p.copy_(value)
            return self._score(self._shell, job)
        except BaseException:
            self._failed = True
            raise

    def _collect(self, scored: _Scored | None) -> None:
        if scored is None:
            return
        self.rows.append(scored.row)
        if scored.recovered is not None and scored.final:
            self.recovered = scored.recovered
        if scored.recovered is not None and self._on_recovered is not None:
            self._on_recovered(scored.row, scored.recovered)
        if self._on_row is not None:
            self._on_row(scored.row)
