"""Where a run stands, reduced from its journal: ``RunState.from_events(journal.events)``.

One pure reducer over the typed events (agent.events) holds what every reader needs: the run's planned
size (from its run_started / run_resumed events, never from the config), the slots submitted and finished
(SlotResults validated once, when the journal was read), the replies, the LLM calls and their cost, and the
phase. The controller's resume logic, the run command, status, report and rebuild all read this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from agent.events import (
    AnalysisApplied,
    AnalysisPending,
    ConfigsApplied,
    EventBase,
    Interrupted,
    LlmResponse,
    MemoryRead,
    ReplyAccepted,
    ReplyRejected,
    ReviewDone,
    ReviewPause,
    RunFinished,
    RunResumed,
    RunStarted,
    SlotFinished,
    SlotSubmitted,
)
from agent.reply_check import PlannedSlot
from experiment.exploration import SlotResult, count_batches, iterations_of_batch

Phase = Literal[
    "starting",  # no PARALLEL START reply applied yet
    "waiting_for_slots",  # the current batch's slots are training (or not yet submitted)
    "asking_llm",  # every slot of the batch is done; its analysis is not applied yet
    "analysis_pending",  # the replies were rejected too often; the run stopped for a fix
    "review_pause",  # stopped after a batch for a human review
    "interrupted",  # Ctrl-C cancelled the jobs; resumable
    "finishing",  # every batch analysed; run_finished not written yet
    "finished",
]


@dataclass
class RunState:
    """A run as its journal describes it. Build with ``from_events`` (and ``fold`` as the journal grows)."""

    name: str | None = None
    n_iterations: int | None = None  # planned, as the last start or resume recorded it
    n_slots: int | None = None  # batch size: the journal's, else the run config's (journals before it was recorded)
    started: RunStarted | None = None
    last_start: RunStarted | RunResumed | None = None
    llms: list[str] = field(default_factory=list)  # --llm of each start and resume, in order
    submitted: dict[int, SlotSubmitted] = field(default_factory=dict)  # iteration -> last submission
    finished_slots: dict[int, SlotResult] = field(default_factory=dict)  # iteration -> result
    configs_applied: set[int] = field(default_factory=set)
    analysis_applied: set[int] = field(default_factory=set)
    memory_reads: dict[int, MemoryRead] = field(default_factory=dict)  # batch -> last read
    responses: dict[str, LlmResponse] = field(default_factory=dict)  # call_id -> last response
    replies: list[ReplyAccepted] = field(default_factory=list)  # every accepted reply, in journal order
    rejected: dict[int, list[ReplyRejected]] = field(default_factory=dict)  # batch -> rejections, in order
    review_pauses: set[int] = field(default_factory=set)
    reviews_done: set[int] = field(default_factory=set)
    pending_batch: int | None = None  # analysis pending for this batch (cleared by its accepted reply or a resume)
    paused_batch: int | None = None  # paused for review after this batch (cleared by review_done or a resume)
    interrupted: Interrupted | None = None  # the last interruption, until the run is resumed
    finished: bool = False
    llm_calls: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    backends: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ the reducer
    @classmethod
    def from_events(cls, events: Iterable[EventBase], *, n_slots: int | None = None) -> RunState:
        """Fold the events in order. ``n_slots`` is the batch size to use when no start event recorded one (journals
        written before it was); without it such a state has no size, and ``n_batches``, ``phase`` and
        ``current_batch`` raise."""
        return cls(n_slots=n_slots).fold(events)

    def fold(self, events: Iterable[EventBase]) -> RunState:
        """Apply further events, in journal order (the state of the longer journal); returns this state.

        ``from_events(a + b)`` equals ``from_events(a).fold(b)``: a reader that follows a growing journal folds
        only the new events.
        """
        for event in events:
            self._apply(event)
        return self

    def _apply(self, e: EventBase) -> None:
        if isinstance(e, RunStarted | RunResumed):
            if isinstance(e, RunStarted):
                self.started, self.name = e, e.name
            self.last_start, self.n_iterations = e, e.n_iterations
            self.n_slots = e.n_slots or self.n_slots
            if e.llm:
                self.llms.append(e.llm)
            self.pending_batch = self.paused_batch = self.interrupted = None  # a finished run stays finished
        elif isinstance(e, SlotSubmitted):
            self.submitted[e.iteration] = e
        elif isinstance(e, SlotFinished):
            self.finished_slots[e.iteration] = e.result
        elif isinstance(e, ConfigsApplied):
            self.configs_applied.add(e.batch)
        elif isinstance(e, AnalysisApplied):
            self.analysis_applied.add(e.batch)
        elif isinstance(e, MemoryRead):
            self.memory_reads[e.batch] = e
        elif isinstance(e, LlmResponse):
            self.responses[e.call_id] = e
            self.llm_calls += 1
            self.cost_usd += e.cost_usd
            self.input_tokens += e.usage.input_tokens
            self.output_tokens += e.usage.output_tokens
            if e.backend and e.backend not in self.backends:
                self.backends.append(e.backend)
        elif isinstance(e, ReplyRejected):
            self.rejected.setdefault(e.batch, []).append(e)
        elif isinstance(e, ReplyAccepted):
            self.replies.append(e)
            if self.pending_batch == e.source_batch:
                self.pending_batch = None
        elif isinstance(e, AnalysisPending):
            self.pending_batch = e.batch
        elif isinstance(e, ReviewPause):
            self.review_pauses.add(e.batch)
            self.paused_batch = e.batch
        elif isinstance(e, ReviewDone):
            self.reviews_done.add(e.batch)
            if self.paused_batch == e.batch:
                self.paused_batch = None
        elif isinstance(e, Interrupted):
            self.interrupted = e
        elif isinstance(e, RunFinished):
            self.finished = True

    # ------------------------------------------------------------------ size
    @property
    def batch_size(self) -> int:
        if self.n_slots is None:
            raise RuntimeError("run state: the batch size is unknown (no start event recorded it and none was given)")
        return self.n_slots

    @property
    def n_batches(self) -> int:
        """Batches the run plans: ceil(n_iterations / batch size); 0 before the run started."""
        return count_batches(self.n_iterations, self.batch_size) if self.n_iterations else 0

    @property
    def planned_iterations(self) -> int:
        """Iterations the batches hold (the last batch is full even when n_iterations is not a multiple)."""
        return self.n_batches * self.batch_size

    def batch_iterations(self, batch: int) -> list[int]:
        """The iterations of a 1-based batch; empty outside the run."""
        return iterations_of_batch(batch, self.n_iterations, self.batch_size) if self.n_iterations else []

    # ------------------------------------------------------------------ slots and replies
    @property
    def results(self) -> list[SlotResult]:
        """Every finished slot's result, by iteration."""
        return [self.finished_slots[it] for it in sorted(self.finished_slots)]

    def unfinished_submissions(self) -> list[SlotSubmitted]:
        """Slots submitted whose result is not journaled yet (what Ctrl-C cancels), in submission order."""
        return sorted((s for it, s in self.submitted.items() if it not in self.finished_slots), key=lambda s: s.seq)

    @property
    def accepted(self) -> dict[int, ReplyAccepted]:
        """source batch -> its accepted reply."""
        return {r.source_batch: r for r in self.replies}

    def plan(self, batch: int) -> list[PlannedSlot] | None:
        """The accepted plan of a batch (None before its reply was accepted)."""
        for reply in reversed(self.replies):
            if reply.for_batch == batch:
                return reply.planned
        return None

    def analysis_entries(self) -> list[tuple[int, str]]:
        """(source batch, log entries) of every accepted reply, in journal order: what analysis.md renders."""
        return [(r.source_batch, r.entries) for r in self.replies]

    def n_rejected(self, batch: int) -> int:
        return len(self.rejected.get(batch, []))

    # ------------------------------------------------------------------ position
    @property
    def last_applied(self) -> int:
        """Highest batch whose analysis was applied; -1 before the PARALLEL START reply was applied."""
        return max(self.analysis_applied, default=-1)

    @property
    def current_batch(self) -> int:
        """The batch being worked on (the last one once every analysis is applied); 0 = PARALLEL START."""
        return min(self.last_applied + 1, self.n_batches)

    @property
    def phase(self) -> Phase:
        if self.finished:
            return "finished"
        if self.interrupted is not None:
            return "interrupted"
        if self.pending_batch is not None:
            return "analysis_pending"
        if self.paused_batch is not None:
            return "review_pause"
        if self.last_applied < 0:
            return "starting"
        batch = self.last_applied + 1
        if batch > self.n_batches:
            return "finishing"
        if all(it in self.finished_slots for it in self.batch_iterations(batch)):
            return "asking_llm"
        return "waiting_for_slots"
