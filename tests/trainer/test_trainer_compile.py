"""training.compile: one compiled graph for every epoch, the eager loss values, the model's ops restored after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch._dynamo.utils import counters

from experiment.config import ExperimentConfig
from trainer import train as train_module
from trainer.data import Dataset
from trainer.train import FrameSampler, build_model, build_probe, loss_fn_for, make_loss_fn, train

CPU = torch.device("cpu")
CHEAP_BACKEND = "aot_eager"  # traces forward and backward as inductor does, without code generation


@pytest.fixture
def annealed_cfg(small_cfg: ExperimentConfig) -> ExperimentConfig:
    """Three epochs, every regulariser on, the annealed ones changing from epoch to epoch."""
    t = small_cfg.training
    t.n_epochs, t.n_iterations = 3, 4
    t.coeff_edge_weight_L1, t.coeff_edge_weight_L2, t.coeff_phi_weight_L1 = 0.09, 0.01, 0.5
    return small_cfg


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _compiled_graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.numerics
@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_loss_compiles_once_for_every_epoch_and_gives_the_eager_loss(
    synth: Dataset, annealed_cfg: ExperimentConfig
) -> None:
    t = annealed_cfg.training
    model = build_model(annealed_cfg, synth, CPU)
    v, y, stim = FrameSampler(synth.train, t.batch_size, 1, t.seed, CPU).batch(0)
    eager = make_loss_fn(model, t, 0.7)
    expected = [eager(v, y, stim, epoch) for epoch in range(3)]
    assert len({float(x) for x in expected}) == 3  # the annealing changes the loss: each epoch is a new value
    compiled = make_loss_fn(model, t.model_copy(update={"compile": "default"}), 0.7, backend=CHEAP_BACKEND)
    got = [compiled(v, y, stim, epoch) for epoch in range(3)]
    assert _compiled_graphs() == 1
    for epoch in range(3):
        torch.testing.assert_close(got[epoch], expected[epoch], rtol=1e-6, atol=0, msg=f"epoch {epoch}")


@pytest.mark.slow  # inductor's code generation: about 30 s on a 2-core CPU
def test_inductor_run_over_three_epochs_compiles_the_loss_once(
    synth: Dataset, annealed_cfg: ExperimentConfig, fresh_dynamo: None
) -> None:
    annealed_cfg.training.compile = "default"
    model = build_model(annealed_cfg, synth, CPU)
    train(model, synth, annealed_cfg.training, build_probe(synth, CPU), progress=False)
    assert _compiled_graphs() == 1


def test_compiled_run_leaves_the_model_on_its_usual_ops(
    synth: Dataset, annealed_cfg: ExperimentConfig, fresh_dynamo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train_module, "COMPILE_BACKEND", CHEAP_BACKEND)
    annealed_cfg.training.compile = "default"
    model = build_model(annealed_cfg, synth, CPU)
    train(model, synth, annealed_cfg.training, build_probe(synth, CPU), progress=False)
    assert model.plain_ops is False


def test_loss_fn_for_restores_the_ops_when_the_block_fails(synth: Dataset, annealed_cfg: ExperimentConfig) -> None:
    model = build_model(annealed_cfg, synth, CPU)
    cfg = annealed_cfg.training.model_copy(update={"compile": "default"})
    with pytest.raises(RuntimeError, match="stop"), loss_fn_for(model, cfg, 0.7, backend=CHEAP_BACKEND):
        assert model.plain_ops is True
        raise RuntimeError("stop")
    assert model.plain_ops is False
