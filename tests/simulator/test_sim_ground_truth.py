from __future__ import annotations

import numpy as np
import pytest
import torch

from simulator.connectome import build_connectome
from simulator.dynamics import EulerStepper
from simulator.errors import SimulatorError
from simulator.ground_truth import load_ground_truth, weight_stats
from simulator.network_stats import type_level_stats


@pytest.mark.checkpoint
def test_checkpoint_stats_at_extent_8_match_model(checkpoint_dir) -> None:
    gt = load_ground_truth(str(checkpoint_dir), build_connectome(8))
    s = weight_stats(gt.W)
    assert s["mean"] == pytest.approx(0.018, abs=5e-4)
    assert s["std"] == pytest.approx(0.178, abs=5e-4)
    assert s["min"] == pytest.approx(-1.50, abs=5e-3) and s["max"] == pytest.approx(4.17, abs=5e-3)
    assert s["frac_negative"] == pytest.approx(0.35, abs=5e-3)
    assert s["frac_zero"] == pytest.approx(0.039, abs=5e-4)
    assert gt.kind == "checkpoint"


@pytest.mark.checkpoint
def test_checkpoint_tau_and_v_rest_by_type(checkpoint_dir) -> None:
    con = build_connectome(2)
    gt = load_ground_truth(str(checkpoint_dir), con)
    per_type = {con.type_names[t]: gt.tau[con.types == t][0] for t in np.unique(con.types)}
    assert per_type["Tm30"] == pytest.approx(0.316, abs=1e-3)
    assert per_type["L1"] == pytest.approx(0.053, abs=1e-3)
    assert sum(0.0194 <= v <= 0.0201 for v in per_type.values()) == 51
    assert gt.V_rest.min() > 0.006 and gt.V_rest.max() < 0.8
    assert gt.W.shape == (con.n_edges,) and np.isfinite(gt.W).all()


def test_missing_checkpoint_is_one_line_error(tmp_path) -> None:
    with pytest.raises(SimulatorError, match="best_chkpt") as err:
        load_ground_truth(str(tmp_path), build_connectome(1))
    assert "\n" not in str(err.value)


def test_corrupt_checkpoint_is_one_line_error(tmp_path) -> None:
    (tmp_path / "best_chkpt").write_bytes(b"not a zip")
    with pytest.raises(SimulatorError, match="not a flyvis checkpoint"):
        load_ground_truth(str(tmp_path), build_connectome(1))


def test_synthetic_is_deterministic() -> None:
    con = build_connectome(2)
    a, b = load_ground_truth("synthetic", con), load_ground_truth("synthetic", con)
    for key in ("W", "tau", "V_rest"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_synthetic_weight_statistics_match_the_trained_network() -> None:
    gt = load_ground_truth("synthetic", build_connectome(8))
    s = weight_stats(gt.W)  # trained (MODEL.md section 2): mean 0.018, std 0.178, 35 % negative, 3.9 % zero
    assert s["std"] == pytest.approx(0.178, rel=0.1)
    assert s["mean"] == pytest.approx(0.018, abs=0.02)
    assert s["frac_negative"] == pytest.approx(0.35, abs=0.01)
    assert s["frac_zero"] == pytest.approx(0.039, abs=0.025)
    assert s["max"] > 2.0 and s["min"] < -0.5
    assert (np.unique(gt.tau) < 0.0201).sum() == 51
    assert gt.V_rest.min() > 0.006 and gt.V_rest.max() < 0.8


def test_synthetic_loop_gains_stay_within_the_trained_margins() -> None:
    con = build_connectome(8)
    stats = type_level_stats(load_ground_truth("synthetic", con), con)
    # trained checkpoint: excitatory Perron root 0.891, signed max real eigenvalue 0.801
    assert stats["excitatory Perron root (type level)"] <= 0.891
    assert stats["signed type-level max real eigenvalue"] <= 0.85


def _synthetic_stepper(extent: int):
    """The synthetic ground truth's Euler stepper at an extent, and a state at V_rest."""
    con = build_connectome(extent)
    gt = load_ground_truth("synthetic", con)
    t = {k: torch.from_numpy(getattr(gt, k)) for k in ("W", "tau", "V_rest")}
    stepper = EulerStepper(t["W"], torch.from_numpy(con.edge_index), t["tau"], t["V_rest"], con.n_input, 0.02)
    return con, stepper, t["V_rest"].clone()


def test_synthetic_neurons_are_not_silenced() -> None:
    con, stepper, v = _synthetic_stepper(2)
    stim = torch.rand(400, con.n_input, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(400, con.n_neurons, generator=torch.Generator().manual_seed(0)) * 0.05
    V, Y = torch.empty(400, con.n_neurons), torch.empty(400, con.n_neurons)
    stepper.run(stepper.steady_state(v, 0.5, 100), stim, noise, V, Y)
    never_active = (V.max(0).values <= 0).numpy()
    assert never_active.mean() < 0.03  # silenced sources make their weights unlearnable (was 0.13)


def test_synthetic_dynamics_stay_bounded() -> None:
    _, stepper, v = _synthetic_stepper(4)
    stepper.steady_state(v, 1.0, 500)
    assert torch.isfinite(v).all() and v.abs().max() < 50


@pytest.mark.checkpoint
def test_checkpoint_loop_gains_are_the_margins_the_synthetic_one_keeps(checkpoint_dir) -> None:
    con = build_connectome(8)
    stats = type_level_stats(load_ground_truth(str(checkpoint_dir), con), con)
    assert stats["excitatory Perron root (type level)"] == pytest.approx(0.891, abs=1e-3)
    assert stats["signed type-level max real eigenvalue"] == pytest.approx(0.801, abs=1e-3)


def test_synthetic_slow_types_are_driven_less_than_fast_ones() -> None:
    con = build_connectome(8)
    gt = load_ground_truth("synthetic", con)
    in_abs = np.bincount(con.edge_index[1], weights=np.abs(gt.W.astype(np.float64)), minlength=con.n_neurons)
    types = np.unique(con.json_type[con.n_input :])
    gain = np.array([in_abs[con.json_type == t].mean() for t in types])
    slow = np.array([gt.tau[con.json_type == t][0] > 0.021 for t in types])
    # trained: slow types' median input 1.84, fast types' 2.83; the synthetic caps slow types at 1.84
    assert gain[slow].max() <= 1.84 + 1e-3
    assert np.median(gain[slow]) < np.median(gain[~slow])
