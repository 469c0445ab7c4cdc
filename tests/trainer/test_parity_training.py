"""Training parity with the reference (docs/PARITY.md): each row's term computed by hand on a tiny example."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.config_policy import load_slot_template
from experiment.config import ExperimentConfig, GraphModelConfig, TrainingConfig, load_experiment
from experiment.records import read_r2_log
from trainer.data import Dataset
from trainer.losses import REGULARISER_KEYS, anneal_factors, exp_anneal, power_anneal, regularisers
from trainer.model import FlyVisGNN, make_mlp
from trainer.schedule import apply_lrs, build_optimizer, iterations_per_epoch, phase_lrs
from trainer.train import build_model, build_probe, train

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "configs" / "flyvis_62_1_gs_alternate.yaml"
CPU = torch.device("cpu")
OFF = dict.fromkeys(REGULARISER_KEYS, 0.0)


def _model(n_layers: int = 2) -> FlyVisGNN:
    """Two neurons, two edges, small MLPs, W drawn so that every W term is non-zero."""
    cfg = GraphModelConfig(hidden_dim=3, n_layers=n_layers, hidden_dim_update=3, w_init_mode="randn_scaled")
    return FlyVisGNN(cfg, torch.tensor([[0, 1], [1, 0]]), n_neurons=2, n_input=1, seed=3)


def _linear_edge_model() -> FlyVisGNN:
    """lin_edge = one Linear: g(v, a) = 2 v - a_0 + 0.5 a_1 + 1.5, squared by lin_edge_positive."""
    model = _model(n_layers=1)
    with torch.no_grad():
        model.lin_edge[0].weight.copy_(torch.tensor([[2.0, -1.0, 0.5]]))
        model.lin_edge[0].bias.fill_(1.5)
        model.a.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0]]))
    return model


def _cfg(**coeffs: float) -> TrainingConfig:
    return TrainingConfig(**{**OFF, **coeffs})


# -- regulariser values --------------------------------------------------------------------


def test_mlp_l1_is_the_sum_of_abs_over_weights_and_biases() -> None:
    model = _model()
    by_hand = sum(p.abs().sum().item() for p in model.lin_edge.parameters())
    bias_part = sum(m.bias.abs().sum().item() for m in model.lin_edge if isinstance(m, torch.nn.Linear))
    assert bias_part > 0  # the first layer's PyTorch-default bias is non-zero, so leaving biases out would show
    got = regularisers(model, torch.rand(2), _cfg(coeff_edge_weight_L1=0.29), 0, 0.5)["coeff_edge_weight_L1"]
    assert got.item() == pytest.approx(0.29 * (1 - math.exp(-1)) * by_hand, rel=1e-6)


def test_mlp_l2_is_the_sum_of_per_tensor_euclidean_norms_not_squares() -> None:
    model = _model()
    by_hand = sum(math.sqrt((p.detach().double() ** 2).sum().item()) for p in model.lin_phi.parameters())
    got = regularisers(model, torch.rand(2), _cfg(coeff_phi_weight_L2=0.001), 0, 0.5)["coeff_phi_weight_L2"]
    assert got.item() == pytest.approx(0.001 * by_hand, rel=1e-6)


def test_w_l2_is_the_euclidean_norm_of_w() -> None:
    model = _model()
    w = model.W.detach().double()
    got = regularisers(model, torch.rand(2), _cfg(coeff_W_L2=2.5e-6), 0, 0.5)["coeff_W_L2"]
    assert got.item() == pytest.approx(2.5e-6 * math.sqrt((w**2).sum().item()), rel=1e-6)


def test_w_l1_is_the_abs_sum_of_w_times_its_anneal_factor() -> None:
    model = _model()
    got = regularisers(model, torch.rand(2), _cfg(coeff_W_L1=3.3e-5, coeff_W_L1_rate=0.5), 2, 0.5)["coeff_W_L1"]
    assert got.item() == pytest.approx(3.3e-5 * (1 - math.exp(-1.0)) * model.W.abs().sum().item(), rel=1e-6)


def test_edge_diff_is_the_norm_of_the_decrease_of_squared_lin_edge_at_1_05_v() -> None:
    model = _linear_edge_model()
    v = torch.tensor([-0.5, 0.4])  # neuron 0: g^2 falls from 0.25 to 0.2025
    a = model.a.detach()

    def g2(x: torch.Tensor) -> torch.Tensor:
        return (2 * x - a[:, 0] + 0.5 * a[:, 1] + 1.5) ** 2

    by_hand = torch.linalg.vector_norm(torch.relu(g2(v) - g2(1.05 * v))).item()
    assert by_hand > 0
    got = regularisers(model, v, _cfg(coeff_edge_diff=750.0), 0, 0.5)["coeff_edge_diff"]
    assert got.item() == pytest.approx(750.0 * by_hand, rel=1e-6)


def test_edge_norm_anchors_squared_lin_edge_at_2_xnorm_to_2_xnorm() -> None:
    model = _linear_edge_model()
    xnorm = 0.3
    a = model.a.detach()
    g2 = (2 * (2 * xnorm) - a[:, 0] + 0.5 * a[:, 1] + 1.5) ** 2
    by_hand = torch.linalg.vector_norm(g2 - 2 * xnorm).item()
    got = regularisers(model, torch.rand(2), _cfg(coeff_edge_norm=0.9), 0, xnorm)["coeff_edge_norm"]
    assert got.item() == pytest.approx(0.9 * by_hand, rel=1e-6)


def test_edge_diff_and_edge_norm_move_lin_edge_but_never_the_embedding() -> None:
    model = _linear_edge_model()
    v = torch.tensor([-2.0, 0.4], requires_grad=True)
    terms = regularisers(model, v, _cfg(coeff_edge_diff=750.0, coeff_edge_norm=0.9), 0, 0.3)
    sum(terms.values()).backward()
    assert model.a.grad is None and v.grad is None
    assert model.lin_edge[0].weight.grad is not None and model.lin_edge[0].weight.grad.abs().sum() > 0


def test_the_trainer_evaluates_the_regularisers_on_the_last_frame_of_the_batch(
    synth: Dataset, small_cfg: ExperimentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.train as train_mod

    seen: list[torch.Tensor] = []
    real = train_mod.weighted_regularisers

    def spy(model: FlyVisGNN, v: torch.Tensor, coeff: dict, xnorm: float) -> dict:
        seen.append(v.detach().clone())
        return real(model, v, coeff, xnorm)

    monkeypatch.setattr(train_mod, "weighted_regularisers", spy)
    small_cfg.training.n_iterations, small_cfg.training.batch_size = 1, 3
    model, probe = build_model(small_cfg, synth, CPU), build_probe(synth, CPU)
    train(model, synth, small_cfg.training, probe, progress=False)
    idx = np.sort(np.random.default_rng(small_cfg.training.seed).integers(0, synth.train.n_frames, size=3))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], torch.from_numpy(np.array(synth.train.voltage[idx[-1]], np.float32)))


# -- annealing -----------------------------------------------------------------------------


def test_edge_weight_l1_anneal_is_0632_in_epoch_0_and_follows_rate_to_the_epoch() -> None:
    assert power_anneal(0.5, 0) == pytest.approx(0.6321205588)
    assert power_anneal(0.5, 1) == pytest.approx(1 - math.exp(-0.5))
    assert power_anneal(0.5, 2) == pytest.approx(1 - math.exp(-0.25))


def test_w_and_phi_l1_anneal_is_zero_in_epoch_0_and_one_minus_exp_after() -> None:
    assert exp_anneal(0.4, 0) == 0.0
    assert exp_anneal(0.4, 1) == pytest.approx(1 - math.exp(-0.4))
    assert exp_anneal(0.5, 3) == pytest.approx(1 - math.exp(-1.5))


def test_w_and_phi_l1_are_inactive_in_the_single_epoch_of_the_published_config() -> None:
    t = load_experiment(PUBLISHED).training
    terms = regularisers(_model(), torch.rand(2), t, 0, 0.5)
    assert "coeff_W_L1" not in terms and "coeff_phi_weight_L1" not in terms
    assert {"coeff_edge_weight_L1", "coeff_W_L2", "coeff_phi_weight_L2", "coeff_edge_diff"} <= set(terms)


def test_l2_edge_diff_and_edge_norm_are_not_annealed() -> None:
    f = anneal_factors(TrainingConfig(), 0)
    assert [f[k] for k in ("coeff_edge_diff", "coeff_edge_norm", "coeff_edge_weight_L2")] == [1.0, 1.0, 1.0]
    assert [f[k] for k in ("coeff_phi_weight_L2", "coeff_W_L2")] == [1.0, 1.0]


# -- initialisation ------------------------------------------------------------------------


def test_first_mlp_layer_keeps_the_pytorch_default_init() -> None:
    torch.manual_seed(0)
    first = make_mlp(400, 300, 1, 3)[0]
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b
    assert first.weight.abs().max().item() <= bound and first.bias.abs().max().item() <= bound
    assert first.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert first.bias.abs().sum().item() > 0


def test_hidden_and_output_layers_are_normal_std_0_1_with_zero_bias() -> None:
    torch.manual_seed(0)
    mlp = make_mlp(3, 400, 1, 3)
    hidden, output = mlp[2], mlp[4]
    assert hidden.weight.std().item() == pytest.approx(0.1, rel=0.02)
    assert hidden.weight.mean().item() == pytest.approx(0.0, abs=0.002)
    assert output.weight.std().item() == pytest.approx(0.1, rel=0.15)  # 400 samples
    assert hidden.bias.abs().sum().item() == 0.0 and output.bias.abs().sum().item() == 0.0


def test_published_config_initialises_embedding_to_ones_and_w_to_zeros() -> None:
    cfg = load_experiment(PUBLISHED).graph_model
    model = FlyVisGNN(cfg, torch.tensor([[0, 1, 2], [1, 2, 0]]), n_neurons=3, n_input=1, seed=0)
    assert torch.equal(model.a, torch.ones(3, 2)) and torch.equal(model.W, torch.zeros(3))


# -- iterations, schedule ------------------------------------------------------------------


def test_iterations_per_epoch_follow_the_reference_formula() -> None:
    assert iterations_per_epoch(TrainingConfig(data_augmentation_loop=20), 64000) == 128_000
    assert iterations_per_epoch(TrainingConfig(data_augmentation_loop=3, batch_size=2), 3001) == 900  # int(4501*0.2)


def test_exploration_slots_of_the_published_config_train_160000_iterations() -> None:
    template = load_slot_template(PUBLISHED)
    assert load_experiment(PUBLISHED).training.data_augmentation_loop == 20  # the standalone value
    assert iterations_per_epoch(template.config.training, template.config.simulation.n_frames) == 160_000
    assert template.config.training.n_epochs == 1


def test_cyclic_phases_start_with_v_rest_when_alternate_first_phase_is_v_rest() -> None:
    t = TrainingConfig(alternate_training=True, n_alternations=2, alternate_vrest_ratio=0.25)
    t.alternate_first_phase = "V_rest"
    got = "".join(phase_lrs(i, 16, t)[0][0] for i in range(16))
    assert got == "VVWWWWWW" * 2
    t.alternate_first_phase = "W"
    assert "".join(phase_lrs(i, 16, t)[0][0] for i in range(16)) == "WWWWWWVV" * 2


def test_phase_lrs_follow_the_reference_table() -> None:
    t = TrainingConfig(alternate_training=True, n_alternations=1, alternate_first_phase="V_rest")
    assert phase_lrs(0, 10, t) == (
        "V_rest",
        {"lin_edge": 1.2e-6, "W": 6e-7, "lin_phi": 1.2e-3, "embedding": 1.55e-3},
    )
    assert phase_lrs(9, 10, t) == ("W", {"lin_edge": 1.2e-3, "W": 6e-4, "lin_phi": 1.2e-6, "embedding": 1.55e-6})


def test_adam_moments_persist_across_a_phase_switch() -> None:
    model = _model()
    t = TrainingConfig(alternate_training=True, n_alternations=1)
    opt = build_optimizer(model.param_groups(), phase_lrs(0, 10, t)[1])
    model(torch.rand(1, 2), torch.rand(1, 1)).sum().backward()
    opt.step()
    before = opt.state[model.W]["exp_avg"].clone()
    apply_lrs(opt, phase_lrs(9, 10, t)[1])
    assert torch.equal(opt.state[model.W]["exp_avg"], before)
    assert {g["name"]: g["lr"] for g in opt.param_groups}["W"] == 6e-7


def test_r2_log_phase_column_shows_v_rest_first(synth: Dataset, small_cfg: ExperimentConfig, tmp_path: Path) -> None:
    t = small_cfg.training
    t.alternate_training, t.n_alternations, t.n_iterations, t.alternate_first_phase = True, 2, 100, "V_rest"
    model, probe = build_model(small_cfg, synth, CPU), build_probe(synth, CPU)
    train(model, synth, t, probe, r2_log=tmp_path / "connectivity_r2.log", progress=False)
    rows = read_r2_log(tmp_path / "connectivity_r2.log")
    assert [r.phase for r in rows if r.iteration in (10, 30, 60, 80)] == ["V_rest", "W", "V_rest", "W"]


# -- the published config ------------------------------------------------------------------


def test_the_full_scale_config_equals_the_published_values() -> None:
    cfg = load_experiment(PUBLISHED)
    published_training = {
        "n_epochs": 1,
        "batch_size": 2,
        "data_augmentation_loop": 20,
        "learning_rate_W_start": 6e-4,
        "learning_rate_start": 1.2e-3,
        "learning_rate_embedding_start": 1.55e-3,
        "coeff_edge_diff": 750,
        "coeff_edge_norm": 0.9,
        "coeff_edge_weight_L1": 0.29,
        "coeff_phi_weight_L1": 0.5,
        "coeff_phi_weight_L1_rate": 0.4,
        "coeff_edge_weight_L2": 0,
        "coeff_phi_weight_L2": 0.001,
        "coeff_W_L1": 3.3e-5,
        "coeff_W_L1_rate": 0.5,
        "coeff_W_L2": 2.5e-6,
        "alternate_training": True,
        "n_alternations": 4,
        "alternate_vrest_ratio": 0.5,
        "alternate_lr_W": 6e-7,
        "alternate_lr_edge": 1.2e-6,
        "alternate_lr_update": 1.2e-6,
        "alternate_lr_embedding": 1.55e-6,
        "seed": 42,
    }
    assert {k: getattr(cfg.training, k) for k in published_training} == published_training
    assert cfg.graph_model.model_dump() == {
        "embedding_dim": 2,
        "input_size": 3,
        "input_size_update": 5,
        "hidden_dim": 80,
        "n_layers": 3,
        "hidden_dim_update": 80,
        "n_layers_update": 3,
        "output_size": 1,
        "lin_edge_positive": True,
        "w_init_mode": "zeros",
    }
    s = cfg.simulation
    assert (s.extent, s.n_frames, s.delta_t, s.noise_model_level, s.stimulus, s.seed) == (
        8,
        64000,
        0.02,
        0.05,
        "davis",
        42,
    )
    assert (cfg.claude.n_epochs, cfg.claude.data_augmentation_loop, cfg.claude.n_iter_block, cfg.claude.ucb_c) == (
        1,
        25,
        12,
        1.414,
    )
