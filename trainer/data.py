"""A simulated dataset as the trainer sees it: the simulator's reader plus what training needs on top.

``simulator.dataset.open_dataset`` reads and checks the layout (memmaps, one-line ``SimulatorError``).
Here the small ground-truth arrays are copied into memory with the dtypes the model uses (float32 parameters,
int64 indices), edge ids are checked against the neuron count, and the large splits stay memory-mapped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.dataset import STATIC_ARRAYS, FlyVisDataset, Split, open_dataset
from simulator.errors import SimulatorError

__all__ = ["Dataset", "DatasetError", "Split", "global_voltage_std", "read_dataset"]

# dtypes of the in-memory ground truth; arrays not listed keep their stored dtype
_DTYPES: dict[str, type[np.generic]] = {
    "edge_index": np.int64,
    "types": np.int64,
    "input_index": np.int64,
    "W": np.float32,
    "tau": np.float32,
    "V_rest": np.float32,
}


class DatasetError(SimulatorError):
    """A dataset the simulator's reader accepts but the trainer cannot use (one line naming the file)."""


@dataclass(frozen=True)
class Dataset(FlyVisDataset):
    """A FlyVisDataset whose ground-truth arrays are in memory; the train/test splits stay memmaps."""

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def delta_t(self) -> float | None:
        dt = self.meta.get("delta_t")
        return float(dt) if dt is not None else None


def read_dataset(path: str | Path) -> Dataset:
    """Open a dataset folder for training; one-line ``SimulatorError`` if it is missing or inconsistent."""
    ds = open_dataset(path)
    arrays = {k: np.array(getattr(ds, k), dtype=_DTYPES.get(k)) for k in STATIC_ARRAYS}
    ei = arrays["edge_index"]
    if ei.size and (ei.min() < 0 or ei.max() >= ds.n_neurons):
        raise DatasetError(f"{ds.path / 'edge_index.npy'}: node ids must lie in [0, {ds.n_neurons})")
    fields = {f.name: getattr(ds, f.name) for f in dataclasses.fields(ds)}
    return Dataset(**(fields | arrays))


def global_voltage_std(voltage: np.ndarray, max_frames: int = 4096) -> float:
    """Std of all training voltages (subsampled in time), the base of ``xnorm``."""
    step = max(1, voltage.shape[0] // max_frames)
    return float(np.asarray(voltage[::step], dtype=np.float64).std())
