"""A simulated dataset as the trainer sees it, read from the simulator's file layout.

Layout (the simulator's contract): ``meta.json``, ``type_names.json``, ``edge_index.npy`` (2, E) with
row 0 = source, ``W.npy``, ``tau.npy``, ``V_rest.npy``, ``types.npy``, ``positions.npy``,
``input_index.npy`` and ``train/`` + ``test/`` each with ``voltage.npy``, ``y.npy`` (T, N) and
``stimulus.npy`` (T, n_input). Large arrays are memory-mapped, never loaded whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """A dataset folder is missing a file or has inconsistent shapes (one line naming the file)."""


@dataclass(frozen=True)
class Split:
    """One recorded stretch of activity: voltage and clean drift y (T, N), photoreceptor input (T, n_input)."""

    voltage: np.ndarray
    y: np.ndarray
    stimulus: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.voltage.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Ground truth graph and parameters plus the train and test splits."""

    path: Path
    train: Split
    test: Split
    edge_index: np.ndarray
    W: np.ndarray
    tau: np.ndarray
    V_rest: np.ndarray
    types: np.ndarray
    type_names: list[str]
    positions: np.ndarray
    n_input: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        return int(self.V_rest.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def delta_t(self) -> float | None:
        dt = self.meta.get("delta_t")
        return float(dt) if dt is not None else None


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    if not path.exists():
        raise DatasetError(f"{path}: missing dataset file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable array: {err}") from None


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise DatasetError(f"{path}: missing dataset file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable JSON: {err}") from None


def _read_split(folder: Path, n_neurons: int, n_input: int) -> Split:
    split = Split(
        voltage=_load(folder / "voltage.npy", mmap=True),
        y=_load(folder / "y.npy", mmap=True),
        stimulus=_load(folder / "stimulus.npy", mmap=True),
    )
    t = split.voltage.shape[0]
    for name, arr, width in (("voltage", split.voltage, n_neurons), ("y", split.y, n_neurons)):
        if arr.ndim != 2 or arr.shape != (t, width):
            raise DatasetError(f"{folder / (name + '.npy')}: shape must be ({t}, {width}), got {arr.shape}")
    if split.stimulus.ndim != 2 or split.stimulus.shape != (t, n_input):
        raise DatasetError(f"{folder / 'stimulus.npy'}: shape must be ({t}, {n_input}), got {split.stimulus.shape}")
    return split


def read_dataset(path: str | Path) -> Dataset:
    """Open a dataset folder; checks every shape against the neuron, edge and input counts."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    edge_index = _load(root / "edge_index.npy").astype(np.int64, copy=False)
    v_rest = _load(root / "V_rest.npy")
    n = int(v_rest.shape[0])
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise DatasetError(f"{root / 'edge_index.npy'}: shape must be (2, E), got {edge_index.shape}")
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        raise DatasetError(f"{root / 'edge_index.npy'}: node ids must lie in [0, {n})")
    w = _load(root / "W.npy")
    if w.shape != (edge_index.shape[1],):
        raise DatasetError(f"{root / 'W.npy'}: shape must be ({edge_index.shape[1]},), got {w.shape}")
    tau = _load(root / "tau.npy")
    types = _load(root / "types.npy").astype(np.int64, copy=False)
    for name, arr in (("tau.npy", tau), ("types.npy", types)):
        if arr.shape != (n,):
            raise DatasetError(f"{root / name}: shape must be ({n},), got {arr.shape}")
    input_index = _load(root / "input_index.npy")
    n_input = int(input_index.shape[0])
    names = _read_json(root / "type_names.json")
    if not isinstance(names, list):
        raise DatasetError(f"{root / 'type_names.json'}: must be a JSON list of type names")
    meta = _read_json(root / "meta.json")
    if not isinstance(meta, dict):
        raise DatasetError(f"{root / 'meta.json'}: must be a JSON object")
    return Dataset(
        path=root,
        train=_read_split(root / "train", n, n_input),
        test=_read_split(root / "test", n, n_input),
        edge_index=edge_index,
        W=w.astype(np.float32, copy=False),
        tau=tau.astype(np.float32, copy=False),
        V_rest=v_rest.astype(np.float32, copy=False),
        types=types,
        type_names=[str(x) for x in names],
        positions=_load(root / "positions.npy"),
        n_input=n_input,
        meta=meta,
    )


def voltage_stats(voltage: np.ndarray, max_frames: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron mean and std of the voltage over up to ``max_frames`` evenly spaced frames."""
    t = voltage.shape[0]
    step = max(1, t // max_frames)
    sample = np.asarray(voltage[::step], dtype=np.float64)
    return sample.mean(axis=0).astype(np.float32), sample.std(axis=0).astype(np.float32)


def global_voltage_std(voltage: np.ndarray, max_frames: int = 4096) -> float:
    """Std of all training voltages (subsampled in time), the base of ``xnorm``."""
    step = max(1, voltage.shape[0] // max_frames)
    return float(np.asarray(voltage[::step], dtype=np.float64).std())
