"""Science smoke test: a short standard training on simulated extent-1 FlyVis data recovers W."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiment.config import load_experiment
from trainer.data import read_dataset
from trainer.train import build_model, build_probe, train

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.numerics
def test_short_training_at_extent_1_reaches_a_conn_r2_floor(tmp_path: Path, checkpoint_dir: Path) -> None:
    generate = pytest.importorskip("simulator.generate")
    cfg = load_experiment(REPO / "configs" / "flyvis_tiny.yaml")
    cfg.simulation.ground_truth = str(checkpoint_dir)
    cfg.graph_model.hidden_dim = cfg.graph_model.hidden_dim_update = 32
    cfg.training.alternate_training = False
    cfg.training.n_iterations = 1500
    data = read_dataset(generate.generate_dataset(cfg.simulation, tmp_path / "data", n_frames=1000))
    cpu = torch.device("cpu")
    probe = build_probe(data, cpu)
    untrained = probe.connectivity_r2(build_model(cfg, data, cpu))
    model = build_model(cfg, data, cpu)
    train(model, data, cfg.training, probe, progress=False)
    trained = probe.connectivity_r2(model)
    assert untrained < 0.1
    assert trained > 0.5, f"conn_R2 {trained:.3f}"
