"""Loss and regularisers: the norm, each coefficient's term (the parity hand computations: test_parity_training)."""

from __future__ import annotations

import math

import pytest
import torch

from experiment.config import GraphModelConfig, TrainingConfig
from trainer.losses import REGULARISER_KEYS, anneal_factors, data_loss, regularisers
from trainer.model import FlyVisGNN

ALL_ZERO = dict.fromkeys(REGULARISER_KEYS, 0.0)


def _model() -> FlyVisGNN:
    cfg = GraphModelConfig(n_layers=1, hidden_dim_update=4, w_init_mode="randn_scaled")
    return FlyVisGNN(cfg, torch.tensor([[0, 1], [1, 0]]), n_neurons=2, n_input=1, seed=0)


def test_data_loss_is_the_unsquared_unaveraged_l2_norm() -> None:
    assert data_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])).item() == pytest.approx(5.0)


def test_zero_coefficients_add_no_terms() -> None:
    assert regularisers(_model(), torch.rand(2), TrainingConfig(**ALL_ZERO), 0, 0.5) == {}


@pytest.mark.parametrize("key", list(ALL_ZERO))
def test_each_coefficient_adds_its_own_positive_term(key: str) -> None:
    model = _model()
    with torch.no_grad():  # lin_edge = 3 - v: its square decreases on [0.5, 1], so edge_diff is active
        model.lin_edge[0].weight.copy_(torch.tensor([[-1.0, 0.0, 0.0]]))
        model.lin_edge[0].bias.fill_(3.0)
    cfg = TrainingConfig(**{**ALL_ZERO, key: 1.0})
    terms = regularisers(model, torch.tensor([0.5, 1.0]), cfg, 1, 0.5)  # epoch 1: every L1 anneal factor > 0
    assert list(terms) == [key]
    assert terms[key].item() > 0


def test_w_l1_term_is_coefficient_times_anneal_times_abs_sum() -> None:
    model = _model()
    cfg = TrainingConfig(**{**ALL_ZERO, "coeff_W_L1": 2.0, "coeff_W_L1_rate": 0.5})
    got = regularisers(model, torch.rand(2), cfg, 2, 0.5)["coeff_W_L1"].item()
    assert got == pytest.approx(2.0 * (1 - math.exp(-1.0)) * model.W.abs().sum().item(), rel=1e-6)


def test_regulariser_keys_are_the_annealed_coefficients() -> None:
    assert tuple(anneal_factors(TrainingConfig(), 0)) == REGULARISER_KEYS
