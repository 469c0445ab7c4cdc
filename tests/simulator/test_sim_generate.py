from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from experiment.config import SimulationConfig
from simulator.dataset import open_dataset
from simulator.dynamics import drift
from simulator.errors import SimulatorError
from simulator.generate import generate_dataset

REPO = Path(__file__).resolve().parents[2]

FILES = [
    "meta.json", "type_names.json", "edge_index.npy", "W.npy", "tau.npy", "V_rest.npy", "types.npy",
    "positions.npy", "input_index.npy", "activity.png",
    *[f"{s}/{k}.npy" for s in ("train", "test") for k in ("voltage", "y", "stimulus")],
]  # fmt: skip


def test_same_seed_gives_identical_arrays(small_sim, tmp_path) -> None:
    a = open_dataset(generate_dataset(small_sim, tmp_path / "a", seed=5))
    b = open_dataset(generate_dataset(small_sim, tmp_path / "b", seed=5))
    for split in ("train", "test"):
        for key in ("voltage", "y", "stimulus"):
            np.testing.assert_array_equal(getattr(getattr(a, split), key), getattr(getattr(b, split), key))


def test_other_seed_gives_different_frames_same_ground_truth(small_sim, tmp_path) -> None:
    a = open_dataset(generate_dataset(small_sim, tmp_path / "a", seed=5))
    b = open_dataset(generate_dataset(small_sim, tmp_path / "b", seed=6))
    assert not np.array_equal(a.train.voltage, b.train.voltage)
    assert not np.array_equal(a.train.stimulus, b.train.stimulus)
    np.testing.assert_array_equal(a.W, b.W)


@pytest.mark.numerics
def test_saved_y_is_the_drift_of_saved_state(small_sim, tmp_path) -> None:
    ds = open_dataset(generate_dataset(small_sim, tmp_path / "d"))
    t = lambda x: torch.from_numpy(np.array(x))  # noqa: E731
    v = t(ds.train.voltage)
    stim = torch.zeros_like(v)
    stim[:, t(ds.input_index)] = t(ds.train.stimulus)
    y = drift(v, stim, t(ds.W), t(ds.edge_index), t(ds.tau), t(ds.V_rest))
    torch.testing.assert_close(y, t(ds.train.y), rtol=1e-4, atol=1e-4)


@pytest.mark.numerics
def test_test_split_is_noise_free(small_sim, tmp_path) -> None:
    ds = open_dataset(generate_dataset(small_sim, tmp_path / "d"))
    v, y = np.asarray(ds.test.voltage), np.asarray(ds.test.y)
    np.testing.assert_allclose(v[1:], v[:-1] + ds.meta["delta_t"] * y[:-1], rtol=1e-5, atol=1e-5)


def test_stimulus_in_unit_range_and_same_for_r1_to_r8(small_sim, tmp_path) -> None:
    ds = open_dataset(generate_dataset(small_sim, tmp_path / "d"))
    s = np.asarray(ds.train.stimulus)
    assert s.min() >= 0 and s.max() <= 1
    per_type = s.reshape(len(s), 8, -1)  # R1..R8 blocks, each over all columns
    np.testing.assert_array_equal(per_type, np.repeat(per_type[:, :1], 8, axis=1))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extent": 0}, "extent"),
        ({"extent": 16}, "extent"),
        ({"ground_truth": "/nonexistent/ckpt"}, "does not exist"),
        ({"stimulus": "davis", "davis_root": "/nonexistent/davis"}, "davis_root"),
    ],
)
def test_bad_input_is_one_line_error_and_leaves_nothing(small_sim, tmp_path, change, match) -> None:
    sim = SimulationConfig.model_construct(**{**small_sim.model_dump(), **change})
    with pytest.raises(SimulatorError, match=match) as err:
        generate_dataset(sim, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_one_line_error(small_sim, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SimulatorError, match="not writable"):
        generate_dataset(small_sim, blocker / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_failure_midway_leaves_no_half_written_dataset(small_sim, tmp_path, monkeypatch) -> None:
    import simulator.generate as gen

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "_simulate_split", boom)
    with pytest.raises(RuntimeError):
        generate_dataset(small_sim, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_existing_dataset_needs_overwrite(small_sim, tmp_path) -> None:
    generate_dataset(small_sim, tmp_path / "d", seed=1)
    with pytest.raises(SimulatorError, match="not empty"):
        generate_dataset(small_sim, tmp_path / "d", seed=2)
    generate_dataset(small_sim, tmp_path / "d", seed=2, overwrite=True)
    assert open_dataset(tmp_path / "d").meta["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_open_dataset_rejects_missing_file(small_sim, tmp_path) -> None:
    path = generate_dataset(small_sim, tmp_path / "d")
    (path / "train" / "y.npy").unlink()
    with pytest.raises(SimulatorError, match=r"y\.npy: missing"):
        open_dataset(path)


def test_open_dataset_rejects_wrong_shape(small_sim, tmp_path) -> None:
    path = generate_dataset(small_sim, tmp_path / "d")
    np.save(path / "W.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(SimulatorError, match=r"W\.npy: shape"):
        open_dataset(path)


def test_cli_on_tiny_config_writes_all_files(tmp_path) -> None:
    out = tmp_path / "tiny"
    cmd = [sys.executable, "-m", "simulator.generate", "--config", str(REPO / "configs" / "flyvis_tiny.yaml"),
           "--seed", "7", "--out", str(out), "--n-frames", "120"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert all((out / f).is_file() for f in FILES)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_frames"]["train"] == 120 and meta["seed"] == 7 and meta["n_neurons"] == 443


def test_cli_bad_extent_exits_2_with_one_line(tmp_path) -> None:
    cmd = [sys.executable, "-m", "simulator.generate", "--config", str(REPO / "configs" / "flyvis_tiny.yaml"),
           "--seed", "1", "--out", str(tmp_path / "x"), "--extent", "16"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "extent" in proc.stderr
