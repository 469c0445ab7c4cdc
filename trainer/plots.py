"""Slot images (matplotlib Agg, each well under 1 Mpx): W, embedding, tau, V_rest, loss, R2 trajectory, rollout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiment.atomic import atomic_write_bytes
from experiment.records import Phase, R2Row
from trainer.metrics import r2_score

DPI = 100
SIZE = (6.4, 5.2)  # 640 x 520 px
PHASE_COLOURS = {"W": "#4c72b0", "V_rest": "#dd8452"}
MAX_SCATTER = 50_000


def _save(fig: plt.Figure, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _subsample(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_SCATTER:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_SCATTER, replace=False))


def scatter_true_learned(
    true: np.ndarray, learned: np.ndarray, title: str, label: str, path: Path, outlier: float | None = None
) -> None:
    """Learned against true with the identity line and R2 in the title.

    With ``outlier``, points with |learned - true| > outlier are left out of the plot and of the R2 (the
    connectivity_R2 rule), and the title says how many.
    """
    true, learned = np.asarray(true, dtype=np.float64), np.asarray(learned, dtype=np.float64)
    keep = np.ones(true.shape[0], dtype=bool) if outlier is None else np.abs(learned - true) <= outlier
    r2 = r2_score(learned[keep], true[keep])
    t, lrn = true[keep], learned[keep]
    idx = _subsample(t.shape[0])
    t, lrn = t[idx], lrn[idx]
    ok = np.isfinite(t) & np.isfinite(lrn)
    fig, ax = plt.subplots(figsize=SIZE)
    ax.scatter(t[ok], lrn[ok], s=3, alpha=0.4, lw=0)
    if ok.any():
        lo, hi = float(np.min(t[ok])), float(np.max(t[ok]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"learned {label}")
    dropped = f", {int((~keep).sum())} more than {outlier:g} off left out" if outlier is not None else ""
    ax.set_title(f"{title}  (R2 = {r2:.3f}, n = {int(keep.sum())}{dropped})", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def embedding_plot(embedding: np.ndarray, types: np.ndarray, type_names: Sequence[str], path: Path) -> None:
    """First two embedding dimensions, one colour per cell type."""
    emb = np.asarray(embedding)
    y = emb[:, 1] if emb.shape[1] > 1 else np.zeros(emb.shape[0])
    fig, ax = plt.subplots(figsize=SIZE)
    cmap = plt.get_cmap("nipy_spectral")
    n_types = max(int(types.max()) + 1, 1)
    ax.scatter(emb[:, 0], y, c=cmap(types / max(n_types - 1, 1)), s=6, alpha=0.8, lw=0)
    if n_types <= 12:
        for k in range(n_types):
            sel = types == k
            if sel.any():
                name = type_names[k] if k < len(type_names) else str(k)
                ax.annotate(name, (emb[sel, 0].mean(), y[sel].mean()), fontsize=7)
    ax.set_xlabel("a[0]")
    ax.set_ylabel("a[1]" if emb.shape[1] > 1 else "")
    ax.set_title(f"embedding coloured by cell type ({n_types} types)")
    fig.tight_layout()
    _save(fig, path)


def loss_plot(losses: np.ndarray, path: Path) -> None:
    """Training loss per iteration (log scale) with a running mean."""
    loss = np.asarray(losses, dtype=np.float64)
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(np.arange(1, loss.size + 1), loss, lw=0.4, alpha=0.4, label="loss")
    win = max(1, loss.size // 100)
    if loss.size >= win:
        smooth = np.convolve(loss, np.ones(win) / win, mode="valid")
        ax.plot(np.arange(win, loss.size + 1), smooth, lw=1.5, label=f"mean over {win}")
    if np.all(loss[np.isfinite(loss)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    _save(fig, path)


def r2_trajectory_plot(rows: Sequence[R2Row], spans: Sequence[tuple[int, int, Phase]], niter: int, path: Path) -> None:
    """conn_R2 at the logged checkpoints over global iterations, W / V_rest phases shaded."""
    fig, ax = plt.subplots(figsize=SIZE)
    seen: set[str] = set()
    for start, end, phase in spans:
        if phase in PHASE_COLOURS:
            label = f"{phase}-phase" if phase not in seen else None
            seen.add(phase)
            ax.axvspan(start, end, color=PHASE_COLOURS[phase], alpha=0.15, lw=0, label=label)
    x = [r.epoch * niter + r.iteration for r in rows]
    ax.plot(x, [r.connectivity_r2 for r in rows], "o-", color="k", ms=4, label="connectivity R2")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("iteration")
    ax.set_ylabel("connectivity R2")
    ax.legend(loc="lower right")
    ax.set_title("connectivity R2 during training")
    fig.tight_layout()
    _save(fig, path)


def rollout_plot(
    pred: np.ndarray,
    true: np.ndarray,
    types: np.ndarray,
    dt: float,
    path: Path,
    n_show: int = 6,
    diverged: bool = False,
) -> None:
    """True (solid) and rolled-out (dashed) voltage of a few neurons of different types."""
    _, first = np.unique(types, return_index=True)
    pick = first[np.linspace(0, first.size - 1, min(n_show, first.size)).astype(int)]
    t = np.arange(true.shape[0]) * dt
    fig, ax = plt.subplots(figsize=SIZE)
    for k, i in enumerate(pick):
        off = 1.5 * k
        ax.plot(t, true[:, i] + off, color=f"C{k}", lw=1.0)
        ax.plot(t, pred[:, i] + off, color=f"C{k}", lw=1.0, ls="--")
    if diverged and true.size:  # keep the true traces readable: the y range stops one trace height beyond them
        shown = true[:, pick] + 1.5 * np.arange(len(pick))
        lo, hi = float(np.min(shown)), float(np.max(shown))
        ax.set_ylim(lo - 1.5, hi + 1.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("voltage (offset per neuron)")
    state = " DIVERGED (hit the +-100 clamp)" if diverged else ""
    ax.set_title(f"test rollout{state}: true (solid) vs GNN (dashed)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
