"""The slot job and the run CLI: status file, metrics, R2 log, images; failures end cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiment.config import load_experiment
from experiment.records import read_metrics, read_r2_log, read_status
from trainer import slot
from trainer.run import main as run_main
from trainer.run import parser as run_parser
from trainer.schedule import r2_checkpoints

REPO = Path(__file__).resolve().parents[2]
IMAGES = ("W_corrected.png", "embedding.png", "tau.png", "V_rest.png", "loss.png", "connectivity_r2.png",
          "V_rest_lever.png", "panel.png")  # fmt: skip


def _write_config(tmp_path: Path, **training: object) -> Path:
    lines = ["dataset: test", "graph_model:", "  hidden_dim: 16", "  hidden_dim_update: 16", "training:"]
    lines += [f"  {k}: {v}" for k, v in training.items()]
    path = tmp_path / "cfg.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_slot_cli_on_the_tiny_config_writes_every_output(tmp_path: Path) -> None:
    pytest.importorskip("simulator.generate")
    out = tmp_path / "slot"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "trainer.slot", "--config", str(REPO / "configs" / "flyvis_tiny.yaml")]
    proc = subprocess.run([*cmd, "--out", str(out), "--iterations", "60"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = read_status(out)
    assert status is not None and status.state == "succeeded" and status.exit_code == 0
    assert status.pid and status.host and status.started_at and status.ended_at
    read_metrics(out)
    rows = read_r2_log(out / "connectivity_r2.log")
    training = load_experiment(REPO / "configs" / "flyvis_tiny.yaml").training.model_copy(update={"n_iterations": 60})
    assert [r.iteration for r in rows] == r2_checkpoints(60, training)  # >= 3 per phase, the reference's among them
    for name in (*IMAGES, "activity.png"):
        assert (out / name).stat().st_size > 1000, name
    (w, h), (aw, ah) = Image.open(out / "panel.png").size, Image.open(out / "activity.png").size
    assert w * h <= aw * ah  # the panel costs the LLM no more tokens ((w x h) / 750) than activity.png did
    assert "n_iterations: 60" in (out / "config.yaml").read_text()


@pytest.mark.fault("trainer")
def test_slot_with_nan_data_fails_with_status_and_reason(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(synth_dir, bad)
    np.save(bad / "train" / "y.npy", np.full_like(np.load(bad / "train" / "y.npy"), np.nan))
    monkeypatch.setattr(slot, "generate_data", lambda cfg, data_dir, device: bad)
    cfg = _write_config(tmp_path, n_iterations=10)
    args = Namespace(config=cfg, out=tmp_path / "out", data_dir=None, iterations=None, device="cpu", threads=None)
    status = slot.run_slot(args)
    assert status.state == "failed" and status.exit_code == 1
    assert status.reason == "NaN loss at iteration 1"
    assert read_status(tmp_path / "out") == status


def test_slot_with_a_bad_config_fails_with_a_one_line_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dataset: t\ntraining:\n  batch_sise: 2\n")
    args = Namespace(config=cfg, out=tmp_path / "out", data_dir=None, iterations=None, device="cpu", threads=None)
    status = slot.run_slot(args)
    assert status.state == "failed"
    assert "training.batch_sise" in status.reason and "\\n" not in status.reason


def test_run_cli_trains_on_an_existing_dataset(synth_dir: Path, tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, n_rollout_frames=20, cluster_n_components=5)
    out = tmp_path / "run"
    assert run_main(["--config", str(cfg), "--data", str(synth_dir), "--out", str(out), "--iterations", "30"]) == 0
    assert read_metrics(out).training_time_min >= 0
    assert all((out / name).exists() for name in IMAGES)


def test_slot_with_a_missing_dataset_file_fails_with_the_readers_message(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(synth_dir, bad)
    (bad / "train" / "voltage.npy").unlink()
    monkeypatch.setattr(slot, "generate_data", lambda cfg, data_dir, device: bad)
    cfg = _write_config(tmp_path, n_iterations=10)
    args = Namespace(config=cfg, out=tmp_path / "out", data_dir=None, iterations=None, device="cpu", threads=None)
    status = slot.run_slot(args)
    assert status.state == "failed"
    assert status.reason == f"{bad / 'train' / 'voltage.npy'}: missing dataset file"


def test_run_cli_on_a_missing_dataset_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_config(tmp_path, n_iterations=10)
    missing = tmp_path / "nowhere"
    assert run_main(["--config", str(cfg), "--data", str(missing), "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == f"error: {missing}: dataset folder does not exist\n"


def test_both_clis_share_the_common_options() -> None:
    common = {"--config", "--out", "--iterations", "--device", "--threads"}
    run_opts = {s for a in run_parser()._actions for s in a.option_strings}
    slot_opts = {s for a in slot.parser()._actions for s in a.option_strings}
    assert common <= run_opts and common <= slot_opts
    assert "--data" in run_opts and "--data-dir" in slot_opts
