"""The training loop and the final evaluation of one model on one dataset (MODEL.md sections 5-6)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from experiment.config import ExperimentConfig, TrainingConfig
from experiment.records import Metrics, Phase, R2Row
from trainer.checkpoints import R2Checkpoints, background_r2
from trainer.data import Dataset, Split, global_voltage_std
from trainer.losses import (
    Coefficient,
    active_coefficients,
    annealed_coefficients,
    data_loss,
    ever_active,
    rollout_loss,
    weighted_regularisers,
)
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
from trainer.schedule import (
    apply_lrs,
    build_optimizer,
    iterations_per_epoch,
    phase_lrs,
    r2_checkpoints,
    recurrent_active,
)

LOSS_CHECK_EVERY = 50
DEVICE_DATA_FRACTION = 0.5  # the training split is copied to the GPU when it takes at most this much free memory
COPY_CHUNK_FRAMES = 4096

COMPILE_BACKEND = "inductor"  # torch.compile's backend for training.compile (tests use a cheaper one)


class LossFn(Protocol):
    """The iteration's loss: ``(v, y, stim, epoch, noise=None) -> scalar`` (``make_loss_fn``)."""

    def __call__(
        self, v: torch.Tensor, y: torch.Tensor, stim: torch.Tensor, epoch: int, noise: torch.Tensor | None = None
    ) -> torch.Tensor: ...


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
    recovered: Recovered | None = None  # the last R2 checkpoint's recovery: the final parameters (evaluate reuses it)


def build_model(
    cfg: ExperimentConfig, data: Dataset, device: torch.device, edge_mode: EdgeMode = "sparse"
) -> FlyVisGNN:
    """The GNN for this dataset, initialised from ``training.seed``."""
    edge_index = torch.from_numpy(np.ascontiguousarray(data.edge_index))
    model = FlyVisGNN(
        cfg.graph_model, edge_index, data.n_neurons, data.n_input, seed=cfg.training.seed, edge_mode=edge_mode
    )
    return model.to(device)


def build_probe(data: Dataset, device: torch.device) -> Probe:
    """Voltage ranges over every training frame and the gain frames for d lin_phi / d M (trainer.metrics)."""
    return Probe.from_split(data.train.voltage, data.train.stimulus, data.W, device)


class FrameSampler:
    """The frames of every iteration, drawn before the loop with the calls the loop used to make (one sorted
    ``rng.integers`` per iteration from ``default_rng(seed)``), so the batches are unchanged.

    CPU: each batch is read from the memory-mapped split. CUDA: the split and the indices are copied to the
    device once when they fit in DEVICE_DATA_FRACTION of its free memory; the loop then makes no host
    transfer and no host sync (otherwise batches are read and copied per iteration, as on the CPU).
    ``preload`` forces either way (None: that rule).

    Recurrent training (``rollout`` = time_step T >= 1): from global step ``rollout_from`` on, a frame k is drawn
    uniformly in ``[0, n_frames - T)`` and rounded down to a multiple of T (the reference's rule), and ``batch``
    returns what ``rollout_loss`` needs: the voltages of frames k, those of frames k + T (the target) and the
    stimuli of frames k .. k + T - 1 as (T, B, n_input). The steps before ``rollout_from`` draw as without it.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        total: int,
        seed: int,
        device: torch.device,
        preload: bool | None = None,
        *,
        rollout: int = 0,
        rollout_from: int = 0,
    ) -> None:
        if rollout and split.n_frames <= rollout:
            raise ValueError(
                f"a {rollout}-step rollout needs more than {rollout} training frames, got {split.n_frames}"
            )
        rng = np.random.default_rng(seed)
        self.rollout, self.rollout_from = rollout, (rollout_from if rollout else total)
        draws = [_draw(rng, split.n_frames, batch_size, rollout if s >= self.rollout_from else 0) for s in range(total)]
        self.idx = np.stack(draws) if draws else np.zeros((0, batch_size), dtype=np.int64)
        self.split, self.device = split, device
        self.on_device: tuple[torch.Tensor, ...] | None = None
        self._idx_dev: torch.Tensor | None = None
        arrays = (split.voltage, split.y, split.stimulus)
        if preload is None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            preload = sum(int(np.asarray(a[:1]).nbytes) * a.shape[0] for a in arrays) <= DEVICE_DATA_FRACTION * free
        if preload:
            self.on_device = tuple(_to_device(a, device) for a in arrays)
            self._idx_dev = torch.from_numpy(self.idx).to(device)
            self._offsets = torch.arange(max(rollout, 1), device=device).unsqueeze(1)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(voltage, y, stimulus) of iteration ``step``: (B, N), (B, N), (B, n_input) float32 on the device.

        A recurrent step (``rollout`` T, step >= ``rollout_from``): (voltage of k, voltage of k + T, stimuli of
        k .. k + T - 1), shapes (B, N), (B, N), (T, B, n_input).
        """
        t = self.rollout if step >= self.rollout_from else 0
        if self.on_device is not None and self._idx_dev is not None:
            i = self._idx_dev[step]
            volt, y, stim = self.on_device
            if not t:
                return volt.index_select(0, i), y.index_select(0, i), stim.index_select(0, i)
            frames = (self._offsets + i).reshape(-1)  # (T * B,): frame k + s of draw b at s * B + b
            return (
                volt.index_select(0, i),
                volt.index_select(0, i + t),
                stim.index_select(0, frames).view(t, i.numel(), -1),
            )
        idx = self.idx[step]
        take = lambda a, j: torch.from_numpy(np.asarray(a[j], dtype=np.float32)).to(self.device)  # noqa: E731
        if not t:
            return take(self.split.voltage, idx), take(self.split.y, idx), take(self.split.stimulus, idx)
        frames = np.arange(t)[:, None] + idx[None, :]  # (T, B)
        return take(self.split.voltage, idx), take(self.split.voltage, idx + t), take(self.split.stimulus, frames)


def _draw(rng: np.random.Generator, n_frames: int, batch_size: int, rollout: int) -> np.ndarray:
    """One iteration's sorted frame indices: uniform in [0, n_frames), or for a ``rollout`` of T steps uniform in
    [0, n_frames - T) rounded down to a multiple of T."""
    if not rollout:
        return np.sort(rng.integers(0, n_frames, size=batch_size))
    k = rng.integers(0, n_frames - rollout, size=batch_size)
    return np.sort(k - k % rollout)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A (T, ...) memmap as a float32 device tensor, copied in chunks (no full host copy)."""
    out = torch.empty(array.shape, dtype=torch.float32, device=device)
    for s in range(0, array.shape[0], COPY_CHUNK_FRAMES):
        chunk = np.array(array[s : s + COPY_CHUNK_FRAMES], dtype=np.float32)  # a writable copy, not a memmap view
        out[s : s + chunk.shape[0]].copy_(torch.from_numpy(chunk))
    return out


def make_loss_fn(
    model: FlyVisGNN, cfg: TrainingConfig, xnorm: float, *, backend: str | None = None, delta_t: float | None = None
) -> LossFn:
    """The iteration's loss ``(v, y, stim, epoch, noise=None) -> scalar``: data term plus the regularisers on the
    batch's last frame (the reference's rule), annealed for ``epoch``.

    In an epoch with recurrent training (``recurrent_active``) the data term is ``rollout_loss`` over
    ``cfg.time_step`` Euler steps of ``delta_t`` (required then): ``y`` is the target voltage of frame k + T,
    ``stim`` the (T, B, n_input) stimuli and ``noise`` the scaled (T, B, N) per-step noise or None
    (``FrameSampler`` with ``rollout``); the regularisers use frame k's voltages.

    Compiled with ``torch.compile`` (``backend``, default COMPILE_BACKEND) when ``cfg.compile`` is not ``off``;
    the model then runs on plain modules and gather/index_add, which the compiler fuses itself (this sets
    ``model.plain_ops``; ``loss_fn_for`` restores it). The compiled function gets the annealed coefficients as
    0-d tensors on the model's device, never the epoch: a Python number is guarded on, so every epoch would
    compile anew (and after torch's recompile limit the step would silently run eagerly).
    """

    if cfg.recurrent_training and delta_t is None:
        raise ValueError("recurrent_training needs delta_t (the dataset's Euler step)")
    dt = float(delta_t or 0.0)

    def regularised(loss: torch.Tensor, v: torch.Tensor, coeff: Mapping[str, Coefficient]) -> torch.Tensor:
        """The data term plus the regularisers on the batch's last frame."""
        for term in weighted_regularisers(model, v[-1], coeff, xnorm).values():
            loss = loss + term
        return loss

    def loss_of(v: torch.Tensor, y: torch.Tensor, stim: torch.Tensor, coeff: Mapping[str, Coefficient]) -> torch.Tensor:
        return regularised(data_loss(model(v, stim), y), v, coeff)

    def recurrent_of(
        v: torch.Tensor,
        target: torch.Tensor,
        stim: torch.Tensor,
        noise: torch.Tensor | None,
        coeff: Mapping[str, Coefficient],
    ) -> torch.Tensor:
        return regularised(rollout_loss(model, v, target, stim, dt, noise), v, coeff)

    per_epoch: dict[int, Mapping[str, Coefficient]] = {}  # the coefficients of the current epoch, made once
    graph_terms = ever_active(cfg) if cfg.compile != "off" else ()  # a term never active stays out of the graph

    def coefficients(epoch: int) -> Mapping[str, Coefficient]:
        if epoch not in per_epoch:
            per_epoch.clear()
            if cfg.compile == "off":
                per_epoch[epoch] = active_coefficients(cfg, epoch)
            else:
                values = annealed_coefficients(cfg, epoch)
                device, dtype = model.W.device, model.W.dtype
                per_epoch[epoch] = {k: torch.tensor(values[k], dtype=dtype, device=device) for k in graph_terms}
        return per_epoch[epoch]

    if cfg.compile == "off":

        def loss_fn(
            v: torch.Tensor, y: torch.Tensor, stim: torch.Tensor, epoch: int, noise: torch.Tensor | None = None
        ) -> torch.Tensor:
            if recurrent_active(cfg, epoch):
                return recurrent_of(v, y, stim, noise, coefficients(epoch))
            return loss_of(v, y, stim, coefficients(epoch))

        return loss_fn

    backend = backend or COMPILE_BACKEND
    mode = {"mode": cfg.compile} if backend == "inductor" else {}
    model.plain_ops = True
    compiled = torch.compile(loss_of, backend=backend, dynamic=False, **mode)
    compiled_recurrent = torch.compile(recurrent_of, backend=backend, dynamic=False, **mode)  # the k steps unrolled
    graphed = cfg.compile == "reduce-overhead"

    def compiled_loss_fn(
        v: torch.Tensor, y: torch.Tensor, stim: torch.Tensor, epoch: int, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        if graphed:
            torch.compiler.cudagraph_mark_step_begin()  # each call is a new training step (outputs may be reused)
        if recurrent_active(cfg, epoch):
            return compiled_recurrent(v, y, stim, noise, coefficients(epoch))
        return compiled(v, y, stim, coefficients(epoch))

    return compiled_loss_fn


@contextmanager
def loss_fn_for(
    model: FlyVisGNN, cfg: TrainingConfig, xnorm: float, *, backend: str | None = None, delta_t: float | None = None
) -> Iterator[LossFn]:
    """``make_loss_fn`` for the length of a ``with`` block; the model's ``plain_ops`` mode is restored after it
    (also on an error), so what runs the model next (evaluation, a later eager run) gets its usual ops."""
    previous = model.plain_ops
    try:
        yield make_loss_fn(model, cfg, xnorm, backend=backend, delta_t=delta_t)
    finally:
        model.plain_ops = previous


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc): an iteration frees and re-allocates dozens of MB-sized
    activations, which glibc otherwise returns to the OS and page-faults back in (extent 8 on the CPU:
    11,000-17,000 page faults and 19-27 ms of system time per iteration; about 200 and 0 ms with this).
    Process-wide, Linux/glibc only; False where it does not apply."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not hasattr(ctypes, "CDLL"):
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        return False


def fuse_adam(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Switch Adam to its fused kernel (one per group instead of a foreach chain) where torch has it for the
    parameters' device; set before the first step, when the state (and its step counters) does not exist yet."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    device = params[0].device.type if params else "cpu"
    fusable = device in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in params)
    if isinstance(optimizer, torch.optim.Adam) and fusable and not optimizer.state:
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = True, False
    return optimizer


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
    extra_checkpoints: Iterable[int] = (),
    on_recovered: Callable[[R2Row, Recovered], None] | None = None,
) -> TrainResult:
    """Adam over the four param groups with the configured schedule; raises TrainingFailed on NaN loss.

    R2 checkpoints run in the loop or, with ``training.r2_async`` (trainer.checkpoints), on a background thread
    that the loop waits for only at the end; the rows and the R2 log are the same either way.
    ``extra_checkpoints`` adds iterations (of the epoch) to the R2 checkpoints; ``on_recovered`` sees every
    checkpoint's row with its recovered parameters (measurements of tau and V_rest along a run).
    """
    torch.set_flush_denormal(True)  # L1-shrunk weights turn denormal and slow CPU math several-fold
    tune_allocator()
    device = model.W.device
    niter = iterations_per_epoch(cfg, data.train.n_frames)
    total = niter * cfg.n_epochs
    checkpoints = set(r2_checkpoints(niter, cfg)) | {c for c in extra_checkpoints if 1 <= c <= niter}
    xnorm = 1.5 * global_voltage_std(data.train.voltage)
    rollout = rollout_plan(cfg, data, niter, device)
    sampler = FrameSampler(
        data.train, cfg.batch_size, total, cfg.seed, device, rollout=rollout.time_step, rollout_from=rollout.from_step
    )
    phase, lrs = phase_lrs(0, niter, cfg)
    optimizer = fuse_adam(build_optimizer(model.param_groups(), lrs))
    losses = torch.empty(total, device=device)
    starts: list[tuple[int, Phase]] = []
    lr_log: list[tuple[int, dict[str, float]]] = [(0, dict(lrs))]
    checked = 0
    bar = Progress(total, desc="train", bar=progress)
    on_row = lambda row: bar.update(0, conn_R2=row.connectivity_r2)  # noqa: E731
    clip_W = (model.W, cfg.grad_clip_W) if cfg.grad_clip_W > 0 else None
    # set up before loss_fn_for: the checkpoints score with the model's usual ops (evaluate's), not the compiled loss's
    r2 = R2Checkpoints(
        model, probe, r2_log, background=background_r2(cfg.r2_async, device), on_row=on_row, on_recovered=on_recovered
    )
    t0 = time.perf_counter()
    try:
        with loss_fn_for(model, cfg, xnorm, delta_t=rollout.delta_t) as loss_fn:
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
                    noise = rollout.noise(model, step)
                    loss = _step(loss_fn, optimizer, sampler.batch(step), epoch, noise=noise, clip_W=clip_W)
                    losses[step] = loss
                    done = it + 1
                    if (step + 1) % LOSS_CHECK_EVERY == 0 or done in checkpoints:
                        _check_losses(losses[checked : step + 1], checked)
                        checked = step + 1
                    if done in checkpoints:
                        r2.submit(epoch, done, phase, final=step + 1 == total)
                    r2.poll()
                    bar.update(1)
            _check_losses(losses[checked:], checked)
            rows, recovered = r2.finish()
    finally:
        r2.close()
        bar.close()
    seconds = time.perf_counter() - t0
    spans = [(s, starts[k + 1][0] if k + 1 < len(starts) else total, p) for k, (s, p) in enumerate(starts)]
    return TrainResult(losses.cpu().numpy(), rows, spans, niter, seconds, lr_log, recovered)


def _step(
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    epoch: int,
    *,
    noise: torch.Tensor | None = None,
    clip_W: tuple[torch.Tensor, float] | None = None,
) -> torch.Tensor:
    """One optimiser step on a batch of frames (FrameSampler); returns the detached loss (no host sync).

    ``clip_W`` (W, max_norm): W's gradient is scaled to L2 norm at most max_norm before the step (grad_clip_W;
    ``clip_grad_norm_`` on W alone, as the reference; the other groups are untouched).
    """
    v, y, stim = batch
    loss = loss_fn(v, y, stim, epoch, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_W is not None and clip_W[0].grad is not None:
        torch.nn.utils.clip_grad_norm_([clip_W[0]], max_norm=clip_W[1])
    optimizer.step()
    return loss.detach()


@dataclass
class RolloutPlan:
    """Recurrent training as the loop sees it: the sampler's rollout and first recurrent step, the Euler step, and
    the per-step noise (drawn from its own generator seeded with training.seed, so runs are reproducible)."""

    time_step: int = 0  # 0: no recurrent training in this run
    from_step: int = 0
    delta_t: float | None = None
    level: float = 0.0
    batch_size: int = 1
    generator: torch.Generator | None = None

    def noise(self, model: FlyVisGNN, step: int) -> torch.Tensor | None:
        """The scaled (T, B, N) noise of a recurrent ``step``, or None (no noise, or not a recurrent step)."""
        if not self.time_step or step < self.from_step or self.level <= 0 or self.generator is None:
            return None
        shape = (self.time_step, self.batch_size, model.n_neurons)
        return torch.randn(shape, generator=self.generator, device=model.W.device).mul_(self.level)


def rollout_plan(cfg: TrainingConfig, data: Dataset, niter: int, device: torch.device) -> RolloutPlan:
    """The run's ``RolloutPlan``; TrainingFailed when the dataset cannot support it (no delta_t, too few frames)."""
    if not cfg.recurrent_training:
        return RolloutPlan()
    if data.delta_t is None:
        raise TrainingFailed("recurrent_training needs the dataset's delta_t (meta.json has none)")
    if data.train.n_frames <= cfg.time_step:
        raise TrainingFailed(f"time_step {cfg.time_step} needs more than {cfg.time_step} training frames")
    generator = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.noise_recurrent_level > 0 else None
    return RolloutPlan(
        cfg.time_step,
        cfg.recurrent_training_start_epoch * niter,
        data.delta_t,
        cfg.noise_recurrent_level,
        cfg.batch_size,
        generator,
    )


@dataclass
class Evaluation:
    """Final metrics plus what the images need."""

    metrics: Metrics
    recovered: Recovered
    rollout_pred: np.ndarray
    rollout_true: np.ndarray


def evaluate(
    model: FlyVisGNN,
    data: Dataset,
    cfg: ExperimentConfig,
    probe: Probe,
    training_seconds: float,
    recovered: Recovered | None = None,
) -> Evaluation:
    """MODEL.md section 6 metrics: recovered W/tau/V_rest, clustering, autonomous test rollout.

    ``recovered``: ``probe.recover(model)`` when already known (``TrainResult.recovered``: the last R2
    checkpoint scored the final parameters), else it is computed here.
    """
    model.eval()
    rec = recovered if recovered is not None else probe.recover(model)
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
