"""R2 checkpoints: background rows are the in-loop ones, errors re-raise, the final recovery runs once on evaluate's ops."""

from __future__ import annotations

import threading
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from experiment.config import ExperimentConfig
from experiment.records import R2_LOG, read_r2_log
from trainer import train as train_module
from trainer.checkpoints import background_r2
from trainer.data import Dataset
from trainer.metrics import Probe, Recovered
from trainer.model import FlyVisGNN
from trainer.schedule import r2_checkpoints
from trainer.train import TrainResult, build_model, build_probe, evaluate, train

CPU = torch.device("cpu")
CHEAP_BACKEND = "aot_eager"  # torch.compile's tracing without inductor's code generation: cheap on the CPU


def _run(cfg: ExperimentConfig, data: Dataset, log: Path | None = None) -> tuple[torch.nn.Module, Probe, TrainResult]:
    model = build_model(cfg, data, CPU)
    probe = build_probe(data, CPU)
    return model, probe, train(model, data, cfg.training, probe, r2_log=log, progress=False)


@pytest.fixture
def two_epochs(small_cfg: ExperimentConfig) -> ExperimentConfig:
    small_cfg.training.n_epochs, small_cfg.training.n_iterations = 2, 20
    return small_cfg


def _count_recover(monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> list[int]:
    """Count Probe.recover calls; the call numbered ``fail_at`` (1-based) raises instead."""
    calls: list[int] = []
    real = Probe.recover

    def recover(self: Probe, model: FlyVisGNN) -> Recovered:
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError(f"checkpoint {fail_at} failed")
        return real(self, model)

    monkeypatch.setattr(Probe, "recover", recover)
    return calls


def test_final_recovery_is_computed_once_and_gives_the_same_metrics(
    synth: Dataset, two_epochs: ExperimentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_recover(monkeypatch)
    model, probe, result = _run(two_epochs, synth)
    reused = evaluate(model, synth, two_epochs, probe, 0.0, result.recovered).metrics
    assert len(calls) == 2 * len(r2_checkpoints(20, two_epochs.training))  # every checkpoint once, evaluate none
    recomputed = evaluate(model, synth, two_epochs, probe, 0.0).metrics
    assert len(calls) == 2 * len(r2_checkpoints(20, two_epochs.training)) + 1
    assert reused == recomputed


@pytest.mark.parametrize("async_mode", ["on", "off"])
def test_a_compiled_run_reuses_exactly_the_recovery_evaluate_computes(
    synth: Dataset, two_epochs: ExperimentConfig, monkeypatch: pytest.MonkeyPatch, async_mode: str
) -> None:
    """The compiled loss runs the model on plain ops; the final checkpoint still scores on evaluate's ops."""
    monkeypatch.setattr(train_module, "COMPILE_BACKEND", CHEAP_BACKEND)
    two_epochs.training.compile, two_epochs.training.r2_async = "default", async_mode
    torch._dynamo.reset()
    try:
        model, probe, result = _run(two_epochs, synth)
    finally:
        torch._dynamo.reset()
    assert result.recovered is not None
    recomputed = probe.recover(model)
    for field in fields(Recovered):
        np.testing.assert_array_equal(getattr(result.recovered, field.name), getattr(recomputed, field.name),
                                      err_msg=field.name)  # fmt: skip
    reused = evaluate(model, synth, two_epochs, probe, 0.0, result.recovered).metrics
    assert reused == evaluate(model, synth, two_epochs, probe, 0.0).metrics


@pytest.mark.parametrize(("async_mode", "on_main_thread"), [("on", False), ("off", True)])
def test_r2_async_decides_which_thread_scores_the_checkpoints(
    synth: Dataset, two_epochs: ExperimentConfig, monkeypatch: pytest.MonkeyPatch, async_mode: str, on_main_thread: bool
) -> None:
    threads: list[bool] = []
    real = Probe.recover

    def recover(self: Probe, model: FlyVisGNN) -> Recovered:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(self, model)

    monkeypatch.setattr(Probe, "recover", recover)
    two_epochs.training.r2_async = async_mode
    _run(two_epochs, synth)
    assert threads == [on_main_thread] * (2 * len(r2_checkpoints(20, two_epochs.training)))


@pytest.mark.numerics
def test_background_checkpoints_write_the_in_loop_log(
    synth: Dataset, two_epochs: ExperimentConfig, tmp_path: Path
) -> None:
    two_epochs.training.r2_async = "off"
    _, _, ref = _run(two_epochs, synth, tmp_path / "ref" / R2_LOG)
    two_epochs.training.r2_async = "on"
    _, _, got = _run(two_epochs, synth, tmp_path / "got" / R2_LOG)
    ref_rows, got_rows = read_r2_log(tmp_path / "ref" / R2_LOG), read_r2_log(tmp_path / "got" / R2_LOG)
    assert [(r.epoch, r.iteration, r.phase) for r in got_rows] == [(r.epoch, r.iteration, r.phase) for r in ref_rows]
    assert len(ref_rows) == 2 * len(r2_checkpoints(20, two_epochs.training))
    np.testing.assert_allclose([r.connectivity_r2 for r in got.r2_rows], [r.connectivity_r2 for r in ref.r2_rows],
                               rtol=0, atol=1e-9)  # fmt: skip
    assert (tmp_path / "got" / R2_LOG).read_text() == (tmp_path / "ref" / R2_LOG).read_text()
    np.testing.assert_array_equal(got.losses, ref.losses)
    np.testing.assert_array_equal(got.recovered.W_corrected, ref.recovered.W_corrected)


@pytest.mark.parametrize("async_mode", ["on", "off"])
def test_a_failing_checkpoint_raises_its_error_after_the_rows_before_it(
    synth: Dataset, two_epochs: ExperimentConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, async_mode: str
) -> None:
    _count_recover(monkeypatch, fail_at=3)
    two_epochs.training.r2_async = async_mode
    with pytest.raises(RuntimeError, match=r"^checkpoint 3 failed$"):
        _run(two_epochs, synth, tmp_path / R2_LOG)
    assert [r.iteration for r in read_r2_log(tmp_path / R2_LOG)] == r2_checkpoints(20, two_epochs.training)[:2]


@pytest.mark.parametrize(("setting", "device", "expected"), [
    ("auto", "cuda", True), ("auto", "cpu", False), ("on", "cpu", True), ("off", "cuda", False),
])  # fmt: skip
def test_r2_async_auto_runs_in_the_background_on_cuda_only(setting: str, device: str, expected: bool) -> None:
    assert background_r2(setting, torch.device(device)) is expected  # type: ignore[arg-type]
