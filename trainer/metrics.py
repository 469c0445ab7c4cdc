"""Recovered parameters and scores of a trained GNN (MODEL.md section 6).

All R2 are squared Pearson correlations after a linear fit of learned on true. Everything is batched
over neurons/edges: a line fit over a grid of K voltages is one (N, K) tensor operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture
from torch import Tensor

from trainer.model import FlyVisGNN

GRID_POINTS = 32
GAIN_FRAMES = 8
W_OUTLIER = 5.0


@dataclass(frozen=True)
class Recovered:
    """Per-neuron and per-edge quantities read off a model."""

    slope: np.ndarray  # d lin_phi / d v at M=0, I=0 (= -1/tau)
    offset: np.ndarray
    tau: np.ndarray
    V_rest: np.ndarray
    grad_msg: np.ndarray  # median d lin_phi / d M
    edge_slope: np.ndarray  # r_j: slope of lin_edge^2 over neuron j's range
    W_corrected: np.ndarray
    embedding: np.ndarray


def fit_lines(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares line per row of x, y (N, K) -> slope, offset (N,)."""
    xm, ym = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    var = (x - xm).square().sum(dim=1)
    slope = ((x - xm) * (y - ym)).sum(dim=1) / var.clamp_min(1e-12)
    return slope, ym.squeeze(1) - slope * xm.squeeze(1)


def voltage_grid(mu: Tensor, sigma: Tensor, k: int = GRID_POINTS) -> Tensor:
    """(N, k) voltages spanning [mu - 2 sigma, mu + 2 sigma] per neuron (a tiny span when sigma = 0)."""
    span = torch.linspace(-2.0, 2.0, k, device=mu.device, dtype=mu.dtype)
    return mu.unsqueeze(1) + sigma.clamp_min(1e-3).unsqueeze(1) * span


@torch.no_grad()
def phi_lines(model: FlyVisGNN, mu: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Line fit of lin_phi(v, a_i, M=0, I=0) over each neuron's voltage range -> slope, offset (N,)."""
    v = voltage_grid(mu, sigma)
    a = model.a.unsqueeze(1).expand(-1, v.shape[1], -1)
    zeros = torch.zeros_like(v)
    return fit_lines(v, model.phi(v, a, zeros, zeros))


@torch.no_grad()
def edge_slopes(model: FlyVisGNN, mu: Tensor, sigma: Tensor) -> Tensor:
    """r_j: slope of lin_edge(v, a_j)^2 (or lin_edge when not positive) over neuron j's range."""
    v = voltage_grid(mu, sigma)
    a = model.a.unsqueeze(1).expand(-1, v.shape[1], -1)
    return fit_lines(v, model.edge_fn(v, a))[0]


def message_gain(model: FlyVisGNN, v: Tensor, stim: Tensor) -> Tensor:
    """Median over frames of d lin_phi / d M at the frames' own states; v (F, N), stim (F, n_input)."""
    with torch.no_grad():
        msg = model.messages(v)
    msg = msg.detach().requires_grad_(True)
    a = model.a.detach().unsqueeze(0).expand(v.shape[0], -1, -1)
    out = model.phi(v, a, msg, model.full_stimulus(stim))
    (grad,) = torch.autograd.grad(out.sum(), msg)
    return grad.median(dim=0).values


def corrected_weights(W: Tensor, src: Tensor, dst: Tensor, slope: Tensor, grad_msg: Tensor, r: Tensor) -> Tensor:
    """``W*_ij = -W_ij / slope_i * grad_msg_i * r_j`` for edges j -> i (i = dst, j = src)."""
    safe = torch.where(slope.abs() < 1e-8, torch.full_like(slope, -1e-8), slope)
    return -W / safe[dst] * grad_msg[dst] * r[src]


def r2_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Squared Pearson correlation (the R2 of a linear fit of pred on true); 0 when undefined."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    ok = np.isfinite(pred) & np.isfinite(true)
    pred, true = pred[ok], true[ok]
    if pred.size < 2:
        return 0.0
    pc, tc = pred - pred.mean(), true - true.mean()
    denom = np.sqrt((pc * pc).sum() * (tc * tc).sum())
    if denom <= 0 or not np.isfinite(denom):
        return 0.0
    return float(((pc * tc).sum() / denom) ** 2)


def connectivity_r2(w_corrected: np.ndarray, w_true: np.ndarray, outlier: float = W_OUTLIER) -> float:
    """R2 of corrected against true W after dropping edges with |W* - W| > ``outlier``."""
    keep = np.abs(w_corrected - w_true) <= outlier
    return r2_score(w_corrected[keep], w_true[keep])


@dataclass
class Probe:
    """What recovering W needs besides the model: voltage ranges and a few frames for d lin_phi / d M."""

    mu: Tensor
    sigma: Tensor
    gain_v: Tensor
    gain_stim: Tensor
    w_true: np.ndarray

    def recover(self, model: FlyVisGNN) -> Recovered:
        slope, offset = phi_lines(model, self.mu, self.sigma)
        grad_msg = message_gain(model, self.gain_v, self.gain_stim)
        r = edge_slopes(model, self.mu, self.sigma)
        src, dst = model.edge_index[0], model.edge_index[1]
        w_star = corrected_weights(model.W.detach(), src, dst, slope, grad_msg, r)
        safe = torch.where(slope.abs() < 1e-8, torch.full_like(slope, -1e-8), slope)
        tau = torch.clamp(-1.0 / safe, 0.0, 1.0)
        np_ = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        return Recovered(
            slope=np_(slope),
            offset=np_(offset),
            tau=np_(tau),
            V_rest=np_(-offset / safe),
            grad_msg=np_(grad_msg),
            edge_slope=np_(r),
            W_corrected=np_(w_star),
            embedding=np_(model.a),
        )

    def connectivity_r2(self, model: FlyVisGNN) -> float:
        return connectivity_r2(self.recover(model).W_corrected, self.w_true)


def degree_stats(values: np.ndarray, index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of edge ``values`` grouped by node ``index`` (0 for nodes without edges)."""
    count = np.bincount(index, minlength=n).astype(np.float64)
    total = np.bincount(index, weights=values, minlength=n)
    total_sq = np.bincount(index, weights=values * values, minlength=n)
    mean = np.divide(total, count, out=np.zeros(n), where=count > 0)
    var = np.divide(total_sq, count, out=np.zeros(n), where=count > 0) - mean * mean
    return mean, np.sqrt(np.clip(var, 0.0, None))


def cluster_features(rec: Recovered, edge_index: np.ndarray) -> np.ndarray:
    """[a, tau_hat, V_rest_hat, mean/std of incoming W*, mean/std of outgoing W*] per neuron, z-scored."""
    n = rec.tau.shape[0]
    w = np.nan_to_num(rec.W_corrected, nan=0.0, posinf=0.0, neginf=0.0)
    in_mean, in_std = degree_stats(w, edge_index[1], n)
    out_mean, out_std = degree_stats(w, edge_index[0], n)
    cols = [rec.embedding, rec.tau[:, None], rec.V_rest[:, None]]
    cols += [c[:, None] for c in (in_mean, in_std, out_mean, out_std)]
    feats = np.nan_to_num(np.concatenate(cols, axis=1), nan=0.0, posinf=0.0, neginf=0.0)
    std = feats.std(axis=0)
    return (feats - feats.mean(axis=0)) / np.where(std > 0, std, 1.0)


def matched_accuracy(labels: np.ndarray, types: np.ndarray) -> float:
    """Fraction of neurons whose cluster is Hungarian-matched to their type (unmatched clusters are wrong)."""
    _, lab = np.unique(labels, return_inverse=True)
    _, typ = np.unique(types, return_inverse=True)
    counts = np.zeros((lab.max() + 1, typ.max() + 1))
    np.add.at(counts, (lab, typ), 1.0)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels.shape[0])


def cluster_accuracy(features: np.ndarray, types: np.ndarray, n_components: int, seed: int) -> float:
    """GaussianMixture on the features (components capped by the number of distinct points) then Hungarian."""
    n_distinct = np.unique(np.round(features, 6), axis=0).shape[0]
    k = max(1, min(n_components, n_distinct, features.shape[0]))
    gmm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=200)
    labels = gmm.fit_predict(features)
    return matched_accuracy(labels, types)


@torch.no_grad()
def rollout(model: FlyVisGNN, v0: Tensor, stimulus: Tensor, dt: float, bound: float = 1e6) -> Tensor:
    """Autonomous Euler rollout (noise 0) from v0 (N,) driven by stimulus (T, n_input) -> (T, N).

    Row t is the state at frame t (row 0 = v0). States are clipped to +-``bound`` so that a diverging
    model gives a very poor but finite score instead of NaN.
    """
    steps = stimulus.shape[0]
    out = torch.empty(steps, v0.shape[0], dtype=v0.dtype, device=v0.device)
    v = v0.clone()
    for t in range(steps):
        out[t] = v
        dv = model(v.unsqueeze(0), stimulus[t : t + 1]).squeeze(0)
        v = torch.nan_to_num(v + dt * dv, nan=bound, posinf=bound, neginf=-bound).clamp(-bound, bound)
    return out


def rollout_scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Nan-mean over neurons of Pearson r and of R2 = 1 - SS_res/SS_tot; pred, true (T, N)."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    pc, tc = pred - pred.mean(axis=0), true - true.mean(axis=0)
    ss_tot = (tc * tc).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (pc * tc).sum(axis=0) / np.sqrt((pc * pc).sum(axis=0) * ss_tot)
        r2 = 1.0 - ((pred - true) ** 2).sum(axis=0) / ss_tot
    r = r[np.isfinite(r)]
    r2 = r2[np.isfinite(r2)]
    return (float(r.mean()) if r.size else 0.0), (float(r2.mean()) if r2.size else 0.0)
