"""activity.png: voltage traces of representative neurons (centre column) of selected cell types."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiment.atomic import atomic_write_bytes

TRACE_TYPES = ("R1", "L1", "L2", "L4", "Mi1", "Mi9", "Tm3", "Tm9", "T4a", "T5a", "TmY3", "Lawf1")
MAX_FRAMES = 800


def centre_neurons(
    type_names: list[str], types: np.ndarray, positions: np.ndarray, wanted: Sequence[str] = TRACE_TYPES
) -> dict[str, int]:
    """Index of the neuron closest to the lattice centre for each type of ``wanted`` present."""
    dist = np.abs(positions).sum(1)
    out = {}
    for name in wanted:
        if name in type_names:
            idx = np.flatnonzero(types == type_names.index(name))
            if len(idx):
                out[name] = int(idx[np.argmin(dist[idx])])
    return out


def write_activity_png(
    path: Path, voltage: np.ndarray, stimulus: np.ndarray, neurons: dict[str, int], delta_t: float, title: str
) -> None:
    """Stacked traces (one row per type) plus the centre photoreceptor input; ~0.8 Mpx PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_n = min(len(voltage), MAX_FRAMES)
    t = np.arange(t_n) * delta_t
    rows = len(neurons) + 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 8), dpi=100, sharex=True)
    centre_input = neurons.get("R1", 0)
    axes[0].plot(t, stimulus[:t_n, centre_input], color="0.3", lw=0.8)
    axes[0].set_ylabel("input I", rotation=0, ha="right", fontsize=8)
    for ax, (name, idx) in zip(axes[1:], neurons.items(), strict=True):
        ax.plot(t, voltage[:t_n, idx], lw=0.8)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.margins(x=0)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
