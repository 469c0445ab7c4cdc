"""Statistics that compare ground truths: type-level gains and stability margins, simulated activity.

Used by ``benchmarks/compare_ground_truth.py`` and tests. The short simulation it measures activity with
(``procedural_run``) lives in simulator.ground_truth, whose calibration runs it too: this module sits above.
"""

from __future__ import annotations

import numpy as np

from simulator.connectome import Connectome
from simulator.ground_truth import GroundTruth, procedural_run


def type_gain_matrix(W: np.ndarray, con: Connectome) -> np.ndarray:
    """(T, T) mean input per target neuron [target type, source type] summed over the edges of ``W``."""
    src, dst = con.edge_index
    n_types = int(con.json_type.max()) + 1
    G = np.zeros((n_types, n_types))
    np.add.at(G, (con.json_type[dst], con.json_type[src]), np.asarray(W, dtype=np.float64))
    per_type = np.bincount(con.json_type, minlength=n_types)
    return G / np.maximum(per_type, 1)[:, None]


def type_level_stats(gt: GroundTruth, con: Connectome) -> dict[str, float]:
    """Input gain per neuron and the spectrum of the type-level gain matrix (all ReLUs active)."""
    W = gt.W.astype(np.float64)
    in_abs = np.bincount(con.edge_index[1], weights=np.abs(W), minlength=con.n_neurons)[con.n_input :]
    signed = np.linalg.eigvals(type_gain_matrix(W, con))
    excitatory = np.linalg.eigvals(type_gain_matrix(np.clip(W, 0, None), con))
    return {
        "input sum of abs W per neuron, median": float(np.median(in_abs)),
        "input sum of abs W per neuron, 90th pct": float(np.quantile(in_abs, 0.9)),
        "excitatory Perron root (type level)": float(excitatory.real.max()),
        "signed type-level max abs eigenvalue": float(np.abs(signed).max()),
        "signed type-level max real eigenvalue": float(signed.real.max()),
    }


def activity_stats(gt: GroundTruth, con: Connectome, n_frames: int, seed: int = 1) -> dict[str, float]:
    """Voltage statistics of a procedural-stimulus simulation with the protocol's noise (0.05)."""
    V, Y = procedural_run(gt, con, n_frames, seed)
    return {
        "voltage std per neuron, median": float(np.median(V.std(0))),
        "drift y rms": float(np.sqrt((Y**2).mean())),
        "neurons never above 0 (%)": float((V.max(0) <= 0).mean() * 100),
        "max abs v": float(np.abs(V).max()),
    }
