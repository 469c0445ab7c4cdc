from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from experiment.config import SimulationConfig, load_experiment
from experiment.yaml_io import write_yaml_roundtrip
from simulator.connectome import hex_columns
from simulator.dataset import open_dataset
from simulator.davis import augment, hexal_values
from simulator.errors import SimulatorError
from simulator.generate import generate_dataset, main
from simulator.natural import IMAGES, MAX_LEN, NaturalStream, image_dir, load_image, source_bounds, split_images
from simulator.stimulus import make_stream

COLUMNS = hex_columns(4)
REPO = Path(__file__).resolve().parents[2]


def _stream(seed: int = 1, split: str = "train") -> NaturalStream:
    return make_stream("natural", COLUMNS, seed, 0.02, split=split, davis_root=None)


@pytest.fixture
def no_network(monkeypatch):
    """Any socket use fails: the bundled images must load without pooch downloading anything."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_image_is_bundled_and_loads_offline(no_network) -> None:
    for name in IMAGES:
        assert (image_dir() / name).is_file(), name
        img = load_image(name)
        assert img.ndim == 2 and min(img.shape) >= 300 and img.min() >= 0 and img.max() <= 1
        assert img.std() > 0.05, name  # a photograph with contrast, not a flat field
    assert _stream().frames(200).shape == (200, len(COLUMNS))


def test_missing_image_is_one_line_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("simulator.natural.image_dir", lambda: tmp_path)
    with pytest.raises(SimulatorError, match="natural") as err:
        _stream()
    assert "\n" not in str(err.value)


def test_split_is_by_image_80_20() -> None:
    split = split_images()
    assert sorted(split["train"] + split["test"]) == sorted(IMAGES)
    assert not set(split["train"]) & set(split["test"])
    assert len(split["test"]) == len(IMAGES) // 5


def test_same_seed_same_frames_other_seed_or_split_differs() -> None:
    a, b = _stream(1).frames(300), _stream(1).frames(300)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _stream(2).frames(300))
    assert not np.array_equal(a, _stream(1, "test").frames(300))


def test_chunked_frames_equal_one_read_and_stay_in_unit_range() -> None:
    whole = _stream().frames(500)
    s = _stream()
    parts = np.concatenate([s.frames(k) for k in (1, 37, 200, 262)])
    np.testing.assert_array_equal(whole, parts)
    assert whole.dtype == np.float32 and whole.min() >= 0 and whole.max() <= 1
    assert 0.2 < whole.mean() < 0.7 and whole.std() > 0.05  # DAVIS-like luminance, not a flat grey


def test_frames_move_but_are_temporally_smooth() -> None:
    f = _stream().frames(2000)
    step = np.abs(np.diff(f, axis=0)).mean(1)
    assert (step > 0).mean() > 0.9  # the gaze moves in nearly every frame
    assert np.median(step) < 0.5 * np.abs(f - f.mean(0)).mean()  # neighbouring frames look alike


@pytest.mark.parametrize("k", range(8))
def test_centred_unzoomed_view_equals_davis_sampling(k) -> None:
    """At scale 1 over the image centre a natural frame is exactly the DAVIS hexal sampling of augmentation k."""
    s = _stream()
    name = s.images[3]  # a non-square photo: rotations swap its sides
    img = augment(load_image(name), k)
    h, w = img.shape
    frame = s.sample(name, k, np.array([h / 2]), np.array([w / 2]), np.array([1.0]))
    np.testing.assert_allclose(frame[0], hexal_values(img, COLUMNS), rtol=1e-6, atol=1e-9)


def test_augmented_boxes_map_onto_the_same_pixels() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((7, 11))
    for k in range(8):
        aug = augment(img, k)
        ys, xs = sorted(rng.integers(0, aug.shape[0] + 1, 2)), sorted(rng.integers(0, aug.shape[1] + 1, 2))
        y0, y1, x0, x1 = source_bounds((ys[0], ys[1], xs[0], xs[1]), k, img.shape)
        assert aug[ys[0] : ys[1], xs[0] : xs[1]].sum() == pytest.approx(img[y0:y1, x0:x1].sum())
        assert (y1 - y0) * (x1 - x0) == (ys[1] - ys[0]) * (xs[1] - xs[0])


@pytest.mark.parametrize("shape", [(300, 451), (512, 512)])
def test_motions(shape) -> None:
    s = _stream()
    for _ in range(10):
        cy, cx, scale = s.gaze("loom", MAX_LEN, shape)
        assert np.all(np.diff(scale) >= 0) and scale[-1] >= 1.9 * scale[0]  # expanding zoom
        cy, cx, scale = s.gaze("saccade", MAX_LEN, shape)
        speed = np.hypot(np.diff(cy), np.diff(cx))
        assert speed.max() > 5 * np.median(speed)  # fast jumps between slow drift
        for motion in ("drift", "saccade", "loom"):
            cy, cx, scale = s.gaze(motion, MAX_LEN, shape)
            half = s.reach[None, :] * scale[:, None]
            pos = np.stack([cy, cx], 1)
            assert np.all(pos - half >= -1e-9) and np.all(pos + half <= np.asarray(shape) + 1e-9)  # inside


def test_natural_stimulus_generates_dataset(tmp_path) -> None:
    sim = SimulationConfig(extent=1, n_frames=60, n_test_frames=20, steady_state_s=0.1, stimulus="natural")
    ds = open_dataset(generate_dataset(sim, tmp_path / "out"))
    s = np.asarray(ds.train.stimulus)
    assert s.shape == (60, 56) and s.min() >= 0 and s.max() <= 1
    assert ds.meta["stimulus"]["train"]["kind"] == "natural"
    assert ds.meta["stimulus"]["test"]["images"] == split_images()["test"]


@pytest.mark.parametrize("via", ["flag", "yaml"])
def test_cli_natural_from_flag_or_yaml(tmp_path, via) -> None:
    """The science config with ``--stimulus natural`` or with ``simulation.stimulus: natural`` set in its YAML."""
    data = load_experiment(REPO / "configs" / "flyvis_science_cpu.yaml").model_dump(mode="json")
    data["simulation"].update(
        n_test_frames=10, steady_state_s=0.0, stimulus="natural" if via == "yaml" else "procedural"
    )
    cfg = tmp_path / "cfg.yaml"
    write_yaml_roundtrip(cfg, data)
    flag = ["--stimulus", "natural"] if via == "flag" else []
    argv = ["--config", str(cfg), "--seed", "1", "--out", str(tmp_path / "d"), "--extent", "1", "--n-frames", "20"]
    assert main(argv + flag) == 0
    assert open_dataset(tmp_path / "d").meta["stimulus"]["train"]["kind"] == "natural"
