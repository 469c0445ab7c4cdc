"""The training loop and the final evaluation of one model on one dataset (MODEL.md sections 5-6)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from experiment.config import ExperimentConfig, TrainingConfig
from experiment.records import R2_HEADER, Metrics, Phase, R2Row, format_r2_row
from trainer.data import Dataset, Split, global_voltage_std
from trainer.losses import data_loss, regularisers
from trainer.metrics import (
    Probe,
    Recovered,
    cluster_accuracy,
    cluster_features,
    connectivity_r2,
    floor_test_r2,
    r2_score,
    rollout,
    rollout_diverged,
    rollout_scores,
)
from trainer.model import EdgeMode, FlyVisGNN
from trainer.progress import Progress
from trainer.schedule import apply_lrs, build_optimizer, iterations_per_epoch, phase_lrs, r2_checkpoints

LOSS_CHECK_EVERY = 50


class TrainingFailed(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message is the slot's one-line reason."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingFailed("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


@dataclass
class TrainResult:
    """What the loop produced besides the model: losses, the R2 trajectory and the phase spans."""

    losses: np.ndarray
    r2_rows: list[R2Row]
    phase_spans: list[tuple[int, int, Phase]]
    niter: int
    seconds: float
    lr_log: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (global step, LRs set there)


def build_model(cfg: ExperimentConfig, data: Dataset, device: torch.device, edge_mode: EdgeMode = "node") -> FlyVisGNN:
    """The GNN for this dataset, initialised from ``training.seed``."""
    edge_index = torch.from_numpy(np.ascontiguousarray(data.edge_index))
    model = FlyVisGNN(
        cfg.graph_model, edge_index, data.n_neurons, data.n_input, seed=cfg.training.seed, edge_mode=edge_mode
    )
    return model.to(device)


def build_probe(data: Dataset, device: torch.device) -> Probe:
    """Voltage ranges over every training frame and the gain frames for d lin_phi / d M (trainer.metrics)."""
    return Probe.from_split(data.train.voltage, data.train.stimulus, data.W, device)


class _R2Log:
    """``connectivity_r2.log`` writer: header first, each row flushed as soon as it is known."""

    def __init__(self, path: Path | None) -> None:
        self._fh: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("w", encoding="utf-8")
            self._fh.write(R2_HEADER + "\n")
            self._fh.flush()

    def write(self, row: R2Row) -> None:
        if self._fh is not None:
            self._fh.write(format_r2_row(row))
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _check_losses(chunk: torch.Tensor, first_iteration: int) -> None:
    """Raise TrainingFailed naming the first non-finite loss of ``chunk`` (one host sync per chunk)."""
    bad = ~torch.isfinite(chunk)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise TrainingFailed(f"NaN loss at iteration {first_iteration + k + 1}")


def train(
    model: FlyVisGNN,
    data: Dataset,
    cfg: TrainingConfig,
    probe: Probe,
    *,
    r2_log: Path | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Adam over the four param groups with the configured schedule; raises TrainingFailed on NaN loss."""
    torch.set_flush_denormal(True)  # L1-shrunk weights turn denormal and slow CPU math several-fold
    device = model.W.device
    niter = iterations_per_epoch(cfg, data.train.n_frames)
    total = niter * cfg.n_epochs
    checkpoints = set(r2_checkpoints(niter))
    xnorm = 1.5 * global_voltage_std(data.train.voltage)
    rng = np.random.default_rng(cfg.seed)
    train_split = data.train
    phase, lrs = phase_lrs(0, niter, cfg)
    optimizer = build_optimizer(model.param_groups(), lrs)
    losses = torch.empty(total, device=device)
    starts: list[tuple[int, Phase]] = []
    lr_log: list[tuple[int, dict[str, float]]] = [(0, dict(lrs))]
    rows: list[R2Row] = []
    checked = 0
    log = _R2Log(r2_log)
    bar = Progress(total, desc="train", bar=progress)
    t0 = time.perf_counter()
    try:
        for epoch in range(cfg.n_epochs):
            for it in range(niter):
                step = epoch * niter + it
                phase, new_lrs = phase_lrs(it, niter, cfg)
                if new_lrs != lrs:
                    apply_lrs(optimizer, new_lrs)
                    lrs = new_lrs
                    lr_log.append((step, dict(lrs)))
                if not starts or starts[-1][1] != phase:
                    starts.append((step, phase))
                loss = _step(model, optimizer, train_split, rng, cfg, epoch, xnorm)
                losses[step] = loss
                done = it + 1
                if (step + 1) % LOSS_CHECK_EVERY == 0 or done in checkpoints:
                    _check_losses(losses[checked : step + 1], checked)
                    checked = step + 1
                if done in checkpoints:
                    row = R2Row(epoch=epoch, iteration=done, connectivity_r2=probe.connectivity_r2(model), phase=phase)
                    rows.append(row)
                    log.write(row)
                    bar.update(0, conn_R2=row.connectivity_r2)
                bar.update(1)
        _check_losses(losses[checked:], checked)
    finally:
        log.close()
        bar.close()
    seconds = time.perf_counter() - t0
    spans = [(s, starts[k + 1][0] if k + 1 < len(starts) else total, p) for k, (s, p) in enumerate(starts)]
    return TrainResult(losses.cpu().numpy(), rows, spans, niter, seconds, lr_log)


def _step(
    model: FlyVisGNN,
    optimizer: torch.optim.Optimizer,
    split: Split,
    rng: np.random.Generator,
    cfg: TrainingConfig,
    epoch: int,
    xnorm: float,
) -> torch.Tensor:
    """One optimiser step on ``batch_size`` frames drawn uniformly at random; returns the detached loss."""
    device = model.W.device
    idx = np.sort(rng.integers(0, split.n_frames, size=cfg.batch_size))
    take = lambda a: torch.from_numpy(np.asarray(a[idx], dtype=np.float32)).to(device)  # noqa: E731
    v, y, stim = take(split.voltage), take(split.y), take(split.stimulus)
    loss = data_loss(model(v, stim), y)
    for term in regularisers(model, v[-1], cfg, epoch, xnorm).values():  # last frame, as the reference
        loss = loss + term
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@dataclass
class Evaluation:
    """Final metrics plus what the images need."""

    metrics: Metrics
    recovered: Recovered
    rollout_pred: np.ndarray
    rollout_true: np.ndarray


def evaluate(
    model: FlyVisGNN, data: Dataset, cfg: ExperimentConfig, probe: Probe, training_seconds: float
) -> Evaluation:
    """MODEL.md section 6 metrics: recovered W/tau/V_rest, clustering, autonomous test rollout."""
    model.eval()
    rec = probe.recover(model)
    feats = cluster_features(rec, data.edge_index)
    acc = cluster_accuracy(feats, data.types, cfg.training.cluster_n_components)
    dt = data.delta_t or cfg.simulation.delta_t
    n_roll = min(cfg.training.n_rollout_frames, data.test.n_frames)
    device = model.W.device
    stim = torch.as_tensor(np.array(data.test.stimulus[:n_roll], dtype=np.float32), device=device)
    v0 = torch.as_tensor(np.array(data.test.voltage[0], dtype=np.float32), device=device)
    pred = rollout(model, v0, stim, dt).cpu().numpy()
    true = np.asarray(data.test.voltage[:n_roll], dtype=np.float64)
    pearson, r2 = rollout_scores(pred, true)
    metrics = Metrics(
        connectivity_R2=connectivity_r2(rec.W_corrected, probe.w_true),
        tau_R2=r2_score(rec.tau, data.tau),
        V_rest_R2=r2_score(rec.V_rest, data.V_rest),
        cluster_accuracy=acc,
        test_R2=floor_test_r2(r2),
        test_pearson=pearson,
        training_time_min=training_seconds / 60.0,
        rollout_diverged=rollout_diverged(pred),
    )
    model.train()
    return Evaluation(metrics, rec, pred, true)
