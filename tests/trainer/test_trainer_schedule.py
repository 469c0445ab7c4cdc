"""Iterations per epoch, R2 checkpoints, and the (phase, LR) schedule applied in place."""

from __future__ import annotations

from itertools import groupby, product

import numpy as np
import pytest
import torch

from experiment.config import TrainingConfig
from trainer.schedule import (
    GROUPS,
    MIN_CHECKPOINTS_PER_PHASE,
    apply_lrs,
    build_optimizer,
    iterations_per_epoch,
    phase_lrs,
    phase_spans,
    r2_checkpoints,
    reference_checkpoints,
)

# Niter of the demo (6,000), science (20,000) and full-scale configs (128,000; exploration slots 160,000).
SCALES = (6000, 20000, 128000, 160000)
CYCLIC = [
    TrainingConfig(alternate_training=True, n_alternations=n, alternate_vrest_ratio=r, alternate_first_phase=first)
    for n, r, first in product((2, 4, 6, 8), (0.3, 0.5, 0.7), ("W", "V_rest"))
]


def test_niter_follows_the_reference_formula_unless_overridden() -> None:
    cfg = TrainingConfig(batch_size=2, data_augmentation_loop=20)
    assert iterations_per_epoch(cfg, 64000) == 128000
    assert iterations_per_epoch(cfg.model_copy(update={"n_iterations": 77}), 64000) == 77


def test_r2_checkpoints_are_four_early_then_every_tenth() -> None:
    expected = [20, 40, 60, 80, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    assert reference_checkpoints(1000) == r2_checkpoints(1000) == expected
    assert r2_checkpoints(1000, TrainingConfig(alternate_training=False)) == expected  # standard: today's set


def _brute_spans(niter: int, cfg: TrainingConfig) -> list[tuple[int, int, str]]:
    phases = [phase_lrs(i, niter, cfg)[0] for i in range(niter)]
    spans, start = [], 0
    for phase, run in groupby(phases):
        n = len(list(run))
        spans.append((start, start + n, phase))
        start += n
    return spans


@pytest.mark.parametrize("niter", [7, 40, 997, 6001])
def test_phase_spans_are_the_runs_of_phase_lrs(niter: int) -> None:
    two_stage = TrainingConfig(alternate_training=True, alternate_schedule="two_stage")
    for cfg in [*CYCLIC, two_stage, TrainingConfig(alternate_training=False)]:
        assert phase_spans(niter, cfg) == _brute_spans(niter, cfg), cfg


@pytest.mark.parametrize("niter", SCALES)
def test_every_phase_span_has_three_checkpoints_tagged_with_its_phase(niter: int) -> None:
    reference = set(range(niter // 10, niter + 1, niter // 10))  # the reference's every-Niter//10 points
    two_stage = TrainingConfig(alternate_training=True, alternate_schedule="two_stage")
    for cfg in [*CYCLIC, two_stage, TrainingConfig(alternate_training=False)]:
        points = np.asarray(r2_checkpoints(niter, cfg))
        assert reference <= set(points.tolist()) and set(reference_checkpoints(niter)) <= set(points.tolist())
        assert points[0] >= 1 and points[-1] == niter and np.all(np.diff(points) > 0)
        for start, end, phase in phase_spans(niter, cfg):
            inside = points[(points > start) & (points <= end)]
            assert inside.size >= MIN_CHECKPOINTS_PER_PHASE, (cfg, start, end)
            # a checkpoint carries the phase of the iteration it completes (the trainer's R2 log tag)
            assert {phase_lrs(int(c) - 1, niter, cfg)[0] for c in inside} == {phase}


def test_short_phases_get_a_checkpoint_per_iteration() -> None:
    cfg = TrainingConfig(alternate_training=True, n_alternations=8, alternate_vrest_ratio=0.5)
    assert r2_checkpoints(16, cfg) == list(range(1, 17))  # 16 phases of 1 iteration: every iteration


def test_standard_schedule_is_one_phase_at_active_lrs() -> None:
    cfg = TrainingConfig(alternate_training=False)
    phase, lrs = phase_lrs(5, 10, cfg)
    assert phase == "-"
    assert lrs == {"lin_edge": 1.2e-3, "W": 6e-4, "lin_phi": 1.2e-3, "embedding": 1.55e-3}


def test_cyclic_schedule_switches_each_group_at_the_right_iterations() -> None:
    cfg = TrainingConfig(alternate_training=True, n_alternations=2, alternate_vrest_ratio=0.25)
    phases = [phase_lrs(i, 40, cfg)[0] for i in range(40)]
    assert phases == ["W"] * 15 + ["V_rest"] * 5 + ["W"] * 15 + ["V_rest"] * 5
    w_lrs, v_lrs = phase_lrs(0, 40, cfg)[1], phase_lrs(15, 40, cfg)[1]
    assert w_lrs == {"lin_edge": 1.2e-3, "W": 6e-4, "lin_phi": 1.2e-6, "embedding": 1.55e-6}
    assert v_lrs == {"lin_edge": 1.2e-6, "W": 6e-7, "lin_phi": 1.2e-3, "embedding": 1.55e-3}


def test_two_stage_schedule_scales_edge_and_w_after_the_joint_stage() -> None:
    cfg = TrainingConfig(alternate_training=True, alternate_schedule="two_stage", alternate_joint_ratio=0.4)
    assert phase_lrs(39, 100, cfg) == ("W", {"lin_edge": 1.2e-3, "W": 6e-4, "lin_phi": 1.2e-3, "embedding": 1.55e-3})
    phase, lrs = phase_lrs(40, 100, cfg)
    assert phase == "V_rest"
    assert lrs["W"] == pytest.approx(6e-5) and lrs["lin_edge"] == pytest.approx(1.2e-4) and lrs["lin_phi"] == 1.2e-3


def test_apply_lrs_changes_groups_in_place_and_keeps_adam_state() -> None:
    params = {name: [torch.nn.Parameter(torch.ones(3))] for name in GROUPS}
    opt = build_optimizer(params, dict.fromkeys(GROUPS, 0.1))
    sum(p[0].sum() for p in params.values()).backward()
    opt.step()
    groups_before = list(opt.param_groups)
    state_before = {k: v["exp_avg"].clone() for k, v in opt.state.items()}
    apply_lrs(opt, {"lin_edge": 1.0, "W": 2.0, "lin_phi": 3.0, "embedding": 4.0})
    assert all(a is b for a, b in zip(groups_before, opt.param_groups, strict=True))
    assert [g["lr"] for g in opt.param_groups] == [1.0, 2.0, 3.0, 4.0]
    assert all(torch.equal(opt.state[k]["exp_avg"], v) for k, v in state_before.items())
