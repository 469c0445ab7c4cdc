"""Training loss: ``||y_hat - y||_2`` plus the regularisers of TrainingConfig, at parity with the reference.

The regularisers follow the reference's seed era (docs/PARITY.md):

- norms, not squares: an L1 term is ``coeff * ||p||_1`` and an L2 term ``coeff * ||p||_2``, summed over every
  parameter tensor of the MLP, biases included; the W terms are ``coeff * ||W||_1`` and ``coeff * ||W||_2``;
- ``edge_diff`` and ``edge_norm`` evaluate lin_edge on detached inputs (voltage and embedding), so they move
  lin_edge's weights only, never the embedding;
- annealing by 0-based epoch: W_L1 and phi_weight_L1 by ``1 - exp(-rate * epoch)`` (0 in epoch 0);
  edge_weight_L1 by ``1 - exp(-rate ** epoch)`` (``1 - e^-1 = 0.632`` in epoch 0); the L2 terms, edge_diff and
  edge_norm are not annealed. (The reference's HEAD anneals every weight penalty with ``1 - exp(-rate * epoch)``
  and skips W_L2 when W_L1 was applied; we follow the seed era, whose figures the protocol quotes.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from experiment.config import TrainingConfig
from trainer.model import FlyVisGNN


def exp_anneal(rate: float, epoch: int) -> float:
    """``1 - exp(-rate * epoch)``: the W_L1 and phi_weight_L1 factor (0 in epoch 0)."""
    return 1.0 - math.exp(-rate * epoch)


def power_anneal(rate: float, epoch: int) -> float:
    """``1 - exp(-rate ** epoch)``: the edge_weight_L1 factor (``1 - e^-1`` in epoch 0, falling for rate < 1)."""
    return 1.0 - math.exp(-(rate**epoch))


REGULARISER_KEYS = (
    "coeff_edge_diff",
    "coeff_edge_norm",
    "coeff_edge_weight_L1",
    "coeff_edge_weight_L2",
    "coeff_phi_weight_L1",
    "coeff_phi_weight_L2",
    "coeff_W_L1",
    "coeff_W_L2",
)  # every regulariser coefficient of TrainingConfig, in the order of anneal_factors


def anneal_factors(cfg: TrainingConfig, epoch: int) -> dict[str, float]:
    """Factor multiplying each regulariser coefficient in 0-based ``epoch``; keys name the coefficient."""
    return {
        "coeff_edge_diff": 1.0,
        "coeff_edge_norm": 1.0,
        "coeff_edge_weight_L1": power_anneal(cfg.coeff_edge_weight_L1_rate, epoch),
        "coeff_edge_weight_L2": 1.0,
        "coeff_phi_weight_L1": exp_anneal(cfg.coeff_phi_weight_L1_rate, epoch),
        "coeff_phi_weight_L2": 1.0,
        "coeff_W_L1": exp_anneal(cfg.coeff_W_L1_rate, epoch),
        "coeff_W_L2": 1.0,
    }


def data_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    """Euclidean norm of the residual over the whole batch (not squared, not averaged)."""
    return torch.linalg.vector_norm(y_hat - y)


def norm_sum(module: nn.Module, order: int) -> Tensor:
    """``sum_p ||p||_order`` over every parameter tensor of ``module`` (weights and biases)."""
    return torch.stack([torch.linalg.vector_norm(p, ord=order) for p in module.parameters()]).sum()


def annealed_coefficients(cfg: TrainingConfig, epoch: int) -> dict[str, float]:
    """Each regulariser coefficient of ``cfg`` times its anneal factor in 0-based ``epoch``."""
    f = anneal_factors(cfg, epoch)
    return {key: getattr(cfg, key) * f[key] for key in f}


def ever_active(cfg: TrainingConfig) -> tuple[str, ...]:
    """The regularisers whose annealed coefficient is > 0 in some epoch of the run (REGULARISER_KEYS order)."""
    coeffs = [annealed_coefficients(cfg, epoch) for epoch in range(cfg.n_epochs)]
    return tuple(key for key in REGULARISER_KEYS if any(c[key] > 0 for c in coeffs))


def active_coefficients(cfg: TrainingConfig, epoch: int) -> dict[str, float]:
    """The annealed coefficients that are > 0 in 0-based ``epoch``: the terms an eager step adds."""
    return {key: c for key, c in annealed_coefficients(cfg, epoch).items() if c > 0}


Coefficient = float | Tensor


def regularisers(model: FlyVisGNN, v: Tensor, cfg: TrainingConfig, epoch: int, xnorm: float) -> dict[str, Tensor]:
    """The active regularisers for the voltages ``v`` (N,) of one frame in ``epoch``; keys name the config
    coefficient. A term whose annealed coefficient is 0 is left out."""
    return weighted_regularisers(model, v, active_coefficients(cfg, epoch), xnorm)


def weighted_regularisers(
    model: FlyVisGNN, v: Tensor, coeff: Mapping[str, Coefficient], xnorm: float
) -> dict[str, Tensor]:
    """The regularisers for the voltages ``v`` (N,) of one frame: one term per key of ``coeff``, weighted by it.

    The trainer calls this once per iteration with the last frame of the batch (the reference's rule).
    coeff_edge_diff: ``||ReLU(g(v, a)^2 - g(1.05 v, a)^2)||_2`` (lin_edge should grow with v);
    coeff_edge_norm: ``||g(2 xnorm, a)^2 - 2 xnorm||_2`` (anchors lin_edge's scale; W absorbs the rest);
    both on detached v and a. The eager step passes the coefficients > 0 (``active_coefficients``); the compiled
    step passes 0-d tensors for every term active in some epoch (one graph for every epoch; a term is exactly 0
    while its coefficient is, with the same loss and gradients as leaving it out).
    """
    terms: dict[str, Tensor] = {}
    if "coeff_edge_diff" in coeff or "coeff_edge_norm" in coeff:
        v_in, a_in = v.detach(), model.a.detach()
        if "coeff_edge_diff" in coeff:
            diff = torch.relu(model.edge_fn(v_in, a_in) - model.edge_fn(1.05 * v_in, a_in))
            terms["coeff_edge_diff"] = coeff["coeff_edge_diff"] * torch.linalg.vector_norm(diff)
        if "coeff_edge_norm" in coeff:
            g = model.edge_fn(torch.full_like(v_in, 2.0 * xnorm), a_in)
            terms["coeff_edge_norm"] = coeff["coeff_edge_norm"] * torch.linalg.vector_norm(g - 2.0 * xnorm)
    for mlp_name, prefix in (("lin_edge", "coeff_edge_weight"), ("lin_phi", "coeff_phi_weight")):
        mlp = getattr(model, mlp_name)
        for order in (1, 2):
            key = f"{prefix}_L{order}"
            if key in coeff:
                terms[key] = coeff[key] * norm_sum(mlp, order)
    if "coeff_W_L1" in coeff:
        terms["coeff_W_L1"] = coeff["coeff_W_L1"] * torch.linalg.vector_norm(model.W, ord=1)
    if "coeff_W_L2" in coeff:
        terms["coeff_W_L2"] = coeff["coeff_W_L2"] * torch.linalg.vector_norm(model.W, ord=2)
    return terms


def rollout_loss(
    model: FlyVisGNN, v0: Tensor, target: Tensor, stim: Tensor, delta_t: float, noise: Tensor | None = None
) -> Tensor:
    """The recurrent data term: ``||(v_T - target) / (delta_t * T)||_2`` over the whole batch.

    ``v_T`` is ``T`` explicit Euler steps of the model from the observed voltages ``v0`` (B, N):
    ``v_{s+1} = v_s + delta_t * model(v_s, stim[s]) (+ noise[s])`` with the stimulus of frame ``k + s``
    (``stim`` (T, B, n_input)); ``target`` (B, N) is the observed voltage of frame ``k + T``. Only the end
    state enters the loss; gradients flow through every step (no detach). ``noise`` (T, B, N): already scaled.
    """
    v = v0
    for s in range(stim.shape[0]):
        v = v + delta_t * model(v, stim[s])
        if noise is not None:
            v = v + noise[s]
    return torch.linalg.vector_norm((v - target) / (delta_t * stim.shape[0]))
