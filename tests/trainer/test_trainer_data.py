"""Dataset reading: shapes are checked, errors are one line naming the file; progress output."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import SimulatorError
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
    with pytest.raises(SimulatorError, match=r"W\.npy: missing dataset file$"):
        read_dataset(broken)


def test_wrong_shape_names_file_and_expected_shape(synth_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "d"
    shutil.copytree(synth_dir, broken)
    np.save(broken / "test" / "y.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(SimulatorError, match=r"test/y\.npy: shape must be"):
        read_dataset(broken)


def test_static_arrays_are_in_memory_with_model_dtypes(synth_dir: Path) -> None:
    data = read_dataset(synth_dir)
    assert not isinstance(data.W, np.memmap) and data.W.dtype == np.float32 and data.W.flags.writeable
    assert data.edge_index.dtype == np.int64 and data.types.dtype == np.int64 and data.tau.dtype == np.float32


def test_edge_id_out_of_range_names_edge_index(synth_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "d"
    shutil.copytree(synth_dir, broken)
    ei = np.load(broken / "edge_index.npy")
    ei[1, 0] = 10_000
    np.save(broken / "edge_index.npy", ei)
    with pytest.raises(DatasetError, match=r"edge_index\.npy: node ids must lie in \[0, 60\)$"):
        read_dataset(broken)


def test_progress_without_a_tty_prints_a_line_every_ten_percent() -> None:
    stream = io.StringIO()
    bar = Progress(100, desc="train", bar=False, stream=stream)
    for _ in range(100):
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("train: 100/100 (100%)")
