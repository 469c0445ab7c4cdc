"""Iterations per epoch, R2 checkpoints, and the (phase, LR) schedule applied in place."""

from __future__ import annotations

import pytest
import torch

from experiment.config import TrainingConfig
from trainer.schedule import GROUPS, apply_lrs, build_optimizer, iterations_per_epoch, phase_lrs, r2_checkpoints


def test_niter_follows_the_reference_formula_unless_overridden() -> None:
    cfg = TrainingConfig(batch_size=2, data_augmentation_loop=20)
    assert iterations_per_epoch(cfg, 64000) == 128000
    assert iterations_per_epoch(cfg.model_copy(update={"n_iterations": 77}), 64000) == 77


def test_r2_checkpoints_are_four_early_then_every_tenth() -> None:
    assert r2_checkpoints(1000) == [20, 40, 60, 80, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]


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
