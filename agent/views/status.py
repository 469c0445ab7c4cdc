"""Where a run stands, read from its directory alone: ``python -m agent.views.status RUN_DIR``.

Reads the journal (never writes it, never takes the controller's lock), the slot folders
(status.json, slot.log progress lines) and the base config's claude: block, so it is safe to run
at any time beside a live controller. ``load_run_view`` is also the report's reader.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from agent.cli_args import VIEW_EXIT_CODES, OneLineParser, exit_codes_epilog
from agent.config_policy import load_slot_template
from agent.journal import Journal, JournalError
from agent.profile import Profile
from agent.prompts import run_profile
from agent.run_files import RunFiles
from agent.run_state import RunState
from agent.tree import best_node
from experiment.config import ClaudeConfig
from experiment.exploration import SlotResult, block_of
from experiment.records import SLOT_LOG, RecordError, SlotStatus, read_status

PROGRESS_LINE = re.compile(
    r"^(?P<stage>[\w.-]+): (?P<done>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\) (?P<secs>\d+(?:\.\d+)?)s"
)
LOG_TAIL_BYTES = 8192


class RunViewError(ValueError):
    """The directory is not a readable run; one line naming the file and the problem."""


class SlotProgress(BaseModel):
    """The last progress line of a slot's log: ``train: 1200/3000 (40%) 35s ...``."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    done: int
    total: int
    percent: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left in this stage at the rate seen so far (None before any progress)."""
        if self.done <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s * (self.total - self.done) / self.done


SlotState = Literal["planned", "submitted", "running", "succeeded", "failed"]


class SlotView(BaseModel):
    """One planned slot of a batch: its job state, progress and (when collected) its result."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    slot: int
    state: SlotState
    progress: SlotProgress | None = None
    started_at: str | None = None
    result: SlotResult | None = None


class LlmTotals(BaseModel):
    """Sum over the journal's llm_response events."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    backends: list[str] = []


class RunView(BaseModel):
    """Everything the status command and the report read from a run directory; the journal as its RunState."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    dir: Path
    name: str
    info: dict[str, Any]
    claude: ClaudeConfig
    state: RunState
    profile: Profile | None = None  # the exploration's (None: the alternating one); ranks the best node

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.dir)

    @property
    def results(self) -> list[SlotResult]:
        return self.state.results

    @property
    def n_iterations(self) -> int:
        """The run's size as its journal recorded it (--iterations), not the config's default."""
        assert self.state.n_iterations is not None
        return self.state.n_iterations

    @property
    def n_batches(self) -> int:
        return self.state.n_batches

    def batch_iterations(self, batch: int) -> list[int]:
        return self.state.batch_iterations(batch)


# ---------------------------------------------------------------------------------------------- reading


def _open_files(path: Path) -> tuple[RunFiles, dict[str, Any]]:
    """The run's RunFiles and its run.json content ({} when absent)."""
    try:
        files = RunFiles(path)
        info = files.read_run_info()
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise RunViewError(f"{path / 'run.json'}: unreadable run info ({err.__class__.__name__}: {err})") from None
    if info is not None and not isinstance(info, dict):
        raise RunViewError(f"{path / 'run.json'}: run info must be a JSON object")
    return files, info or {}


def _read_claude(files: RunFiles) -> ClaudeConfig:
    if not files.base_config.exists():
        return ClaudeConfig()
    try:
        return load_slot_template(files.base_config).config.claude
    except (ValueError, OSError) as err:
        raise RunViewError(" ".join(str(err).split())) from None


def load_run_view(run_dir: str | Path) -> RunView:
    """Read a run directory; RunViewError (one line) when it is missing or not a run."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunViewError(f"{path}: no such run directory")
    files, info = _open_files(path)
    if not info and not (path / "journal.jsonl").exists():
        raise RunViewError(f"{path}: not a run directory (neither run.json nor journal.jsonl)")
    claude = _read_claude(files)
    try:
        state = RunState.from_events(Journal(path).events, n_slots=claude.n_slots)
    except (JournalError, OSError) as err:
        raise RunViewError(str(err)) from None
    # the journal knows --iterations (and a resume that extended it); run.json and the config may not
    if state.n_iterations is None:  # no start event yet
        n_iter = info.get("n_iterations", claude.n_iterations)
        if not isinstance(n_iter, int) or n_iter < 1:
            raise RunViewError(f"{files.run_json}: n_iterations: must be a positive integer, got {n_iter!r}")
        state = dataclasses.replace(state, n_iterations=n_iter)
    started = state.last_start.instructions if state.last_start is not None else None
    profile = run_profile(started or info.get("instructions"))
    return RunView(dir=path, name=files.name, info=info, claude=claude, state=state, profile=profile)


def parse_progress(text: str) -> SlotProgress | None:
    """The last progress line in a log text (``stage: done/total (pct%) secs s``), or None."""
    for line in reversed(text.replace("\r", "\n").splitlines()):
        m = PROGRESS_LINE.match(line.strip())
        if m:
            return SlotProgress(
                stage=m["stage"],
                done=int(m["done"]),
                total=int(m["total"]),
                percent=int(m["pct"]),
                elapsed_s=float(m["secs"]),
            )
    return None


def read_slot_progress(out_dir: Path) -> SlotProgress | None:
    """Progress from the tail of ``slot.log`` (None when the log is missing or has no progress line)."""
    path = out_dir / SLOT_LOG
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return parse_progress(fh.read().decode("utf-8", errors="replace"))
    except OSError:
        return None


def llm_totals(view: RunView) -> LlmTotals:
    s = view.state
    return LlmTotals(
        calls=s.llm_calls,
        cost_usd=s.cost_usd,
        input_tokens=s.input_tokens,
        output_tokens=s.output_tokens,
        backends=list(s.backends),
    )


# ---------------------------------------------------------------------------------------------- phase


def _span(view: RunView, batch: int) -> str:
    its = view.batch_iterations(batch)
    return f"{its[0]}-{its[-1]}" if its else "-"


def current_batch(view: RunView) -> int:
    """The batch the run is working on (the last one once all analyses are applied); 0 = PARALLEL START."""
    return view.state.current_batch


def run_phase(view: RunView) -> str:
    """One line: finished / analysis pending / paused for review / training / waiting for analysis ..."""
    state = view.state
    phase = state.phase
    if phase == "finished":
        return "finished"
    if phase == "interrupted":
        assert state.interrupted is not None
        return f"interrupted ({state.interrupted.cancelled_jobs} jobs cancelled); resume with --resume"
    if phase == "analysis_pending":
        b = state.pending_batch
        assert b is not None
        return f"analysis pending for batch {b} ({state.n_rejected(b)} rejected replies); fix, then resume"
    if phase == "review_pause":
        return f"paused for review after batch {state.paused_batch}"
    if phase == "starting":
        if 0 in state.accepted:
            return "applying the PARALLEL START reply"
        return "waiting for the PARALLEL START reply" + _rejected_note(view, 0)
    if phase == "finishing":
        return "finishing (all batches analysed)"
    batch = state.last_applied + 1
    if batch not in state.configs_applied:
        return f"writing the configs of batch {batch}"
    if phase == "waiting_for_slots":
        planned = view.batch_iterations(batch)
        done = set(state.finished_slots) & set(planned)
        return f"training batch {batch} (iterations {_span(view, batch)}): {len(done)}/{len(planned)} slots done"
    if batch not in state.accepted:  # asking_llm
        return f"waiting for analysis of batch {batch} (iterations {_span(view, batch)})" + _rejected_note(view, batch)
    return f"applying the analysis of batch {batch}"


def _rejected_note(view: RunView, batch: int) -> str:
    n = view.state.n_rejected(batch)
    return f" ({n} rejected replies so far)" if n else ""


# ---------------------------------------------------------------------------------------------- slots


def slot_views(view: RunView, batch: int) -> list[SlotView]:
    """The batch's planned slots with their state (journal first, then status.json) and progress."""
    planned = [(p.iteration, p.slot) for p in view.state.plan(batch) or []]
    results = view.state.finished_slots
    files = view.files
    out = []
    for iteration, slot in sorted(planned, key=lambda p: p[1]):
        folder = files.slot_dir(iteration, slot)
        if iteration in results:
            r = results[iteration]
            state: SlotState = "succeeded" if r.status == "completed" else "failed"
            out.append(SlotView(iteration=iteration, slot=slot, state=state, result=r))
            continue
        try:
            status: SlotStatus | None = read_status(folder)
        except RecordError:
            status = None
        if status is not None:
            state = status.state
        elif iteration in view.state.submitted:
            state = "submitted"
        else:
            state = "planned"
        progress = read_slot_progress(folder) if state == "running" else None
        out.append(
            SlotView(
                iteration=iteration,
                slot=slot,
                state=state,
                progress=progress,
                started_at=status.started_at if status else None,
            )
        )
    return out


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _elapsed(started_at: str | None, now: datetime) -> str:
    if not started_at:
        return ""
    try:
        start = datetime.fromisoformat(started_at)
    except ValueError:
        return ""
    return f", running {format_duration((now - start).total_seconds())}"


def render_slot(s: SlotView, now: datetime | None = None) -> str:
    """One terminal line for a slot."""
    head = f"  slot {s.slot} (iteration {s.iteration}): "
    r = s.result
    if r is not None and r.metrics is not None:
        m = r.metrics
        return head + (
            f"done  conn_R2={m.connectivity_R2:.3f} tau_R2={m.tau_R2:.3f} V_rest_R2={m.V_rest_R2:.3f} "
            f"cluster={m.cluster_accuracy:.3f} ({m.training_time_min:.1f} min)"
        )
    if r is not None:
        return head + f"FAILED  {r.failure_reason or 'no reason recorded'}"
    if s.state == "running" and s.progress is not None:
        p = s.progress
        eta = f", stage ETA {format_duration(p.eta_s)}" if p.eta_s is not None else ""
        return head + f"running  {p.stage} {p.percent}% ({p.done}/{p.total}, {format_duration(p.elapsed_s)}{eta})"
    return head + s.state + (_elapsed(s.started_at, now or datetime.now(UTC)) if s.state == "running" else "")


def render_status(view: RunView, now: datetime | None = None) -> str:
    """The terminal report: run line, phase, the current batch's slots, best node, LLM cost and budget."""
    done = len(view.results)
    last_it = max((r.iteration for r in view.results), default=1)
    n_blocks = block_of(view.state.planned_iterations, view.claude.n_iter_block)
    lines = [
        f"run {view.name} ({view.dir}): {done}/{view.n_iterations} iterations done, "
        f"block {block_of(last_it, view.claude.n_iter_block)} of {n_blocks}",
        f"phase: {run_phase(view)}",
    ]
    batch = current_batch(view)
    if batch >= 1:
        lines.append(f"batch {batch}/{view.n_batches} (iterations {_span(view, batch)}):")
        lines += [render_slot(s, now) for s in slot_views(view, batch)] or ["  (no slots planned yet)"]
    best = best_node(view.results, view.profile)
    if best is not None and best.metrics is not None:
        lines.append(
            f"best node: {best.iteration} conn_R2={best.metrics.connectivity_R2:.4f} "
            f"V_rest_R2={best.metrics.V_rest_R2:.3f} (block {best.block}; {best.mutation or '-'})"
        )
    else:
        lines.append("best node: none yet")
    lines.append(_cost_line(view))
    return "\n".join(lines) + "\n"


def _cost_line(view: RunView) -> str:
    t = llm_totals(view)
    backend = ", ".join(t.backends) or str(view.info.get("llm", "?"))
    line = f"LLM ({backend}): {t.calls} calls, ${t.cost_usd:.2f} so far, {t.input_tokens} in / {t.output_tokens} out tokens"
    budget = view.claude.budget_usd
    if budget is not None:
        line += f"; budget ${budget:.2f}, left ${budget - t.cost_usd:.2f}"
    return line


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None, prog: str = "python -m agent.views.status") -> int:
    parser = OneLineParser(
        prog=prog, description="Where a flyvis-agent run stands.", epilog=exit_codes_epilog(VIEW_EXIT_CODES)
    )
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        view = load_run_view(args.run_dir)
    except RunViewError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render_status(view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
