"""The ground-truth ODE: ``tau dv/dt = -v + V_rest + sum_j W_ij ReLU(v_j) + I`` (MODEL.md section 3).

``drift`` is the pure reference function (index_add over edges, any leading batch dims) shared with the
trainer and the tests. ``EulerStepper`` is the fast path for simulation: the weights as a CSR matrix
(rows = targets) and preallocated buffers, so one step is a sparse mat-vec and a few in-place ops.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch


def drift(
    v: torch.Tensor,
    stimulus_full: torch.Tensor,
    W: torch.Tensor,
    edge_index: torch.Tensor,
    tau: torch.Tensor,
    V_rest: torch.Tensor,
) -> torch.Tensor:
    """dv/dt for states ``v`` (..., N); ``stimulus_full`` (..., N) is I (zero except photoreceptors)."""
    src, dst = edge_index[0], edge_index[1]
    msg = W * torch.relu(v.index_select(-1, src))
    agg = torch.zeros_like(v).index_add_(-1, dst, msg)
    return (-v + V_rest + agg + stimulus_full) / tau


def csr_weights(W: torch.Tensor, edge_index: torch.Tensor, n_neurons: int) -> torch.Tensor:
    """The (N, N) sparse CSR matrix with ``A[target, source] = W`` (duplicates summed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        coo = torch.sparse_coo_tensor(edge_index.flip(0), W, (n_neurons, n_neurons), check_invariants=False)
        return coo.coalesce().to_sparse_csr()


class EulerStepper:
    """Explicit Euler integrator of the ODE on one device, float32, allocation-light per step.

    ``backend="auto"``: on the CPU the weights are a scipy CSR matrix (torch's CPU CSR mat-vec is ~50x
    slower, see benchmarks/bench_simulator.py) and the step runs on numpy views of the torch buffers; on CUDA
    a torch sparse CSR matrix times a column vector (cuSPARSE). ``backend="torch"`` forces the torch path on
    any device (the GPU path, testable on the CPU); ``"numpy"`` the scipy path (CPU only).
    """

    def __init__(
        self,
        W: torch.Tensor,
        edge_index: torch.Tensor,
        tau: torch.Tensor,
        V_rest: torch.Tensor,
        n_input: int,
        delta_t: float,
        backend: Literal["auto", "numpy", "torch"] = "auto",
    ) -> None:
        n = int(tau.shape[0])
        self.n_neurons, self.n_input, self.delta_t = n, n_input, float(delta_t)
        self.device = tau.device
        if backend == "numpy" and self.device.type != "cpu":
            raise ValueError(f"backend 'numpy' needs CPU tensors, got {self.device}")
        self.use_numpy = backend == "numpy" or (backend == "auto" and self.device.type == "cpu")
        self.inv_tau = (1.0 / tau.float()).contiguous()
        self.V_rest = V_rest.float().contiguous()
        if self.use_numpy:
            import scipy.sparse

            ei = edge_index.cpu().numpy()
            self._scipy = scipy.sparse.csr_matrix((W.detach().float().cpu().numpy(), (ei[1], ei[0])), shape=(n, n))
            self._scipy.sum_duplicates()
        else:
            self.matrix = csr_weights(W.float(), edge_index, n)

    def drift_into(self, v: torch.Tensor, stimulus_input: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write dv/dt at state ``v`` (N,) with photoreceptor input ``stimulus_input`` (n_input,) into ``out``."""
        if self.use_numpy:
            self._drift_numpy(v.numpy(), stimulus_input.numpy(), out.numpy())
            return out
        agg = torch.sparse.mm(self.matrix, torch.relu(v).unsqueeze(1)).squeeze(1)
        torch.sub(agg, v, out=out)
        out.add_(self.V_rest)
        out[: self.n_input].add_(stimulus_input)
        return out.mul_(self.inv_tau)

    def _drift_numpy(self, v: np.ndarray, stim: np.ndarray, out: np.ndarray) -> None:
        agg = self._scipy @ np.maximum(v, 0.0)
        np.subtract(agg, v, out=out)
        out += self.V_rest.numpy()
        out[: self.n_input] += stim
        out *= self.inv_tau.numpy()

    def steady_state(self, v: torch.Tensor, grey: float, n_steps: int) -> torch.Tensor:
        """Integrate noise-free under uniform grey input for ``n_steps``, in place; returns ``v``."""
        stim = torch.full((self.n_input,), grey, dtype=torch.float32, device=v.device)
        dv = torch.empty_like(v)
        for _ in range(n_steps):
            v.add_(self.drift_into(v, stim, dv), alpha=self.delta_t)
        return v

    def run(
        self,
        v: torch.Tensor,
        stimulus_input: torch.Tensor,
        noise: torch.Tensor | None,
        voltage_out: torch.Tensor,
        drift_out: torch.Tensor,
    ) -> torch.Tensor:
        """Simulate T steps from ``v`` in place; record the observed state and its clean drift per step.

        ``stimulus_input`` (T, n_input); ``noise`` (T, N) already scaled by the noise level, or None;
        ``voltage_out``/``drift_out`` (T, N). Step: y_t = f(v_t), v_{t+1} = v_t + dt*y_t + noise_t.
        """
        if self.use_numpy:
            self._run_numpy(v.numpy(), stimulus_input.numpy(), None if noise is None else noise.numpy(),
                            voltage_out.numpy(), drift_out.numpy())  # fmt: skip
            return v
        for t in range(stimulus_input.shape[0]):
            voltage_out[t].copy_(v)
            self.drift_into(v, stimulus_input[t], drift_out[t])
            v.add_(drift_out[t], alpha=self.delta_t)
            if noise is not None:
                v.add_(noise[t])
        return v

    def _run_numpy(
        self, v: np.ndarray, stim: np.ndarray, noise: np.ndarray | None, v_out: np.ndarray, y_out: np.ndarray
    ) -> None:
        dt = np.float32(self.delta_t)
        for t in range(stim.shape[0]):
            v_out[t] = v
            self._drift_numpy(v, stim[t], y_out[t])
            v += dt * y_out[t]
            if noise is not None:
                v += noise[t]
