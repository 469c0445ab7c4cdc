from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from experiment.config import SimulationConfig
from simulator.connectome import hex_columns
from simulator.dataset import open_dataset
from simulator.davis import augment, hexal_values, split_videos
from simulator.generate import generate_dataset


@pytest.fixture
def davis_root(tmp_path):
    """Five tiny videos of 6 frames each (160x120 RGB gradients)."""
    rng = np.random.default_rng(0)
    for v in range(5):
        folder = tmp_path / "davis" / "JPEGImages" / "480p" / f"video{v}"
        folder.mkdir(parents=True)
        for f in range(6):
            img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{f:05d}.jpg")
    return tmp_path / "davis"


def test_split_is_80_20_by_video(davis_root) -> None:
    split = split_videos(davis_root)
    assert len(split["train"]) == 4 and split["test"] == ["video4"]


def test_hexal_value_is_mean_of_13px_box_at_centre() -> None:
    img = np.zeros((100, 100))
    img[44:57, 44:57] = 1.0  # 13x13 box around the centre (50, 50)
    vals = hexal_values(img, hex_columns(1))
    centre = np.flatnonzero((hex_columns(1) == 0).all(1))[0]
    assert vals[centre] == pytest.approx(1.0)
    assert np.delete(vals, centre).max() < 0.2


def test_eight_augmentations_are_distinct() -> None:
    img = np.arange(36.0).reshape(6, 6)
    outs = {augment(img, k).tobytes() for k in range(8)}
    assert len(outs) == 8


def test_davis_stimulus_generates_dataset(davis_root, tmp_path) -> None:
    sim = SimulationConfig(
        extent=1, n_frames=30, n_test_frames=10, steady_state_s=0.1, stimulus="davis", davis_root=str(davis_root)
    )
    ds = open_dataset(generate_dataset(sim, tmp_path / "out"))
    s = np.asarray(ds.train.stimulus)
    assert s.shape == (30, 56) and s.min() >= 0 and s.max() <= 1
    assert ds.meta["stimulus"]["test"]["videos"] == ["video4"]


def test_davis_root_from_env(davis_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DAVIS_ROOT", str(davis_root))
    sim = SimulationConfig(extent=1, n_frames=12, n_test_frames=10, steady_state_s=0.0, stimulus="davis")
    assert open_dataset(generate_dataset(sim, tmp_path / "out")).meta["stimulus"]["train"]["kind"] == "davis"
