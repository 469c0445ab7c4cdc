"""The metrics at parity with the reference (docs/PARITY.md, metric rows), each computed by hand on a tiny example.

The models are FlyVisGNNs whose lin_edge / lin_phi are replaced by closed forms, so every slope, window,
gain and score has a value that can be worked out on paper.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture
from torch import Tensor

from experiment.config import GraphModelConfig
from experiment.records import TEST_R2_FLOOR, Metrics
from trainer.metrics import (
    GRID_POINTS,
    ROLLOUT_BOUND,
    Probe,
    Recovered,
    activity_stats,
    cluster_accuracy,
    cluster_features,
    connectivity_r2,
    corrected_weights,
    derive_tau,
    derive_vrest,
    edge_slopes,
    gain_frame_indices,
    message_gain,
    phi_lines,
    r2_score,
    rollout,
    rollout_diverged,
    rollout_scores,
)
from trainer.model import FlyVisGNN

EDGES = torch.tensor([[0, 1, 2], [1, 2, 0]])  # a 3-neuron ring: 0 -> 1 -> 2 -> 0


class ClosedForm(FlyVisGNN):
    """A FlyVisGNN with lin_edge^2 = ``edge(v)`` and lin_phi = ``update(v, M, I)``; records the grids it saw."""

    def __init__(self, edge: Callable[[Tensor], Tensor], update: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
        super().__init__(GraphModelConfig(hidden_dim=4, hidden_dim_update=4), EDGES, 3, 1)
        self._edge, self._update = edge, update
        self.seen: list[Tensor] = []

    def edge_fn(self, v: Tensor, a: Tensor) -> Tensor:
        self.seen.append(v.detach().clone())
        return self._edge(v)

    def phi(self, v: Tensor, a: Tensor, msg: Tensor, stim: Tensor) -> Tensor:
        self.seen.append(v.detach().clone())
        return self._update(v, msg, stim)


def t(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ----- r_j ----------------------------------------------------------------------------------------------------
def test_r_j_is_fitted_on_the_positive_part_of_mu_plus_minus_two_sigma() -> None:
    # lin_edge^2 = v^2: the least-squares slope of v^2 on an even grid over [lo, hi] is lo + hi.
    model = ClosedForm(edge=lambda v: v * v, update=lambda v, m, i: -v)
    r = edge_slopes(model, mu=t(1.0, 2.0, 0.5), sigma=t(1.0, 0.5, 0.1))
    # windows: [max(-1, 0), 3] = [0, 3]; [1, 3]; [0.3, 0.7]
    torch.testing.assert_close(r, torch.tensor([3.0, 4.0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_r_j_is_one_when_mu_plus_sigma_is_not_positive() -> None:
    model = ClosedForm(edge=lambda v: v * v, update=lambda v, m, i: -v)
    # mu + s = -0.1 and exactly 0 -> r = 1; mu + s = 0.1 -> window [0, -0.5 + 1.2] = [0, 0.7], slope 0.7
    r = edge_slopes(model, mu=t(-0.5, -0.5, -0.5), sigma=t(0.4, 0.5, 0.6))
    torch.testing.assert_close(r, torch.tensor([1.0, 1.0, 0.7], dtype=torch.float64), atol=1e-6, rtol=0)


def test_every_fit_uses_one_thousand_grid_points_spanning_the_window() -> None:
    model = ClosedForm(edge=lambda v: v, update=lambda v, m, i: -v)
    mu, sigma = t(0.2, 1.0, -2.0), t(0.1, 0.5, 0.3)
    phi_lines(model, mu, sigma)
    (grid,) = model.seen
    assert GRID_POINTS == 1000 and grid.shape == (3, 1000)
    want = np.stack([np.linspace(m - 2 * s, m + 2 * s, 1000) for m, s in zip(mu.tolist(), sigma.tolist(), strict=True)])
    np.testing.assert_allclose(grid.numpy(), want, atol=1e-6)


def test_lin_phi_is_fitted_on_mu_plus_minus_two_sigma_unclamped() -> None:
    # lin_phi = v^2 at M = I = 0: slope over [mu - 2s, mu + 2s] is 2 mu (negative voltages included)
    model = ClosedForm(edge=lambda v: v, update=lambda v, m, i: v * v)
    slope, _ = phi_lines(model, mu=t(-0.5, 1.5, 0.0), sigma=t(1.0, 0.25, 0.5))
    torch.testing.assert_close(slope, torch.tensor([-1.0, 3.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_tau_and_v_rest_are_read_off_the_lin_phi_line() -> None:
    tau, v_rest = t(0.05, 0.2, 2.0), t(0.3, -0.1, 0.8)
    model = ClosedForm(edge=lambda v: v, update=lambda v, m, i: (-v + v_rest[:, None]) / tau[:, None])
    slope, offset = phi_lines(model, mu=t(0.3, 0.0, 0.5), sigma=t(0.1, 0.2, 0.1))
    np.testing.assert_allclose(derive_tau(slope), [0.05, 0.2, 1.0], atol=1e-5)  # tau = clip(1 / -slope, 0, 1)
    np.testing.assert_allclose(derive_vrest(slope, offset), [0.3, -0.1, 0.8], atol=1e-5)  # V_rest = -offset / slope


def test_a_flat_lin_phi_gives_tau_one_v_rest_one_and_zero_corrected_weights() -> None:
    model = ClosedForm(edge=lambda v: v, update=lambda v, m, i: torch.full_like(v, 0.7) + m)
    with torch.no_grad():
        model.W.copy_(t(1.0, 2.0, 3.0))
    probe = Probe(mu=t(0.5, 0.5, 0.5), sigma=t(0.1, 0.1, 0.1), gain_v=torch.ones(1, 3), gain_stim=torch.zeros(1, 1),
                  w_true=np.zeros(3))  # fmt: skip
    rec = probe.recover(model)
    np.testing.assert_array_equal(rec.tau, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(rec.V_rest, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(rec.W_corrected, [0.0, 0.0, 0.0])  # -W / 0 -> inf -> 0


def test_corrected_weight_formula_uses_target_slope_and_gain_and_source_r() -> None:
    # edge 0 -> 1: -2 / slope_1 * grad_1 * r_0 = -2 / -4 * 3 * 0.5 = 0.75
    got = corrected_weights(t(2.0), torch.tensor([0]), torch.tensor([1]), t(-1.0, -4.0), t(9.0, 3.0), t(0.5, 7.0))
    torch.testing.assert_close(got, t(0.75))


# ----- grad_msg -----------------------------------------------------------------------------------------------
def test_gain_frames_are_linspace_of_t_over_ten_to_t_minus_one_hundred() -> None:
    # linspace(100, 900, 8) = 100, 214.3, 328.6, 442.9, 557.1, 671.4, 785.7, 900, truncated
    assert gain_frame_indices(1000).tolist() == [100, 214, 328, 442, 557, 671, 785, 900]
    # 64,000 frames (full scale): 6,400 ... 63,900
    assert gain_frame_indices(64000)[[0, -1]].tolist() == [6400, 63900]


def test_probe_takes_the_gain_frames_states_and_stimuli() -> None:
    voltage = np.arange(1000 * 3, dtype=np.float32).reshape(1000, 3)
    stimulus = np.arange(1000, dtype=np.float32).reshape(1000, 1)
    probe = Probe.from_split(voltage, stimulus, np.zeros(3), torch.device("cpu"))
    idx = [100, 214, 328, 442, 557, 671, 785, 900]
    np.testing.assert_array_equal(probe.gain_v.numpy(), voltage[idx])
    np.testing.assert_array_equal(probe.gain_stim.numpy(), stimulus[idx])


def test_grad_msg_is_the_lower_median_over_the_eight_frames() -> None:
    # lin_phi = v * M: d lin_phi / d M = v, so the gain at a frame is that frame's voltage
    model = ClosedForm(edge=lambda v: v, update=lambda v, m, i: v * m)
    frames = torch.tensor([5.0, 1.0, 8.0, 3.0, 2.0, 7.0, 4.0, 6.0]).unsqueeze(1).repeat(1, 3)
    frames[:, 2] = torch.tensor([0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    gain = message_gain(model, frames, torch.zeros(8, 1))
    # torch's median of 8 values is the 4th smallest: 4 (not 4.5) and 10 (five of eight are 10)
    torch.testing.assert_close(gain, t(4.0, 4.0, 10.0))


def test_activity_stats_are_over_every_frame_with_ddof_one() -> None:
    v = np.random.default_rng(0).normal(size=(1001, 4)).astype(np.float32) * [1.0, 2.0, 0.5, 0.0]
    mu, sigma = activity_stats(v, chunk=100)
    np.testing.assert_allclose(mu, v.astype(np.float64).mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(sigma, v.astype(np.float64).std(axis=0, ddof=1), rtol=1e-6)


# ----- clustering ---------------------------------------------------------------------------------------------
def _recovered(tau: list[float], w: list[float]) -> Recovered:
    n = len(tau)
    z = np.zeros(n)
    return Recovered(slope=z, offset=z, tau=np.array(tau), V_rest=np.array(tau) * 10, grad_msg=z, edge_slope=z,
                     W_corrected=np.array(w), embedding=np.arange(2 * n, dtype=float).reshape(n, 2))  # fmt: skip


def test_cluster_features_are_raw_not_z_scored() -> None:
    # ring 0 -> 1 -> 2 -> 0 with W* = 1, 2, 4: in-weights 4, 1, 2; out-weights 1, 2, 4
    rec = _recovered([0.1, 0.2, 0.3], [1.0, 2.0, 4.0])
    feats = cluster_features(rec, EDGES.numpy())
    want = np.array([
        [0, 1, 0.1, 1.0, 4.0, 0.0, 1.0, 0.0],
        [2, 3, 0.2, 2.0, 1.0, 0.0, 2.0, 0.0],
        [4, 5, 0.3, 3.0, 2.0, 0.0, 4.0, 0.0],
    ])  # fmt: skip
    np.testing.assert_allclose(feats, want)


def test_cluster_accuracy_is_a_default_gaussian_mixture_seed_42_then_hungarian() -> None:
    rng = np.random.default_rng(3)
    types = np.repeat(np.arange(5), 30)
    feats = rng.normal(scale=[1.0, 0.01, 100.0], size=(150, 3)) + types[:, None] * [0.5, 0.02, 30.0]
    labels = GaussianMixture(n_components=7, covariance_type="full", random_state=42).fit_predict(feats)
    conf = np.zeros((5, 7))
    np.add.at(conf, (types, labels), 1)
    rows, cols = linear_sum_assignment(-conf)
    assert cluster_accuracy(feats, types, n_components=7) == pytest.approx(conf[rows, cols].sum() / 150)


# ----- connectivity R2 and R2 ---------------------------------------------------------------------------------
def test_connectivity_r2_drops_edges_more_than_five_off_before_the_fit() -> None:
    true = np.array([0.0, 1.0, 2.0, 3.0, 0.0, 1.0])
    learned = np.array([0.1, 0.9, 2.2, 2.9, 5.0, 6.5])  # edge 4 is exactly 5 off (kept), edge 5 is 5.5 off (dropped)
    keep = [0, 1, 2, 3, 4]
    assert connectivity_r2(learned, true) == pytest.approx(np.corrcoef(learned[keep], true[keep])[0, 1] ** 2)


def test_r2_is_the_squared_pearson_and_the_r2_of_a_least_squares_line() -> None:
    rng = np.random.default_rng(1)
    true = rng.normal(size=40)
    learned = 2.0 * true + rng.normal(scale=0.7, size=40)
    slope, offset = np.polyfit(true, learned, 1)
    ss_res = ((learned - (slope * true + offset)) ** 2).sum()
    ss_tot = ((learned - learned.mean()) ** 2).sum()
    assert r2_score(learned, true) == pytest.approx(np.corrcoef(learned, true)[0, 1] ** 2)
    assert r2_score(learned, true) == pytest.approx(1.0 - ss_res / ss_tot)


# ----- rollout ------------------------------------------------------------------------------------------------
def test_rollout_clamps_at_plus_minus_one_hundred_and_is_flagged_diverged() -> None:
    # dv/dt = 50 v: v doubles every step with dt = 0.02, from 1 -> 2 -> 4 ... -> 64 -> 100 (clamped)
    model = ClosedForm(edge=lambda v: v, update=lambda v, m, i: 50.0 * v)
    pred = rollout(model, t(1.0, -1.0, 0.0), torch.zeros(10, 1), 0.02).numpy()
    np.testing.assert_allclose(pred[:8, 0], [1, 2, 4, 8, 16, 32, 64, 100])
    assert pred[:, 1].min() == -ROLLOUT_BOUND == -100.0
    assert rollout_diverged(pred) and not rollout_diverged(pred[:7])


def test_rollout_scores_skip_flat_traces_per_neuron() -> None:
    time = np.linspace(0, 1, 50)
    true = np.stack([np.sin(6 * time), np.cos(6 * time), np.full(50, 0.3)], axis=1)
    pred = true.copy()
    pred[:, 1] = 0.5  # flat prediction: Pearson undefined; R2 = 1 - SS_res / SS_tot
    pearson, r2 = rollout_scores(pred, true)
    r2_1 = 1 - ((0.5 - true[:, 1]) ** 2).sum() / ((true[:, 1] - true[:, 1].mean()) ** 2).sum()
    assert pearson == pytest.approx(1.0)  # neuron 1 (flat pred) and neuron 2 (flat truth) are left out
    assert r2 == pytest.approx((1.0 + r2_1) / 2)  # neuron 2 (SS_tot = 0) is left out


def test_metrics_record_floors_test_r2_and_keeps_the_diverged_flag() -> None:
    base = dict(connectivity_R2=0.5, tau_R2=0.5, V_rest_R2=0.1, cluster_accuracy=0.3, test_pearson=0.1,
                training_time_min=1.0)  # fmt: skip
    m = Metrics(test_R2=-1.27e15, rollout_diverged=True, **base)
    assert m.test_R2 == TEST_R2_FLOOR == -1.0
    assert "test_R2: -1\n" in m.as_lines() and "rollout_diverged: true\n" in m.as_lines()
    assert Metrics(test_R2=-0.4, **base).test_R2 == -0.4
    assert Metrics.model_validate({**base, "test_R2": -3.0}).rollout_diverged is False  # an older record
