"""A small synthetic dataset in the simulator's file layout (random graph, Euler-integrated ODE).

Lets the trainer tests run without the simulator: ``tau dv/dt = -v + V_rest + W ReLU(v) + I``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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
    """Write a dataset folder at ``out`` and return it."""
    rng = np.random.default_rng(seed)
    types = np.sort(rng.integers(0, n_types, n_neurons))
    types[:n_input] = 0
    pairs = rng.choice(n_neurons * n_neurons, size=n_edges, replace=False)
    src, dst = pairs // n_neurons, pairs % n_neurons
    keep = src != dst
    ei = np.stack([src[keep], dst[keep]]).astype(np.int64)
    W = (rng.standard_normal(ei.shape[1]) * 0.4).astype(np.float32)
    tau_t = rng.uniform(0.05, 0.3, n_types)
    vr_t = rng.uniform(0.1, 0.8, n_types)
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
    (out / "meta.json").write_text(json.dumps({"delta_t": dt, "ground_truth": "synthetic-test"}))
    return out
