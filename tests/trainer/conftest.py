"""Fixtures for the trainer tests: a small synthetic dataset in the simulator layout, an oracle GNN."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from experiment.config import ExperimentConfig, GraphModelConfig
from simulator.dataset import FORMAT
from trainer.data import Dataset, read_dataset
from trainer.model import FlyVisGNN


def drift(v: np.ndarray, stim_full: np.ndarray, W: np.ndarray, ei: np.ndarray, tau: np.ndarray, v_rest: np.ndarray):
    """dv/dt for voltages v (..., N); edges ei (2, E) with row 0 = source."""
    msg = np.zeros_like(v)
    np.add.at(msg.T, ei[1], (W * np.maximum(v[..., ei[0]], 0.0)).T)
    return (-v + v_rest + msg + stim_full) / tau


def _simulate(n_frames, W, ei, tau, v_rest, n_input, noise, dt, rng):
    n = tau.shape[0]
    t = np.arange(n_frames) * dt
    phase = rng.uniform(0, 2 * np.pi, n_input)
    stim = (0.5 + 0.4 * np.sin(2 * np.pi * 1.3 * t[:, None] + phase)).astype(np.float32)
    v = v_rest.astype(np.float64).copy()
    volt = np.empty((n_frames, n), np.float32)
    ys = np.empty((n_frames, n), np.float32)
    for k in range(n_frames):
        full = np.zeros(n)
        full[:n_input] = stim[k]
        dv = drift(v, full, W, ei, tau, v_rest)
        volt[k], ys[k] = v, dv
        v = v + dt * dv + noise * rng.standard_normal(n)
    return volt, ys, stim


def make_dataset(
    out: Path,
    *,
    n_neurons: int = 60,
    n_types: int = 5,
    n_input: int = 6,
    n_edges: int = 360,
    n_frames: int = 400,
    n_test: int = 120,
    noise: float = 0.05,
    dt: float = 0.02,
    seed: int = 0,
) -> Path:
    """Write a dataset folder at ``out`` in the simulator's full layout (meta.json as open_dataset needs) and return it."""
    rng = np.random.default_rng(seed)
    types = np.sort(rng.integers(0, n_types, n_neurons))
    types[:n_input] = 0
    pairs = rng.choice(n_neurons * n_neurons, size=n_edges, replace=False)
    src, dst = pairs // n_neurons, pairs % n_neurons
    keep = src != dst
    ei = np.stack([src[keep], dst[keep]]).astype(np.int64)
    W = rng.normal(0.08, 0.08, ei.shape[1]).astype(np.float32)
    tau_t = rng.uniform(0.05, 0.3, n_types)
    vr_t = rng.uniform(0.6, 1.0, n_types)
    tau, v_rest = tau_t[types].astype(np.float32), vr_t[types].astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in {
        "edge_index": ei,
        "W": W,
        "tau": tau,
        "V_rest": v_rest,
        "types": types.astype(np.int64),
        "positions": rng.uniform(-1, 1, (n_neurons, 2)).astype(np.float32),
        "input_index": np.arange(n_input, dtype=np.int64),
    }.items():
        np.save(out / f"{name}.npy", arr)
    for split, frames, level in (("train", n_frames, noise), ("test", n_test, 0.0)):
        (out / split).mkdir(exist_ok=True)
        volt, ys, stim = _simulate(frames, W, ei, tau, v_rest, n_input, level, dt, rng)
        for name, arr in (("voltage", volt), ("y", ys), ("stimulus", stim)):
            np.save(out / split / f"{name}.npy", arr)
    (out / "type_names.json").write_text(json.dumps([f"T{k}" for k in range(n_types)]))
    meta = {
        "format": FORMAT,
        "n_neurons": n_neurons,
        "n_input": n_input,
        "n_edges": int(ei.shape[1]),
        "n_types": n_types,
        "n_frames": {"train": n_frames, "test": n_test},
        "delta_t": dt,
        "ground_truth": "synthetic-test",
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return out


class OracleGNN(FlyVisGNN):
    """The true ODE written as a FlyVisGNN: a = (tau, V_rest), edge_fn = ReLU(v), phi = the drift."""

    def edge_fn(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.relu(v)

    def phi(self, v: torch.Tensor, a: torch.Tensor, msg: torch.Tensor, stim: torch.Tensor) -> torch.Tensor:
        return (-v + a[..., 1] + msg + stim) / a[..., 0]


def oracle_from(data: Dataset) -> OracleGNN:
    """An OracleGNN whose W, tau and V_rest are the dataset's ground truth."""
    cfg = GraphModelConfig(hidden_dim=4, hidden_dim_update=4)
    model = OracleGNN(cfg, torch.from_numpy(data.edge_index), data.n_neurons, data.n_input, edge_mode="node")
    with torch.no_grad():
        model.W.copy_(torch.from_numpy(np.asarray(data.W)))
        model.a.copy_(torch.from_numpy(np.stack([data.tau, data.V_rest], axis=1)))
    return model


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-neuron synthetic dataset (train with noise 0.05, test without)."""
    return make_dataset(tmp_path_factory.mktemp("synth") / "data")


@pytest.fixture(scope="session")
def synth(synth_dir: Path) -> Dataset:
    return read_dataset(synth_dir)


@pytest.fixture
def small_cfg() -> ExperimentConfig:
    """Small MLPs, few iterations, no L1 (fast and learns on a 60-neuron graph)."""
    cfg = ExperimentConfig(dataset="test")
    cfg.graph_model.hidden_dim = 16
    cfg.graph_model.hidden_dim_update = 16
    t = cfg.training
    t.n_iterations = 20
    t.coeff_edge_weight_L1 = 0.0
    t.coeff_phi_weight_L1 = 0.0
    t.n_rollout_frames = 50
    t.cluster_n_components = 5
    t.seed = 7
    return cfg


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One torch thread per test (tiny tensors; 2 threads oversubscribe a busy 2-core box), then restore."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def oracle(synth: Dataset) -> OracleGNN:
    """The ground-truth model of the synthetic dataset."""
    return oracle_from(synth)
