"""The V_rest exploration's training-scheme keys: recurrent_training with time_step and noise_recurrent_level,
recurrent_training_start_epoch, learning_rate_update_start, grad_clip_W (docs/PARITY.md, "Recurrent training")."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from experiment.config import ConfigError, ExperimentConfig, parse_experiment
from experiment.records import read_r2_log
from trainer import train as train_module
from trainer.data import Dataset
from trainer.losses import data_loss, rollout_loss
from trainer.model import FlyVisGNN
from trainer.schedule import base_lrs, build_optimizer, phase_lrs, recurrent_active
from trainer.train import FrameSampler, _step, build_model, build_probe, make_loss_fn, train

CPU = torch.device("cpu")


class Leak(nn.Module):
    """``dv/dt = -a * v + I``: a linear system whose rollout is computed by hand below."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0))

    def forward(self, v: Tensor, stim: Tensor) -> Tensor:
        return -self.a * v + stim


def test_two_step_loss_of_a_linear_system_is_the_hand_computed_value_and_gradient() -> None:
    # dt 0.1, a = 1: v1 = 0.9 v0 + 0.1 I0, v2 = 0.9 v1 + 0.1 I1; loss = ||(v2 - target) / (0.1 * 2)||
    # v0 = (1, 2), I0 = 0.5, I1 = 1: v1 = (0.95, 1.85), v2 = (0.955, 1.765); target (1, 2): r = (-0.225, -1.175)
    model = Leak()
    v0, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])
    stim = torch.tensor([[[0.5, 0.5]], [[1.0, 1.0]]])  # (T=2, B=1, N=2): frame k's stimulus, then frame k+1's
    loss = rollout_loss(model, v0, target, stim, 0.1)
    assert float(loss.detach()) == pytest.approx(math.hypot(0.225, 1.175), rel=1e-6)
    loss.backward()
    # the gradient flows through both steps: dv2/da = (1 - dt a) dv1/da - dt v1 = -0.1 (0.9 v0 + v1)
    dv2 = np.array([-0.1 * (0.9 * 1 + 0.95), -0.1 * (0.9 * 2 + 1.85)])
    r = np.array([-0.225, -1.175])
    expected = float((r * dv2 / 0.2).sum() / np.hypot(*r))
    assert float(model.a.grad) == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(1.96640, rel=1e-4)


def test_the_noise_enters_every_step_of_the_rollout() -> None:
    model = Leak()
    v0, target = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    stim = torch.zeros(2, 1, 1)
    noise = torch.tensor([[[0.1]], [[-0.3]]])
    # v1 = 0.9 + 0.1 = 1.0, v2 = 0.9 * 1.0 - 0.3 = 0.6; loss = 0.6 / 0.2
    assert float(rollout_loss(model, v0, target, stim, 0.1, noise).detach()) == pytest.approx(3.0, rel=1e-6)


def test_one_step_rollout_of_the_true_model_leaves_the_process_noise(synth: Dataset, oracle: FlyVisGNN) -> None:
    """With T = 1 the target is the observed next state: the loss of the true ODE is ||noise_k|| / dt, not 0."""
    sampler = FrameSampler(synth.train, 3, 1, seed=5, device=CPU, rollout=1)
    v, target, stim = sampler.batch(0)
    k = sampler.idx[0]
    dt = float(synth.delta_t)
    volt = np.asarray(synth.train.voltage, dtype=np.float64)
    expected = np.linalg.norm((volt[k] + dt * np.asarray(synth.train.y)[k] - volt[k + 1]) / dt)
    assert expected > 1.0  # the process noise (0.05 / 0.02 per neuron) dominates
    with torch.no_grad():
        got = float(rollout_loss(oracle, v, target, stim, dt))
    assert got == pytest.approx(expected, rel=1e-3)


def test_sampler_rollout_frames_stay_inside_the_split_and_align_to_time_step(synth: Dataset) -> None:
    n = synth.train.n_frames
    plain = FrameSampler(synth.train, 2, 40, seed=3, device=CPU)
    mapped = FrameSampler(synth.train, 2, 40, seed=3, device=CPU, preload=False, rollout=3, rollout_from=10)
    loaded = FrameSampler(synth.train, 2, 40, seed=3, device=CPU, preload=True, rollout=3, rollout_from=10)
    np.testing.assert_array_equal(mapped.idx[:10], plain.idx[:10])  # before the start: the usual draws
    rec = mapped.idx[10:]
    assert (rec % 3 == 0).all() and rec.min() >= 0 and rec.max() < n - 3
    for step in (0, 10, 25, 39):
        for a, b in zip(mapped.batch(step), loaded.batch(step), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    v, target, stim = mapped.batch(25)
    k = mapped.idx[25]
    np.testing.assert_array_equal(v.numpy(), synth.train.voltage[k])
    np.testing.assert_array_equal(target.numpy(), synth.train.voltage[k + 3])
    assert stim.shape == (3, 2, synth.n_input)
    for s in range(3):
        np.testing.assert_array_equal(stim[s].numpy(), synth.train.stimulus[k + s])
    assert [t.shape for t in mapped.batch(0)] == [(2, synth.n_neurons), (2, synth.n_neurons), (2, synth.n_input)]
    with pytest.raises(ValueError, match="training frames"):
        FrameSampler(synth.train, 2, 1, seed=3, device=CPU, rollout=n)


def test_grad_clip_W_bounds_the_norm_of_W_gradient_and_leaves_the_others(
    synth: Dataset, small_cfg: ExperimentConfig
) -> None:
    t = small_cfg.training
    small_cfg.graph_model.w_init_mode = "randn_scaled"
    batch = FrameSampler(synth.train, t.batch_size, 1, t.seed, CPU).batch(0)

    def applied(clip: float | None) -> tuple[Tensor, list[Tensor]]:
        """W's gradient and lin_phi's after one step (what Adam applied), from the same initial model."""
        model = build_model(small_cfg, synth, CPU)
        optimizer = build_optimizer(model.param_groups(), base_lrs(t))
        _step(make_loss_fn(model, t, 0.7), optimizer, batch, 0, clip_W=None if clip is None else (model.W, clip))
        return model.W.grad.clone(), [p.grad.clone() for p in model.lin_phi.parameters()]

    raw, raw_phi = applied(None)
    bound = 0.1 * float(raw.norm())
    clipped, clipped_phi = applied(bound)
    assert float(clipped.norm()) <= bound * (1 + 1e-6)
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6): just under the bound; the direction is kept
    norm = float(raw.norm())
    assert float(clipped.norm()) == pytest.approx(bound * norm / (norm + 1e-6), rel=1e-4)
    torch.testing.assert_close(clipped / clipped.norm(), raw / raw.norm())
    for a, b in zip(raw_phi, clipped_phi, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    same, _ = applied(10 * float(raw.norm()))  # a bound above the norm changes nothing
    torch.testing.assert_close(same, raw, rtol=0, atol=0)


def test_recurrent_starts_at_its_epoch(
    synth: Dataset, small_cfg: ExperimentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = small_cfg.training
    t.n_epochs, t.n_iterations = 3, 4
    t.recurrent_training, t.time_step, t.recurrent_training_start_epoch = True, 2, 1
    assert [recurrent_active(t, e) for e in range(3)] == [False, True, True]
    calls: list[str] = []

    def one_step(y_hat: Tensor, y: Tensor) -> Tensor:
        calls.append("one-step")
        return data_loss(y_hat, y)

    def rollout(*args: object, **kwargs: object) -> Tensor:
        calls.append("rollout")
        return rollout_loss(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "data_loss", one_step)
    monkeypatch.setattr(train_module, "rollout_loss", rollout)
    model = build_model(small_cfg, synth, CPU)
    result = train(model, synth, t, build_probe(synth, CPU), progress=False)
    assert calls == ["one-step"] * 4 + ["rollout"] * 8
    assert np.isfinite(result.losses).all()


def test_recurrent_training_runs_with_noise_clip_and_r2_checkpoints(
    synth: Dataset, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    t = small_cfg.training
    t.n_iterations = 50
    t.recurrent_training, t.time_step, t.noise_recurrent_level, t.grad_clip_W = True, 3, 0.01, 0.5
    runs = []
    for _ in range(2):
        model = build_model(small_cfg, synth, CPU)
        result = train(model, synth, t, build_probe(synth, CPU), r2_log=tmp_path / "r2.log", progress=False)
        runs.append(result.losses)
    np.testing.assert_array_equal(runs[0], runs[1])  # the per-step noise is seeded by training.seed
    assert np.isfinite(runs[0]).all()
    rows = read_r2_log(tmp_path / "r2.log")
    assert [r.iteration for r in rows] == [1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert all(np.isfinite(r.connectivity_r2) for r in rows)


def test_learning_rate_update_start_sets_lin_phi_and_zero_falls_back(
    synth: Dataset, small_cfg: ExperimentConfig
) -> None:
    t = small_cfg.training
    t.n_iterations = 2
    assert base_lrs(t)["lin_phi"] == t.learning_rate_start == 1.2e-3
    t.learning_rate_update_start = 2e-3
    lrs = base_lrs(t)
    assert (lrs["lin_phi"], lrs["lin_edge"]) == (2e-3, 1.2e-3)
    model = build_model(small_cfg, synth, CPU)
    result = train(model, synth, t, build_probe(synth, CPU), progress=False)
    assert result.lr_log[0][1]["lin_phi"] == 2e-3
    optimizer = build_optimizer(model.param_groups(), lrs)
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["lin_phi"] == 2e-3
    # cyclic: lin_phi's active (V_rest-phase) LR is its own; the W-phase keeps alternate_lr_update
    t.alternate_training, t.n_alternations = True, 1
    assert phase_lrs(0, 10, t)[1]["lin_phi"] == t.alternate_lr_update
    assert phase_lrs(9, 10, t)[1]["lin_phi"] == 2e-3


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"time_step": 0}, "time_step"),
        ({"noise_recurrent_level": -0.1}, "noise_recurrent_level"),
        ({"grad_clip_W": -1}, "grad_clip_W"),
        ({"learning_rate_update_start": -1e-3}, "learning_rate_update_start"),
        ({"recurrent_training_start_epoch": -1}, "recurrent_training_start_epoch"),
        ({"recurrent_training": True, "recurrent_training_start_epoch": 1}, "would never run"),
        ({"recurrent_loop": 1}, "recurrent_loop"),
    ],
)
def test_config_rejects_bad_recurrent_keys(training: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_experiment({"dataset": "d", "training": training}, "c.yaml")


def test_config_accepts_the_keys_and_defaults_are_off() -> None:
    t = parse_experiment({"dataset": "d"}).training
    assert (t.recurrent_training, t.time_step, t.noise_recurrent_level) == (False, 1, 0.0)
    assert (t.recurrent_training_start_epoch, t.learning_rate_update_start, t.grad_clip_W) == (0, 0.0, 0.0)
    keys = {
        "recurrent_training": True,
        "time_step": 3,
        "noise_recurrent_level": 0.05,
        "recurrent_training_start_epoch": 1,
        "n_epochs": 2,
        "learning_rate_update_start": 2e-3,
        "grad_clip_W": 0.5,
        "compile": "default",
    }
    t = parse_experiment({"dataset": "d", "training": keys}).training
    assert t.model_dump(include=set(keys)) == keys


def test_compiled_recurrent_loss_gives_the_eager_loss(synth: Dataset, small_cfg: ExperimentConfig) -> None:
    t = small_cfg.training
    t.recurrent_training, t.time_step = True, 2
    model = build_model(small_cfg, synth, CPU)
    v, target, stim = FrameSampler(synth.train, t.batch_size, 1, t.seed, CPU, rollout=2).batch(0)
    noise = 0.01 * torch.randn(2, t.batch_size, synth.n_neurons, generator=torch.Generator().manual_seed(0))
    dt = float(synth.delta_t)
    eager = make_loss_fn(model, t, 0.7, delta_t=dt)(v, target, stim, 0, noise)
    torch._dynamo.reset()
    try:
        compiled_fn = make_loss_fn(
            model, t.model_copy(update={"compile": "default"}), 0.7, backend="aot_eager", delta_t=dt
        )
        got = compiled_fn(v, target, stim, 0, noise)
    finally:
        model.plain_ops = False
        torch._dynamo.reset()
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="delta_t"):
        make_loss_fn(model, t, 0.7)
