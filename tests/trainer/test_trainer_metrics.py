"""Metrics: an oracle model scores 1, the corrected-W formula, R2 and clustering helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiment.config import ExperimentConfig
from trainer.data import Dataset
from trainer.metrics import (
    cluster_accuracy,
    connectivity_r2,
    corrected_weights,
    fit_lines,
    matched_accuracy,
    r2_score,
    rollout_scores,
)
from trainer.model import FlyVisGNN
from trainer.train import build_probe, evaluate


def test_oracle_model_recovers_everything(synth: Dataset, oracle: FlyVisGNN) -> None:
    model = oracle
    cfg = ExperimentConfig(dataset="t")
    cfg.training.cluster_n_components = 5
    cfg.training.n_rollout_frames = 100
    m = evaluate(model, synth, cfg, build_probe(synth, torch.device("cpu")), 60.0).metrics
    assert m.connectivity_R2 > 0.999
    assert m.tau_R2 > 0.999 and m.V_rest_R2 > 0.999
    assert m.test_R2 > 0.999 and m.test_pearson > 0.999
    assert m.cluster_accuracy > 0.5  # random synthetic wiring is not type-structured, unlike the connectome
    assert m.training_time_min == 1.0


def test_corrected_weights_on_a_hand_worked_case() -> None:
    # edge 0: 0 -> 1, edge 1: 1 -> 0; slope = [-2, -4], grad_msg = [3, 1], r = [0.5, 2]
    w = torch.tensor([2.0, -1.0])
    src, dst = torch.tensor([0, 1]), torch.tensor([1, 0])
    got = corrected_weights(w, src, dst, torch.tensor([-2.0, -4.0]), torch.tensor([3.0, 1.0]), torch.tensor([0.5, 2.0]))
    # edge 0: -2 / -4 * 1 * 0.5 = 0.25; edge 1: 1 / -2 * 3 * 2 = -3
    torch.testing.assert_close(got, torch.tensor([0.25, -3.0]))


def test_fit_lines_recovers_slope_and_offset_per_row() -> None:
    x = torch.linspace(0, 1, 5).repeat(2, 1)
    slope, offset = fit_lines(x, torch.stack([2 * x[0] + 1, -3 * x[1]]))
    torch.testing.assert_close(slope, torch.tensor([2.0, -3.0], dtype=torch.float64))
    torch.testing.assert_close(offset, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_r2_is_invariant_to_a_linear_map_and_zero_when_undefined() -> None:
    x = np.random.default_rng(0).normal(size=50)
    assert r2_score(3 * x - 2, x) == pytest.approx(1.0)
    assert r2_score(np.ones(5), np.arange(5.0)) == 0.0


def test_connectivity_r2_drops_outliers_beyond_five() -> None:
    true = np.linspace(-1, 1, 100)
    learned = true.copy()
    learned[0] = 100.0
    assert connectivity_r2(learned, true) == pytest.approx(1.0)


def test_matched_accuracy_counts_unmatched_clusters_as_wrong() -> None:
    types = np.array([0, 0, 1, 1])
    assert matched_accuracy(np.array([5, 5, 7, 7]), types) == 1.0
    assert matched_accuracy(np.array([0, 1, 2, 2]), types) == 0.75


def test_cluster_accuracy_is_one_on_separated_type_blobs() -> None:
    rng = np.random.default_rng(0)
    types = np.repeat(np.arange(4), 25)
    feats = rng.normal(scale=0.05, size=(100, 3)) + types[:, None] * 3.0
    assert cluster_accuracy(feats, types, n_components=4, seed=0) == 1.0


def test_rollout_scores_are_one_for_a_perfect_rollout() -> None:
    true = np.random.default_rng(1).normal(size=(30, 4))
    assert rollout_scores(true, true) == pytest.approx((1.0, 1.0))
