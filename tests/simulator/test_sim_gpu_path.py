"""The GPU code path of the simulator (torch sparse CSR, ``backend="torch"``) against the CPU one (scipy).

Run on the CPU: the torch path is the code CUDA runs. Bit-for-bit equality is not required (the mat-vec sums
in another order; on a GPU the noise comes from another generator), the same statistics are. Tolerances:
same noise, 1,000 steps at extent 1: states within 1e-4; two noise realisations, 4,000 steps: population
mean within 0.01, median per-neuron std within 5 %, mean drift within 0.02.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from experiment.config import SimulationConfig
from simulator.connectome import build_connectome
from simulator.dynamics import EulerStepper
from simulator.generate import generate_dataset
from simulator.ground_truth import load_ground_truth


def _steppers() -> tuple[EulerStepper, EulerStepper, int, int]:
    con = build_connectome(1)
    gt = load_ground_truth("synthetic", con)
    t = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in (gt.W, gt.tau, gt.V_rest)]
    ei = torch.from_numpy(con.edge_index)
    make = lambda b: EulerStepper(t[0], ei, t[1], t[2], con.n_input, 0.02, backend=b)  # noqa: E731
    return make("numpy"), make("torch"), con.n_neurons, con.n_input


def _simulate(stepper: EulerStepper, n: int, n_input: int, steps: int, noise_seed: int) -> tuple[np.ndarray, ...]:
    g = torch.Generator().manual_seed(noise_seed)
    stim = torch.rand(steps, n_input, generator=torch.Generator().manual_seed(0))
    noise = 0.05 * torch.randn(steps, n, generator=g)
    v_out, y_out = torch.empty(steps, n), torch.empty(steps, n)
    v = stepper.V_rest.clone()
    stepper.steady_state(v, 0.5, 50)
    stepper.run(v, stim, noise, v_out, y_out)
    return v_out.numpy(), y_out.numpy()


def test_torch_path_follows_the_numpy_path_under_the_same_noise() -> None:
    numpy_path, torch_path, n, n_input = _steppers()
    assert numpy_path.use_numpy and not torch_path.use_numpy
    v_np, y_np = _simulate(numpy_path, n, n_input, 1000, noise_seed=1)
    v_t, y_t = _simulate(torch_path, n, n_input, 1000, noise_seed=1)
    assert np.abs(v_t - v_np).max() < 1e-4
    assert np.abs(y_t - y_np).max() < 1e-3 * max(1.0, np.abs(y_np).max())


def test_torch_path_has_the_numpy_paths_statistics_under_other_noise() -> None:
    numpy_path, torch_path, n, n_input = _steppers()
    v_np, y_np = _simulate(numpy_path, n, n_input, 4000, noise_seed=1)
    v_t, y_t = _simulate(torch_path, n, n_input, 4000, noise_seed=2)
    assert abs(v_t.mean() - v_np.mean()) < 0.01
    std_np, std_t = np.median(v_np.std(axis=0)), np.median(v_t.std(axis=0))
    assert abs(std_t - std_np) / std_np < 0.05, (std_np, std_t)
    assert abs(y_t.mean() - y_np.mean()) < 0.02


def test_generated_dataset_through_the_torch_path_matches_the_numpy_one(tmp_path: Path) -> None:
    sim = SimulationConfig(extent=1, n_frames=400, n_test_frames=50, steady_state_s=0.2, seed=5)
    out = {b: generate_dataset(sim, tmp_path / b, device="cpu", backend=b) for b in ("numpy", "torch")}
    assert json.loads((out["torch"] / "meta.json").read_text())["backend"] == "torch"
    for split in ("train", "test"):
        a = np.load(out["numpy"] / split / "voltage.npy")
        b = np.load(out["torch"] / split / "voltage.npy")
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
        np.testing.assert_array_equal(np.load(out["numpy"] / split / "stimulus.npy"),
                                      np.load(out["torch"] / split / "stimulus.npy"))  # fmt: skip
