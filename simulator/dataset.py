"""The on-disk dataset contract between the simulator and the trainer, and its memory-mapped reader.

Layout (all .npy, memory-mappable)::

    DIR/meta.json  DIR/type_names.json  DIR/edge_index.npy (2, E) int64, row 0 = source
    DIR/W.npy (E,)  DIR/tau.npy (N,)  DIR/V_rest.npy (N,)  DIR/types.npy (N,) int64
    DIR/positions.npy (N, 2) (u, v)  DIR/input_index.npy (n_input,) int64
    DIR/{train,test}/{voltage,y,stimulus}.npy  DIR/activity.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import SimulatorError

FORMAT = "flyvis-agent-dataset/1"
META = "meta.json"
TYPE_NAMES = "type_names.json"
STATIC_ARRAYS = ("edge_index", "W", "tau", "V_rest", "types", "positions", "input_index")
SPLITS = ("train", "test")
SPLIT_ARRAYS = ("voltage", "y", "stimulus")
ACTIVITY_PNG = "activity.png"


@dataclass(frozen=True)
class Split:
    """Frames of one split: observed state, clean drift at it, photoreceptor input (memmaps)."""

    voltage: np.ndarray  # (T, N)
    y: np.ndarray  # (T, N)
    stimulus: np.ndarray  # (T, n_input)

    @property
    def n_frames(self) -> int:
        return int(self.voltage.shape[0])


@dataclass(frozen=True)
class FlyVisDataset:
    """A generated dataset opened read-only as numpy memmaps plus its metadata."""

    path: Path
    meta: dict[str, Any]
    type_names: list[str]
    edge_index: np.ndarray
    W: np.ndarray
    tau: np.ndarray
    V_rest: np.ndarray
    types: np.ndarray
    positions: np.ndarray
    input_index: np.ndarray
    train: Split
    test: Split

    @property
    def n_input(self) -> int:
        return int(self.meta["n_input"])

    @property
    def n_neurons(self) -> int:
        return int(self.meta["n_neurons"])


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise SimulatorError(f"{path}: missing dataset file")
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise SimulatorError(f"{path}: corrupt .npy file ({err})") from None


def _check(cond: bool, path: Path, rule: str) -> None:
    if not cond:
        raise SimulatorError(f"{path}: {rule}")


def open_dataset(path: str | Path) -> FlyVisDataset:
    """Open a dataset folder; one-line SimulatorError if it is missing, incomplete or inconsistent."""
    root = Path(path)
    _check(root.is_dir(), root, "dataset folder does not exist")
    try:
        meta = json.loads((root / META).read_text())
        names = json.loads((root / TYPE_NAMES).read_text())
    except FileNotFoundError as err:
        raise SimulatorError(f"{err.filename}: missing dataset file") from None
    except (OSError, ValueError) as err:
        raise SimulatorError(f"{root / META}: unreadable metadata ({err})") from None
    _check(meta.get("format") == FORMAT, root / META, f"format must be {FORMAT!r}, got {meta.get('format')!r}")
    arrays = {k: _load(root / f"{k}.npy") for k in STATIC_ARRAYS}
    splits = {s: Split(**{k: _load(root / s / f"{k}.npy") for k in SPLIT_ARRAYS}) for s in SPLITS}
    n, e, n_in = meta["n_neurons"], meta["n_edges"], meta["n_input"]
    _check(arrays["edge_index"].shape == (2, e), root / "edge_index.npy", f"shape must be (2, {e})")
    for key in ("tau", "V_rest", "types"):
        _check(arrays[key].shape == (n,), root / f"{key}.npy", f"shape must be ({n},)")
    _check(arrays["W"].shape == (e,), root / "W.npy", f"shape must be ({e},)")
    _check(len(names) == meta["n_types"], root / TYPE_NAMES, f"must list {meta['n_types']} type names")
    for s, split in splits.items():
        t = meta["n_frames"][s]
        for key, width in (("voltage", n), ("y", n), ("stimulus", n_in)):
            arr = getattr(split, key)
            _check(arr.shape == (t, width), root / s / f"{key}.npy", f"shape must be ({t}, {width}), got {arr.shape}")
    return FlyVisDataset(path=root, meta=meta, type_names=names, train=splits["train"], test=splits["test"], **arrays)
