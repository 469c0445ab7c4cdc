"""The training loop: learning on synthetic data, phase switches, the R2 log, NaN handling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from experiment.config import ExperimentConfig
from experiment.records import read_r2_log
from trainer.data import Dataset, read_dataset
from trainer.schedule import MIN_CHECKPOINTS_PER_PHASE, phase_lrs, r2_checkpoints, reference_checkpoints
from trainer.train import TrainingFailed, build_model, build_probe, evaluate, train

CPU = torch.device("cpu")


def _fit(cfg: ExperimentConfig, data: Dataset, tmp_path: Path | None = None):
    model = build_model(cfg, data, CPU)
    probe = build_probe(data, CPU)
    log = tmp_path / "connectivity_r2.log" if tmp_path else None
    return model, probe, train(model, data, cfg.training, probe, r2_log=log, progress=False)


@pytest.mark.numerics
def test_training_lowers_the_loss_on_synthetic_data(synth: Dataset, small_cfg: ExperimentConfig) -> None:
    small_cfg.training.n_iterations = 600
    _, _, result = _fit(small_cfg, synth)
    first, last = result.losses[:50].mean(), result.losses[-50:].mean()
    assert last < 0.7 * first, (first, last)


def test_alternating_run_sets_phase_lrs_exactly_at_the_phase_switches(
    synth: Dataset, small_cfg: ExperimentConfig
) -> None:
    t = small_cfg.training
    t.alternate_training, t.n_alternations, t.alternate_vrest_ratio, t.n_iterations = True, 2, 0.5, 20
    _, _, result = _fit(small_cfg, synth)
    assert [step for step, _ in result.lr_log] == [0, 5, 10, 15]
    for step, lrs in result.lr_log:
        assert lrs == phase_lrs(step, 20, t)[1]
    assert [(s, e, p) for s, e, p in result.phase_spans] == [
        (0, 5, "W"),
        (5, 10, "V_rest"),
        (10, 15, "W"),
        (15, 20, "V_rest"),
    ]


def test_alternating_run_writes_phase_tagged_r2_rows(
    synth: Dataset, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    t = small_cfg.training
    t.alternate_training, t.n_alternations, t.n_iterations = True, 2, 100
    _fit(small_cfg, synth, tmp_path)
    rows = read_r2_log(tmp_path / "connectivity_r2.log")
    assert [r.iteration for r in rows] == r2_checkpoints(100, t)
    assert set(reference_checkpoints(100)) < {r.iteration for r in rows}  # the second W-phase needed one more
    assert [r.phase for r in rows] == [phase_lrs(r.iteration - 1, 100, t)[0] for r in rows]
    for start, end, phase in [(0, 25, "W"), (25, 50, "V_rest"), (50, 75, "W"), (75, 100, "V_rest")]:
        assert sum(start < r.iteration <= end and r.phase == phase for r in rows) >= MIN_CHECKPOINTS_PER_PHASE


def test_standard_run_tags_rows_with_a_dash(synth: Dataset, small_cfg: ExperimentConfig, tmp_path: Path) -> None:
    _fit(small_cfg, synth, tmp_path)
    assert {r.phase for r in read_r2_log(tmp_path / "connectivity_r2.log")} == {"-"}


@pytest.mark.fault("trainer")
def test_nan_in_the_data_stops_training_with_the_iteration(
    synth_dir: Path, small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(synth_dir, bad)
    y = np.load(bad / "train" / "y.npy")
    y[:] = np.nan
    np.save(bad / "train" / "y.npy", y)
    with pytest.raises(TrainingFailed, match=r"^NaN loss at iteration 1$"):
        _fit(small_cfg, read_dataset(bad))


@pytest.mark.numerics
def test_evaluate_gives_finite_metrics_after_training(synth: Dataset, small_cfg: ExperimentConfig) -> None:
    model, probe, result = _fit(small_cfg, synth)
    m = evaluate(model, synth, small_cfg, probe, result.seconds).metrics
    assert all(np.isfinite(v) for v in m.model_dump().values())
