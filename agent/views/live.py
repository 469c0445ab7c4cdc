"""A live view of the batch being trained, for the controller's wait loop.

On a terminal it redraws a small block of lines in place (one per slot plus a header); otherwise
(log files, CI, schedulers) it prints one plain line when something changed, at most every
``interval_s`` seconds, so a log stays short. State comes from the slot folders: status.json for
the job state, the progress lines the trainer writes to slot.log for iteration progress and rates.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict

from agent.run_files import RunFiles
from agent.views.status import SlotProgress, format_duration, read_slot_progress
from experiment.exploration import SlotResult
from experiment.records import SLOT_LOG, RecordError, read_status

PLAIN_INTERVAL_S = 30.0
CURSOR_UP_LINES = "\x1b[{n}F"
CLEAR_LINE = "\x1b[2K"


class LiveSlot(BaseModel):
    """What the view knows about one slot of the batch."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    slot: int
    out_dir: Path
    state: str = "queued"  # queued / running / done / failed
    progress: SlotProgress | None = None
    log_age_s: float = 0.0  # seconds since slot.log was last written
    summary: str = ""

    def remaining_s(self) -> float | None:
        """Seconds left in the current stage: the stage's rate, minus the time since its last line."""
        if self.state != "running" or self.progress is None or self.progress.eta_s is None:
            return None
        return max(0.0, self.progress.eta_s - self.log_age_s)

    def total_estimate_s(self) -> float | None:
        """Projected length of the stage in progress (for queued slots that will run the same)."""
        p = self.progress
        return p.elapsed_s / p.fraction if p is not None and p.fraction > 0 else None

    def short(self) -> str:
        if self.state in ("done", "failed"):
            return f"s{self.slot} {self.summary}"
        if self.state == "running" and self.progress is not None:
            return f"s{self.slot} {self.progress.stage} {self.progress.percent}%"
        return f"s{self.slot} {self.state}"

    def line(self) -> str:
        head = f"  slot {self.slot} (iteration {self.iteration}): "
        if self.state == "running" and self.progress is not None:
            p = self.progress
            left = self.remaining_s()
            eta = f", {format_duration(left)} left" if left is not None else ""
            return head + f"{p.stage} {p.done}/{p.total} ({p.percent}%), {format_duration(p.elapsed_s)}{eta}"
        return head + (self.summary if self.state in ("done", "failed") else self.state)


def batch_eta_s(slots: Sequence[LiveSlot]) -> float | None:
    """Time until the batch is trained: the slowest running slot, plus one slot length per wave of queued slots."""
    running = [s for s in slots if s.state == "running"]
    left = [v for s in running if (v := s.remaining_s()) is not None]
    if not left:
        return None
    queued = sum(1 for s in slots if s.state == "queued")
    lengths = [v for s in running if (v := s.total_estimate_s()) is not None]
    waves = math.ceil(queued / max(1, len(running)))
    return max(left) + (waves * max(lengths) if waves and lengths else 0.0)


def result_summary(result: SlotResult) -> tuple[str, str]:
    """(state, short text) of a collected slot."""
    if result.status == "completed" and result.metrics is not None:
        m = result.metrics
        return "done", f"done conn_R2={m.connectivity_R2:.3f} V_rest_R2={m.V_rest_R2:.3f}"
    return "failed", "FAILED" + (f" ({result.failure_reason[:60]})" if result.failure_reason else "")


class LiveView:
    """Shows the batch in training; call ``tick()`` every few seconds from the wait loop."""

    def __init__(
        self,
        run_files: RunFiles,
        n_batches: int,
        stream: TextIO | None = None,
        *,
        interval_s: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.files = run_files
        self.n_batches = n_batches
        self.stream = stream if stream is not None else sys.stderr  # looked up now: redirects and captures apply
        self.interval_s = interval_s
        self.clock = clock
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.batch = 0
        self.slots: list[LiveSlot] = []
        self._started = 0.0
        self._drawn = 0
        self._last_key: str | None = None
        self._last_print: float | None = None

    # ------------------------------------------------------------------ controller hooks
    def start_batch(self, batch: int, plans: Sequence[tuple[int, int, Path]]) -> None:
        """A new batch: plans are (iteration, slot, out_dir)."""
        self.batch = batch
        self.slots = [
            LiveSlot(iteration=it, slot=s, out_dir=Path(out)) for it, s, out in sorted(plans, key=lambda p: p[1])
        ]
        self._started = self.clock()
        self._drawn = 0
        self._last_key = None
        self._last_print = None

    def tick(self) -> None:
        """Refresh every slot from its folder and show the result (redraw, or a rate-limited plain line)."""
        for s in self.slots:
            if s.state not in ("done", "failed"):
                self._refresh(s)
        self._show()

    def slot_finished(self, result: SlotResult) -> None:
        """A slot's result was collected: show its metrics (immediately on a terminal)."""
        for s in self.slots:
            if s.iteration == result.iteration:
                s.state, s.summary = result_summary(result)
                s.progress = None
        if self.tty:
            self._redraw()

    def end_batch(self) -> None:
        """Final state of the batch: the block stays on a terminal; one closing line otherwise."""
        if self.tty:
            self._redraw()
            self._drawn = 0
            return
        elapsed = format_duration(self.clock() - self._started)
        self._print(f"[live] batch {self.batch}/{self.n_batches} trained in {elapsed}: " + self._slots_text())

    def write(self, message: str) -> None:
        """Print a message above the live block without breaking the redraw."""
        if self.tty and self._drawn:
            self._clear()
            self.stream.write(message.rstrip("\n") + "\n")
            self._redraw()
        else:
            self._print(message.rstrip("\n"))

    # ------------------------------------------------------------------ internals
    def _refresh(self, s: LiveSlot) -> None:
        try:
            status = read_status(s.out_dir)
        except RecordError:
            status = None
        if status is None:
            return
        if status.state == "running":
            s.state = "running"
            s.progress = read_slot_progress(s.out_dir) or s.progress
            s.log_age_s = _age_s(s.out_dir / SLOT_LOG)
        else:  # finished but not yet collected by the controller
            s.state = "done" if status.state == "succeeded" else "failed"
            s.summary = "finished, collecting" if status.state == "succeeded" else f"FAILED ({status.reason or '?'})"

    def _header(self) -> str:
        its = [s.iteration for s in self.slots]
        span = f"iterations {min(its)}-{max(its)}" if its else "no slots"
        return f"batch {self.batch}/{self.n_batches} ({span})"

    def _eta_text(self) -> str:
        eta = batch_eta_s(self.slots)
        return f"ETA {format_duration(eta)}" if eta is not None else "ETA ?"

    def _slots_text(self) -> str:
        return " | ".join(s.short() for s in self.slots)

    def _show(self) -> None:
        if self.tty:
            self._redraw()
            return
        key = self._slots_text()
        now = self.clock()
        if key == self._last_key:
            return
        if self._last_print is not None and now - self._last_print < self.interval_s:
            return
        self._last_key = key
        self._last_print = now
        self._print(f"[live] {self._header()}: {key} | {self._eta_text()}")

    def _lines(self) -> list[str]:
        elapsed = format_duration(self.clock() - self._started)
        head = f"{self._header()}: {elapsed} elapsed, {self._eta_text()}"
        width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
        return [line[:width] for line in (head, *(s.line() for s in self.slots))]

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(CURSOR_UP_LINES.format(n=self._drawn) + (CLEAR_LINE + "\n") * self._drawn)
            self.stream.write(CURSOR_UP_LINES.format(n=self._drawn))
        self._drawn = 0

    def _redraw(self) -> None:
        lines = self._lines()
        if self._drawn:
            self.stream.write(CURSOR_UP_LINES.format(n=self._drawn))
        self.stream.write("".join(CLEAR_LINE + line + "\n" for line in lines))
        extra = self._drawn - len(lines)
        if extra > 0:  # fewer lines than last time: blank the rest, return to our end
            self.stream.write((CLEAR_LINE + "\n") * extra + CURSOR_UP_LINES.format(n=extra))
        self.stream.flush()
        self._drawn = len(lines)

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _age_s(path: Path) -> float:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return 0.0
