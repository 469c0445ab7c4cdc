"""Iteration counts, R2 checkpoints and the (phase, per-group LR) schedule (MODEL.md section 5).

``phase_lrs`` is a pure function of the iteration inside the epoch; the trainer applies its LRs in
place on the optimiser's param groups (Adam state is kept across phase switches).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from experiment.config import TrainingConfig
from experiment.records import Phase

GROUPS = ("lin_edge", "W", "lin_phi", "embedding")


def iterations_per_epoch(cfg: TrainingConfig, n_frames: int) -> int:
    """``n_iterations`` when set, else ``int(n_frames * data_augmentation_loop // batch_size * 0.2)`` (>= 1)."""
    if cfg.n_iterations is not None:
        return int(cfg.n_iterations)
    return max(1, int(n_frames * cfg.data_augmentation_loop // cfg.batch_size * 0.2))


MIN_CHECKPOINTS_PER_PHASE = 3

PhaseSpan = tuple[int, int, Phase]


def reference_checkpoints(niter: int) -> list[int]:
    """Niter/50 x {1..4}, then every Niter/10 (the reference logs every Niter // 10)."""
    early = {max(1, niter // 50) * k for k in range(1, 5)}
    step = max(1, niter // 10)
    late = set(range(step, niter + 1, step)) | {niter}
    return sorted(c for c in early | late if 1 <= c <= niter)


def r2_checkpoints(niter: int, cfg: TrainingConfig | None = None) -> list[int]:
    """Completed-iteration counts at which conn_R2 is logged: ``reference_checkpoints`` plus, with ``cfg``,
    enough points inside every phase span of the epoch that each has ``MIN_CHECKPOINTS_PER_PHASE`` (or one per
    iteration when shorter), chosen from the span's end and its thirds.

    A checkpoint ``c`` scores the parameters after iteration ``c - 1`` and carries that iteration's phase, so
    the span ``[start, end)`` owns the checkpoints ``start < c <= end``.
    """
    points = set(reference_checkpoints(niter))
    if cfg is None:
        return sorted(points)
    k = MIN_CHECKPOINTS_PER_PHASE
    for start, end, _ in phase_spans(niter, cfg):
        have = np.asarray(sorted(points))
        inside = int(np.searchsorted(have, end, "right") - np.searchsorted(have, start, "right"))
        length = end - start
        for c in [end, *(start + math.ceil(j * length / k) for j in range(1, k))]:
            if inside >= k:
                break
            if c not in points:
                points.add(c)
                inside += 1
    return sorted(points)


def phase_spans(niter: int, cfg: TrainingConfig) -> list[PhaseSpan]:
    """The phases of one epoch as ``(start, end, phase)`` runs of iterations ``[start, end)``, in order.

    The schedule of ``phase_lrs`` computed per cycle instead of per iteration (a test checks the two against each
    other iteration by iteration): standard training is one ``-`` span, two-stage a ``W`` and a ``V_rest`` span,
    cyclic at most two per cycle (adjacent spans of one phase merge).
    """
    if not cfg.alternate_training:
        return [(0, niter, "-")]
    if cfg.alternate_schedule == "two_stage":
        joint = round(cfg.alternate_joint_ratio * niter)
        pieces: list[PhaseSpan] = [(0, joint, "W"), (joint, niter, "V_rest")]
    else:
        n_alt, length, first_len, first, second = _cycles(niter, cfg)
        pieces = []
        for cycle in range(n_alt):  # the last cycle's second phase keeps the niter % n_alt left over
            start, end = cycle * length, niter if cycle == n_alt - 1 else (cycle + 1) * length
            pieces += [(start, start + first_len, first), (start + first_len, end, second)]
    spans: list[PhaseSpan] = []
    for start, end, phase in pieces:
        if end <= start:
            continue
        if spans and spans[-1][2] == phase:
            spans[-1] = (spans[-1][0], end, phase)
        else:
            spans.append((start, end, phase))
    return spans


def base_lrs(cfg: TrainingConfig) -> dict[str, float]:
    """Active-phase learning rates of the four groups; lin_phi's is ``learning_rate_update_start`` unless 0."""
    return {
        "lin_edge": cfg.learning_rate_start,
        "W": cfg.learning_rate_W_start,
        "lin_phi": cfg.learning_rate_update_start or cfg.learning_rate_start,
        "embedding": cfg.learning_rate_embedding_start,
    }


def _cycles(niter: int, cfg: TrainingConfig) -> tuple[int, int, int, Phase, Phase]:
    """The cyclic layout: (cycles, cycle length ``niter // n``, length of each cycle's first phase, first phase,
    second phase); the W-phase is ``int(length * (1 - vrest_ratio))`` iterations, the V_rest-phase the rest."""
    n_alt = max(1, min(cfg.n_alternations, niter))
    length = niter // n_alt
    w_len = int(length * (1 - cfg.alternate_vrest_ratio))
    if cfg.alternate_first_phase == "W":
        return n_alt, length, w_len, "W", "V_rest"
    return n_alt, length, length - w_len, "V_rest", "W"


def _cyclic_phase(iteration: int, niter: int, cfg: TrainingConfig) -> Phase:
    """The reference's cyclic rule: ``n_alternations`` cycles of ``niter // n`` iterations each, a W-phase of
    ``int(length * (1 - vrest_ratio))`` iterations and a V_rest-phase of the rest, in the order
    ``alternate_first_phase``; the ``niter % n`` iterations after the last cycle stay in its last phase."""
    n_alt, length, first_len, first, second = _cycles(niter, cfg)
    if iteration >= n_alt * length:
        return second
    return first if iteration % length < first_len else second


def phase_lrs(iteration: int, niter: int, cfg: TrainingConfig) -> tuple[Phase, dict[str, float]]:
    """Phase and per-group LR for 0-based ``iteration`` of an epoch of ``niter`` iterations.

    Standard: phase ``-`` with the active LRs. Cyclic: ``n_alternations`` equal cycles, each a W-phase
    and a V_rest-phase of ``alternate_vrest_ratio`` of the cycle, in the order ``alternate_first_phase``
    (the reference: W first). Two-stage: ``W`` (joint, all active
    LRs) for ``alternate_joint_ratio`` of the epoch, then ``V_rest`` with lin_edge and W at
    ``alternate_lr_ratio`` x their active LR.
    """
    if not 0 <= iteration < niter:
        raise ValueError(f"iteration must lie in [0, {niter}), got {iteration}")
    lrs = base_lrs(cfg)
    if not cfg.alternate_training:
        return "-", lrs
    if cfg.alternate_schedule == "two_stage":
        if iteration < round(cfg.alternate_joint_ratio * niter):
            return "W", lrs
        lrs["lin_edge"] *= cfg.alternate_lr_ratio
        lrs["W"] *= cfg.alternate_lr_ratio
        return "V_rest", lrs
    phase = _cyclic_phase(iteration, niter, cfg)
    if phase == "W":
        lrs["lin_phi"] = cfg.alternate_lr_update
        lrs["embedding"] = cfg.alternate_lr_embedding
    else:
        lrs["lin_edge"] = cfg.alternate_lr_edge
        lrs["W"] = cfg.alternate_lr_W
    return phase, lrs


def build_optimizer(groups: Mapping[str, list[torch.nn.Parameter]], lrs: Mapping[str, float]) -> torch.optim.Adam:
    """Adam with one named param group per entry of ``GROUPS``."""
    return torch.optim.Adam([{"params": groups[name], "lr": lrs[name], "name": name} for name in GROUPS])


def apply_lrs(optimizer: torch.optim.Optimizer, lrs: Mapping[str, float]) -> None:
    """Set each named group's LR in place (the Adam moments are untouched)."""
    for group in optimizer.param_groups:
        group["lr"] = lrs[group["name"]]


def recurrent_active(cfg: TrainingConfig, epoch: int) -> bool:
    """Whether 0-based ``epoch`` trains with the ``time_step`` rollout loss (from recurrent_training_start_epoch on)."""
    return cfg.recurrent_training and epoch >= cfg.recurrent_training_start_epoch
