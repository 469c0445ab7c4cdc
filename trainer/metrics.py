"""Recovered parameters and scores of a trained GNN (MODEL.md section 6), at parity with the reference.

Every rule here follows the reference's metric code (allierc/flyvis-gnn @ acf1bc9, ``src/flyvis_gnn/
metrics.py``, ``GNN_PlotFigure.py``, ``models/graph_tester.py``, ``utils.py``); docs/PARITY.md cites the
lines. All R2 are squared Pearson correlations (the R2 of a least-squares line of learned on true).
Everything is batched over neurons/edges: a line fit over a grid of K voltages is one (N, K) tensor
operation, chunked over neurons only to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture
from torch import Tensor

from experiment.records import ROLLOUT_CLAMP, TEST_R2_FLOOR
from trainer.model import FlyVisGNN

GRID_POINTS = 1000  # voltages per neuron in every line fit
GAIN_FRAMES = 8  # frames whose d lin_phi / d M is median-ed
GAIN_LAST_MARGIN = 100  # the last gain frame is T - 100
W_OUTLIER = 5.0  # connectivity_R2 drops edges with |W* - W| > 5
ROLLOUT_BOUND = ROLLOUT_CLAMP  # the rollout clamps voltages to +-100 after every step
TRACE_EPS = 1e-8  # per-neuron std / sum of squares below this: Pearson / R2 undefined (NaN)
CLUSTER_SEED = 42  # GaussianMixture random_state, fixed
GMM_REG_COVAR = 1e-6  # sklearn's default; raised 10x per retry only if a fit fails
GMM_REG_RETRIES = 4
# grid points per MLP pass: small on CPU (cache-sized: 2x faster than 1M points, measured at extent 4), large on
# a GPU (few launches); both bound memory at extent 8 (45,669 neurons x 1,000 points)
CHUNK_POINTS_CPU = 1 << 14
CHUNK_POINTS_GPU = 1 << 22
STATS_CHUNK_FRAMES = 2048

__all__ = [
    "CLUSTER_SEED",
    "GAIN_FRAMES",
    "GRID_POINTS",
    "ROLLOUT_BOUND",
    "TEST_R2_FLOOR",
    "W_OUTLIER",
    "Probe",
    "Recovered",
    "activity_stats",
    "cluster_accuracy",
    "cluster_features",
    "connectivity_r2",
    "corrected_weights",
    "derive_tau",
    "derive_vrest",
    "edge_slopes",
    "fit_lines",
    "gain_frame_indices",
    "matched_accuracy",
    "message_gain",
    "phi_lines",
    "r2_score",
    "rollout",
    "rollout_diverged",
    "rollout_scores",
    "voltage_grid",
]


@dataclass(frozen=True)
class Recovered:
    """Per-neuron and per-edge quantities read off a model."""

    slope: np.ndarray  # d lin_phi / d v at M=0, I=0 (= -1/tau)
    offset: np.ndarray
    tau: np.ndarray
    V_rest: np.ndarray
    grad_msg: np.ndarray  # median d lin_phi / d M
    edge_slope: np.ndarray  # r_j: slope of lin_edge^2 over neuron j's positive range
    W_corrected: np.ndarray
    embedding: np.ndarray


# ----- activity statistics and frames --------------------------------------------------------------------------
def activity_stats(voltage: np.ndarray, chunk: int = STATS_CHUNK_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron mean and std (ddof 1, as torch's ``std``) over every frame of ``voltage`` (T, N).

    Reads the (memory-mapped) array in chunks of frames and merges the chunks' moments (Chan et al.),
    so a 64,000-frame extent-8 split never sits in memory whole.
    """
    t_total, n = voltage.shape
    count, mean, m2 = 0, np.zeros(n), np.zeros(n)
    for start in range(0, t_total, chunk):
        block = np.asarray(voltage[start : start + chunk], dtype=np.float64)
        k = block.shape[0]
        b_mean = block.mean(axis=0)
        b_m2 = ((block - b_mean) ** 2).sum(axis=0)
        delta = b_mean - mean
        total = count + k
        mean = mean + delta * (k / total)
        m2 = m2 + b_m2 + delta * delta * (count * k / total)
        count = total
    std = np.sqrt(m2 / (count - 1)) if count > 1 else np.zeros(n)
    return mean.astype(np.float32), std.astype(np.float32)


def gain_frame_indices(n_frames: int, k: int = GAIN_FRAMES) -> np.ndarray:
    """``linspace(T // 10, T - 100, k)`` truncated to integers, clipped into [0, T-1] for short splits."""
    idx = np.linspace(n_frames // 10, n_frames - GAIN_LAST_MARGIN, k, dtype=np.int64)
    return np.clip(idx, 0, max(n_frames - 1, 0))


# ----- line fits ----------------------------------------------------------------------------------------------
def fit_lines(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares line per row of x, y (N, K) -> slope, offset (N,), in float64.

    A row whose x does not vary (``K * sum (x - mean)^2 <= 1e-12``) gets slope 0 and offset 0.
    """
    x, y = x.double(), y.double()
    xm, ym = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    ss = (x - xm).square().sum(dim=1)
    ok = ss * x.shape[1] > 1e-12
    slope = torch.where(ok, ((x - xm) * (y - ym)).sum(dim=1) / torch.where(ok, ss, torch.ones_like(ss)), 0.0)
    offset = torch.where(ok, ym.squeeze(1) - slope * xm.squeeze(1), 0.0)
    return slope, offset


def voltage_grid(lo: Tensor, hi: Tensor, k: int = GRID_POINTS) -> Tensor:
    """(N, k) voltages from ``lo`` to ``hi`` per neuron, both ends included."""
    t = torch.linspace(0.0, 1.0, k, device=lo.device, dtype=lo.dtype)
    return lo.unsqueeze(1) + t * (hi - lo).unsqueeze(1)


def _on_grid(fn: Callable[[Tensor, Tensor], Tensor], a: Tensor, v: Tensor) -> Tensor:
    """``fn(v, a_i)`` for a per-neuron grid v (N, K), in chunks of whole neurons (CHUNK_POINTS_* points)."""
    step = max(1, (CHUNK_POINTS_GPU if v.is_cuda else CHUNK_POINTS_CPU) // v.shape[1])
    outs = []
    for s in range(0, v.shape[0], step):
        vv = v[s : s + step]
        outs.append(fn(vv, a[s : s + step].unsqueeze(1).expand(-1, vv.shape[1], -1)))
    return torch.cat(outs, dim=0)


@torch.no_grad()
def phi_lines(model: FlyVisGNN, mu: Tensor, sigma: Tensor, k: int = GRID_POINTS) -> tuple[Tensor, Tensor]:
    """Line fit of lin_phi(v, a_i, M=0, I=0) over v in [mu_i - 2 s_i, mu_i + 2 s_i] -> slope, offset (N,)."""
    v = voltage_grid(mu - 2 * sigma, mu + 2 * sigma, k)

    def f(vv: Tensor, aa: Tensor) -> Tensor:
        zeros = torch.zeros_like(vv)
        return model.phi(vv, aa, zeros, zeros)

    return fit_lines(v, _on_grid(f, model.a, v))


@torch.no_grad()
def edge_slopes(model: FlyVisGNN, mu: Tensor, sigma: Tensor, k: int = GRID_POINTS) -> Tensor:
    """r_j: slope of lin_edge(v, a_j)^2 over v in [max(mu_j - 2 s_j, 0), mu_j + 2 s_j].

    A neuron that is mostly below 0 (``mu_j + s_j <= 0``) gets r_j = 1.
    """
    valid = (mu + sigma) > 0
    lo = torch.where(valid, torch.clamp(mu - 2 * sigma, min=0.0), 0.0)
    hi = torch.where(valid, mu + 2 * sigma, 1.0)
    v = voltage_grid(lo, hi, k)
    slope = fit_lines(v, _on_grid(model.edge_fn, model.a, v))[0]
    return torch.where(valid, slope, 1.0)


def message_gain(model: FlyVisGNN, v: Tensor, stim: Tensor) -> Tensor:
    """Median over frames of d lin_phi / d M at the frames' own states; v (F, N), stim (F, n_input).

    torch's median of an even count is the lower of the two middle values (as in the reference).
    """
    with torch.no_grad():
        msg = model.messages(v)
    msg = msg.detach().requires_grad_(True)
    a = model.a.detach().unsqueeze(0).expand(v.shape[0], -1, -1)
    out = model.phi(v, a, msg, model.full_stimulus(stim))
    (grad,) = torch.autograd.grad(out.sum(), msg)
    return grad.median(dim=0).values


def corrected_weights(W: Tensor, src: Tensor, dst: Tensor, slope: Tensor, grad_msg: Tensor, r: Tensor) -> Tensor:
    """``W*_ij = -W_ij / slope_i * grad_msg_i * r_j`` for edges j -> i (i = dst, j = src), in W's dtype;
    inf/NaN (a zero slope) -> 0."""
    cast = lambda t: t.to(W.dtype)  # noqa: E731
    w = -W / cast(slope)[dst] * cast(grad_msg)[dst] * cast(r)[src]
    return torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)


def derive_tau(slope: Tensor) -> Tensor:
    """tau = clip(1 / -slope, 0, 1); 1 where the slope is exactly 0."""
    safe = torch.where(slope != 0, slope, -1.0)
    return torch.where(slope != 0, -1.0 / safe, 1.0).clamp(0.0, 1.0)


def derive_vrest(slope: Tensor, offset: Tensor) -> Tensor:
    """V_rest = -offset / slope; 1 where the slope is exactly 0."""
    safe = torch.where(slope != 0, slope, 1.0)
    return torch.where(slope != 0, -offset / safe, 1.0)


# ----- scores -------------------------------------------------------------------------------------------------
def r2_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Squared Pearson correlation (the R2 of a linear fit of pred on true); 0 when undefined.

    Pairs with a non-finite value are left out (the reference's fit would raise on them).
    """
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
    """What recovering W needs besides the model: voltage ranges and the gain frames for d lin_phi / d M."""

    mu: Tensor
    sigma: Tensor
    gain_v: Tensor
    gain_stim: Tensor
    w_true: np.ndarray

    @classmethod
    def from_split(cls, voltage: np.ndarray, stimulus: np.ndarray, w_true: np.ndarray, device: torch.device) -> Probe:
        """Statistics over every training frame; the GAIN_FRAMES frames at ``gain_frame_indices``."""
        mu, sigma = activity_stats(voltage)
        idx = gain_frame_indices(voltage.shape[0])
        to = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)  # noqa: E731
        return cls(
            mu=to(mu),
            sigma=to(sigma),
            gain_v=to(voltage[idx]),
            gain_stim=to(stimulus[idx]),
            w_true=np.asarray(w_true, dtype=np.float64),
        )

    def recover(self, model: FlyVisGNN) -> Recovered:
        slope, offset = phi_lines(model, self.mu, self.sigma)
        grad_msg = message_gain(model, self.gain_v, self.gain_stim)
        r = edge_slopes(model, self.mu, self.sigma)
        src, dst = model.edge_index[0], model.edge_index[1]
        w_star = corrected_weights(model.W.detach(), src, dst, slope, grad_msg, r)
        np_ = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        return Recovered(
            slope=np_(slope),
            offset=np_(offset),
            tau=np_(derive_tau(slope)),
            V_rest=np_(derive_vrest(slope, offset)),
            grad_msg=np_(grad_msg),
            edge_slope=np_(r),
            W_corrected=np_(w_star),
            embedding=np_(model.a),
        )

    def voltage_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The training voltage's per-neuron (mu, sigma) as numpy arrays (what ``activity_stats`` returned)."""
        return self.mu.cpu().numpy(), self.sigma.cpu().numpy()

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
    """[a, tau_hat, V_rest_hat, mean/std of incoming W*, mean/std of outgoing W*] per neuron, raw (not scaled).

    W* here is every edge's corrected weight (no outlier drop), as in the reference.
    """
    n = rec.tau.shape[0]
    w = np.nan_to_num(rec.W_corrected, nan=0.0, posinf=0.0, neginf=0.0)
    in_mean, in_std = degree_stats(w, edge_index[1], n)
    out_mean, out_std = degree_stats(w, edge_index[0], n)
    cols = [rec.embedding, rec.tau[:, None], rec.V_rest[:, None]]
    cols += [c[:, None] for c in (in_mean, in_std, out_mean, out_std)]
    return np.nan_to_num(np.concatenate(cols, axis=1), nan=0.0, posinf=0.0, neginf=0.0)


def matched_accuracy(labels: np.ndarray, types: np.ndarray) -> float:
    """Fraction of neurons whose cluster is Hungarian-matched to their type (unmatched clusters are wrong)."""
    _, lab = np.unique(labels, return_inverse=True)
    _, typ = np.unique(types, return_inverse=True)
    counts = np.zeros((lab.max() + 1, typ.max() + 1))
    np.add.at(counts, (lab, typ), 1.0)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels.shape[0])


def gmm_labels(features: np.ndarray, n_components: int, seed: int = CLUSTER_SEED) -> np.ndarray:
    """GaussianMixture labels: full covariances, sklearn's default regularisation and iterations.

    Components are capped by the number of distinct points (sklearn refuses more components than
    samples). If a fit still fails on a degenerate covariance, ``reg_covar`` is raised 10x and the fit
    retried (at most GMM_REG_RETRIES times); the reference would stop with the error instead.
    """
    n_distinct = np.unique(np.round(features, 6), axis=0).shape[0]
    k = max(1, min(n_components, n_distinct, features.shape[0]))
    reg = GMM_REG_COVAR
    for attempt in range(GMM_REG_RETRIES + 1):
        try:
            gmm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=reg, random_state=seed)
            return gmm.fit_predict(features)
        except ValueError:
            if attempt == GMM_REG_RETRIES:
                raise
            reg *= 10.0
    raise AssertionError("unreachable")


def cluster_accuracy(features: np.ndarray, types: np.ndarray, n_components: int, seed: int = CLUSTER_SEED) -> float:
    """GaussianMixture on the raw features, then Hungarian matching of clusters to types."""
    return matched_accuracy(gmm_labels(features, n_components, seed), types)


# ----- autonomous rollout -------------------------------------------------------------------------------------
@torch.no_grad()
def rollout(model: FlyVisGNN, v0: Tensor, stimulus: Tensor, dt: float, bound: float = ROLLOUT_BOUND) -> Tensor:
    """Autonomous Euler rollout (noise 0) from v0 (N,) driven by stimulus (T, n_input) -> (T, N).

    Row t is the state at frame t (row 0 = v0). After every step the state is clamped to +-``bound``
    (NaN counts as +``bound``), so a diverging model leaves rows pinned at the bound.
    """
    steps = stimulus.shape[0]
    out = torch.empty(steps, v0.shape[0], dtype=v0.dtype, device=v0.device)
    v = v0.clone()
    for t in range(steps):
        out[t] = v
        dv = model(v.unsqueeze(0), stimulus[t : t + 1]).squeeze(0)
        v = torch.nan_to_num(v + dt * dv, nan=bound, posinf=bound, neginf=-bound).clamp(-bound, bound)
    return out


def rollout_diverged(pred: np.ndarray, bound: float = ROLLOUT_BOUND) -> bool:
    """Whether a rollout reached the clamp bound (or was non-finite) at any frame."""
    pred = np.asarray(pred)
    return bool(np.any(~np.isfinite(pred)) or np.any(np.abs(pred) >= bound))


def rollout_scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Nan-mean over neurons of Pearson r and of R2 = 1 - SS_res/SS_tot; pred, true (T, N).

    Per neuron, Pearson is undefined (NaN) when either trace's std is <= 1e-8 and R2 when SS_tot <= 1e-8;
    frames with a NaN are left out per neuron. An all-NaN score is 0. test_R2 is not floored here.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    valid = ~(np.isnan(pred) | np.isnan(true))
    n = valid.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p0, t0 = np.where(valid, pred, 0.0), np.where(valid, true, 0.0)
        pm, tm = p0.sum(axis=0) / n, t0.sum(axis=0) / n
        pc, tc = np.where(valid, pred - pm, 0.0), np.where(valid, true - tm, 0.0)
        ss_p, ss_t = (pc * pc).sum(axis=0), (tc * tc).sum(axis=0)
        defined = (n > 1) & (np.sqrt(ss_p / n) > TRACE_EPS) & (np.sqrt(ss_t / n) > TRACE_EPS)
        r = np.where(defined, (pc * tc).sum(axis=0) / np.sqrt(ss_p * ss_t), np.nan)
        ss_res = (np.where(valid, pred - true, 0.0) ** 2).sum(axis=0)
        r2 = np.where((n > 0) & (ss_t > TRACE_EPS), 1.0 - ss_res / ss_t, np.nan)
    r, r2 = r[np.isfinite(r)], r2[np.isfinite(r2)]
    return (float(r.mean()) if r.size else 0.0), (float(r2.mean()) if r2.size else 0.0)


def floor_test_r2(value: float) -> float:
    """test_R2 as reported: never below TEST_R2_FLOOR (a diverged rollout is flagged, not a -1e15)."""
    return max(float(value), TEST_R2_FLOOR)
