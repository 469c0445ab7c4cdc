"""Training loss: ``||y_hat - y||_2`` plus the regularisers of TrainingConfig (MODEL.md section 4).

L1 terms are annealed by ``1 - exp(-rate * (epoch + 1))``: epoch 0 already gets ``1 - exp(-rate)`` of
the L1 (the reference's ``1 - exp(-rate * epoch)`` is zero at epoch 0, which switches L1 off for the
single-epoch runs of the protocol).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from experiment.config import TrainingConfig
from trainer.model import FlyVisGNN


def l1_anneal(rate: float, epoch: int) -> float:
    """Fraction of an L1 coefficient applied in 0-based ``epoch``."""
    return 1.0 - math.exp(-rate * (epoch + 1))


def data_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    """Euclidean norm of the residual over the whole batch (not squared, not averaged)."""
    return torch.linalg.vector_norm(y_hat - y)


def _abs_sum(tensors: list[Tensor]) -> Tensor:
    return torch.stack([t.abs().sum() for t in tensors]).sum()


def _sq_sum(tensors: list[Tensor]) -> Tensor:
    return torch.stack([t.square().sum() for t in tensors]).sum()


def regularisers(model: FlyVisGNN, v: Tensor, cfg: TrainingConfig, epoch: int, xnorm: float) -> dict[str, Tensor]:
    """The non-zero regularisers for voltages ``v`` (N,) of one frame; keys name the config coefficient.

    coeff_edge_diff: ``||ReLU(g(v)^2 - g(1.05 v)^2)||`` (lin_edge output should grow with v);
    coeff_edge_norm: ``||g(2 xnorm)^2 - 2 xnorm||`` (anchors the scale of lin_edge, W absorbs the rest);
    L1 (annealed) / L2 on the weight matrices of both MLPs and on W.
    """
    terms: dict[str, Tensor] = {}
    a = model.a
    if cfg.coeff_edge_diff > 0:
        diff = torch.relu(model.edge_fn(v, a) - model.edge_fn(1.05 * v, a))
        terms["coeff_edge_diff"] = cfg.coeff_edge_diff * torch.linalg.vector_norm(diff)
    if cfg.coeff_edge_norm > 0:
        g = model.edge_fn(torch.full_like(v, 2.0 * xnorm), a)
        terms["coeff_edge_norm"] = cfg.coeff_edge_norm * torch.linalg.vector_norm(g - 2.0 * xnorm)
    if cfg.coeff_edge_weight_L1 > 0:
        f = l1_anneal(cfg.coeff_edge_weight_L1_rate, epoch)
        terms["coeff_edge_weight_L1"] = cfg.coeff_edge_weight_L1 * f * _abs_sum(model.mlp_weights("lin_edge"))
    if cfg.coeff_edge_weight_L2 > 0:
        terms["coeff_edge_weight_L2"] = cfg.coeff_edge_weight_L2 * _sq_sum(model.mlp_weights("lin_edge"))
    if cfg.coeff_phi_weight_L1 > 0:
        f = l1_anneal(cfg.coeff_phi_weight_L1_rate, epoch)
        terms["coeff_phi_weight_L1"] = cfg.coeff_phi_weight_L1 * f * _abs_sum(model.mlp_weights("lin_phi"))
    if cfg.coeff_phi_weight_L2 > 0:
        terms["coeff_phi_weight_L2"] = cfg.coeff_phi_weight_L2 * _sq_sum(model.mlp_weights("lin_phi"))
    if cfg.coeff_W_L1 > 0:
        terms["coeff_W_L1"] = cfg.coeff_W_L1 * l1_anneal(cfg.coeff_W_L1_rate, epoch) * model.W.abs().sum()
    if cfg.coeff_W_L2 > 0:
        terms["coeff_W_L2"] = cfg.coeff_W_L2 * model.W.square().sum()
    return terms
