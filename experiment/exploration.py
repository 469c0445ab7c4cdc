"""The records of an exploration: its nodes (slot results), their seeds and R2 trajectory digests, its blocks.

Pure data and pure functions, shared by every layer above: memory (variance table, Run Status) and the
agent (tree, reply check, prompts, policies, views) read these records, and the journal stores them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiment.records import Metrics, R2Row

Trend = Literal["rising", "stable", "decaying"]
TREND_TOLERANCE = 0.01  # R2 units: changes below this are "stable"
ROOT = "root"


def block_of(iteration: int, n_iter_block: int) -> int:
    """1-based block of a 1-based iteration."""
    if iteration < 1 or n_iter_block < 1:
        raise ValueError(f"block_of: iteration ({iteration}) and n_iter_block ({n_iter_block}) must be >= 1")
    return (iteration - 1) // n_iter_block + 1


def block_range(block: int, n_iter_block: int) -> tuple[int, int]:
    """First and last iteration of a 1-based block."""
    if block < 1 or n_iter_block < 1:
        raise ValueError(f"block_range: block ({block}) and n_iter_block ({n_iter_block}) must be >= 1")
    return (block - 1) * n_iter_block + 1, block * n_iter_block


def count_batches(n_iterations: int, n_slots: int) -> int:
    """Batches a run of ``n_iterations`` plans: the last one is full even when the division leaves a rest."""
    return math.ceil(n_iterations / n_slots)


def iterations_of_batch(batch: int, n_iterations: int, n_slots: int) -> list[int]:
    """The iterations of a 1-based batch (batches are blocks of ``n_slots`` iterations); empty outside the run."""
    if not 1 <= batch <= count_batches(n_iterations, n_slots):
        return []
    first, last = block_range(batch, n_slots)
    return list(range(first, last + 1))


class PhaseChange(BaseModel):
    """R2 change over one contiguous phase segment of the trajectory."""

    model_config = ConfigDict(extra="forbid")

    phase: str
    start_iteration: int
    end_iteration: int
    r2_change: float


class TrajectoryDigest(BaseModel):
    """What the protocol asks about an R2 trajectory: peak and where, final, trend, per-phase gains."""

    model_config = ConfigDict(extra="forbid")

    peak: float
    peak_iteration: int
    peak_phase: str
    final: float
    final_iteration: int
    trend: Trend
    n_points: int
    w_phase_gain: float = 0.0  # summed R2 change over W-phase segments
    vrest_phase_change: float = 0.0  # summed R2 change over V_rest-phase segments
    segments: list[PhaseChange] = Field(default_factory=list)

    @property
    def final_ge_peak(self) -> bool:
        return self.final >= self.peak - 1e-9


def digest_trajectory(rows: list[R2Row]) -> TrajectoryDigest | None:
    """Summarise an R2 log; None when it has no finite row.

    Trend: ``decaying`` when the final value is more than TREND_TOLERANCE below the peak,
    ``rising`` when the last step gained more than TREND_TOLERANCE (or the final value is the
    peak and gained since the previous point), otherwise ``stable``.
    """
    pts = [r for r in rows if math.isfinite(r.connectivity_r2)]
    if not pts:
        return None
    peak_row = max(pts, key=lambda r: r.connectivity_r2)
    last = pts[-1]
    prev = pts[-2].connectivity_r2 if len(pts) > 1 else last.connectivity_r2
    step = last.connectivity_r2 - prev
    if last.connectivity_r2 < peak_row.connectivity_r2 - TREND_TOLERANCE:
        trend: Trend = "decaying"
    elif step > TREND_TOLERANCE:
        trend = "rising"
    else:
        trend = "stable"

    # Contiguous phase segments: the change attributed to a phase is from the point before the
    # segment (or its first point) to the segment's last point.
    segments: list[PhaseChange] = []
    start = 0
    for i in range(1, len(pts) + 1):
        if i == len(pts) or pts[i].phase != pts[start].phase:
            before = pts[start - 1].connectivity_r2 if start > 0 else pts[start].connectivity_r2
            segments.append(
                PhaseChange(
                    phase=pts[start].phase,
                    start_iteration=pts[start].iteration,
                    end_iteration=pts[i - 1].iteration,
                    r2_change=pts[i - 1].connectivity_r2 - before,
                )
            )
            start = i
    return TrajectoryDigest(
        peak=peak_row.connectivity_r2,
        peak_iteration=peak_row.iteration,
        peak_phase=peak_row.phase,
        final=last.connectivity_r2,
        final_iteration=last.iteration,
        trend=trend,
        n_points=len(pts),
        w_phase_gain=sum(s.r2_change for s in segments if s.phase == "W"),
        vrest_phase_change=sum(s.r2_change for s in segments if s.phase == "V_rest"),
        segments=segments,
    )


class Seeds(BaseModel):
    """Controller-owned seeds of one iteration (PROTOCOL.md section 8)."""

    model_config = ConfigDict(extra="forbid")

    simulation: int
    training: int

    @classmethod
    def for_slot(cls, iteration: int, slot: int) -> Seeds:
        return cls(simulation=iteration * 1000 + slot, training=iteration * 1000 + slot + 500)


Parent = int | Literal["root"]


class SlotResult(BaseModel):
    """One iteration (= one node): the config that ran, where it came from, and what it measured."""

    model_config = ConfigDict(extra="forbid")

    iteration: int = Field(ge=1)
    slot: int = Field(ge=0)
    batch: int = Field(ge=1, description="1-based batch number within the run")
    block: int = Field(ge=1)
    parent: Parent = ROOT
    replicate_of: int | None = Field(None, description="node whose config this slot re-ran verbatim")
    strategy: str = Field("baseline", description="baseline / exploit / explore / robustness-check")
    mutation: str = Field("", description="the diff from the parent's config, as a Mutation: line value")
    trainable: dict[str, dict[str, Any]] = Field(
        description="the trained config's training: and graph_model: sections, seeds excluded"
    )
    seeds: Seeds
    status: Literal["completed", "failed"]
    failure_reason: str | None = None
    metrics: Metrics | None = None
    trajectory: TrajectoryDigest | None = None
    over_time_limit: bool = False

    @property
    def conn_r2(self) -> float:
        """Reward of the node: its connectivity_R2, 0 for a failed slot."""
        if self.status == "failed" or self.metrics is None:
            return 0.0
        return self.metrics.connectivity_R2
