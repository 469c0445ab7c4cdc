"""Dataset reading: shapes are checked, errors are one line naming the file; progress output."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from trainer.data import DatasetError, read_dataset
from trainer.progress import Progress


def test_read_dataset_memory_maps_the_splits(synth_dir: Path) -> None:
    data = read_dataset(synth_dir)
    assert isinstance(data.train.voltage, np.memmap)
    assert data.train.voltage.shape == (400, data.n_neurons) and data.delta_t == 0.02


def test_missing_file_is_one_line_naming_it(synth_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "d"
    shutil.copytree(synth_dir, broken)
    (broken / "W.npy").unlink()
    with pytest.raises(DatasetError, match=r"W\.npy: missing dataset file$"):
        read_dataset(broken)


def test_wrong_shape_names_file_and_expected_shape(synth_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "d"
    shutil.copytree(synth_dir, broken)
    np.save(broken / "test" / "y.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(DatasetError, match=r"test/y\.npy: shape must be"):
        read_dataset(broken)


def test_progress_without_a_tty_prints_a_line_every_ten_percent() -> None:
    stream = io.StringIO()
    bar = Progress(100, desc="train", bar=False, stream=stream)
    for _ in range(100):
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("train: 100/100 (100%)")
