"""Slot images (matplotlib Agg, each well under 1 Mpx): W, embedding, tau, V_rest, loss, R2 trajectory, rollout,
the V_rest lever diagnostic, and ``panel.png``: the slot on one page for the LLM (``slot_panel``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiment.atomic import atomic_write_bytes
from experiment.records import Phase, R2Row
from trainer.diagnostics import VrestLever
from trainer.metrics import r2_score

DPI = 100
SIZE = (6.4, 5.2)  # 640 x 520 px
# panel.png: 1000 x 800 px, activity.png's size, so a batch of panels costs the LLM what a batch of activity.png
# did: (w x h) / 750 = 1,067 tokens per image by the API's estimate
PANEL_SIZE = (10.0, 8.0)
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


def draw_true_learned(
    ax: plt.Axes,
    true: np.ndarray,
    learned: np.ndarray,
    title: str,
    label: str,
    outlier: float | None = None,
    fontsize: float = 10,
    point_size: float = 3,
    compact: bool = False,
) -> None:
    """Learned against true with the identity line and R2 in the title (see ``scatter_true_learned``);
    ``compact``: a shorter title without n."""
    true, learned = np.asarray(true, dtype=np.float64), np.asarray(learned, dtype=np.float64)
    keep = np.ones(true.shape[0], dtype=bool) if outlier is None else np.abs(learned - true) <= outlier
    r2 = r2_score(learned[keep], true[keep])
    t, lrn = true[keep], learned[keep]
    idx = _subsample(t.shape[0])
    t, lrn = t[idx], lrn[idx]
    ok = np.isfinite(t) & np.isfinite(lrn)
    ax.scatter(t[ok], lrn[ok], s=point_size, alpha=0.4, lw=0)
    if ok.any():
        lo, hi = float(np.min(t[ok])), float(np.max(t[ok]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"learned {label}")
    dropped = f", {int((~keep).sum())} more than {outlier:g} off left out" if outlier is not None else ""
    stats = f"R2 = {r2:.3f}, n = {int(keep.sum())}{dropped}"
    if not compact:
        ax.set_title(f"{title}  ({stats})", fontsize=fontsize)
        return
    left_out = f", {int((~keep).sum())} off by > {outlier:g} left out" if outlier is not None else ""
    ax.set_title(f"{title}: R2 = {r2:.3f}{left_out}", fontsize=fontsize)


def scatter_true_learned(
    true: np.ndarray, learned: np.ndarray, title: str, label: str, path: Path, outlier: float | None = None
) -> None:
    """Learned against true with the identity line and R2 in the title.

    With ``outlier``, points with |learned - true| > outlier are left out of the plot and of the R2 (the
    connectivity_R2 rule), and the title says how many.
    """
    fig, ax = plt.subplots(figsize=SIZE)
    draw_true_learned(ax, true, learned, title, label, outlier)
    fig.tight_layout()
    _save(fig, path)


def draw_embedding(
    ax: plt.Axes,
    embedding: np.ndarray,
    types: np.ndarray,
    type_names: Sequence[str],
    label_types: Sequence[str] = (),
    fontsize: float = 10,
) -> None:
    """First two embedding dimensions, one colour per true cell type; names at the centroids of ``label_types``
    (of every type when there are at most 12)."""
    emb = np.asarray(embedding)
    y = emb[:, 1] if emb.shape[1] > 1 else np.zeros(emb.shape[0])
    cmap = plt.get_cmap("nipy_spectral")
    n_types = max(int(types.max()) + 1, 1)
    idx = _subsample(emb.shape[0])
    ax.scatter(emb[idx, 0], y[idx], c=cmap(types[idx] / max(n_types - 1, 1)), s=6, alpha=0.8, lw=0)
    names = [type_names[k] if k < len(type_names) else str(k) for k in range(n_types)]
    shown = set(names) if n_types <= 12 else set(label_types)
    for k, name in enumerate(names):
        sel = types == k
        if name in shown and sel.any():
            ax.annotate(name, (emb[sel, 0].mean(), y[sel].mean()), fontsize=max(fontsize - 3, 6))
    ax.set_xlabel("a[0]")
    ax.set_ylabel("a[1]" if emb.shape[1] > 1 else "")
    ax.set_title(f"embedding a, colour = true cell type ({n_types})", fontsize=fontsize)


def embedding_plot(embedding: np.ndarray, types: np.ndarray, type_names: Sequence[str], path: Path) -> None:
    """First two embedding dimensions, one colour per cell type."""
    fig, ax = plt.subplots(figsize=SIZE)
    draw_embedding(ax, embedding, types, type_names)
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


def draw_r2_trajectory(
    ax: plt.Axes,
    rows: Sequence[R2Row],
    spans: Sequence[tuple[int, int, Phase]],
    niter: int,
    fontsize: float = 10,
    marker_size: float = 4,
    legend: bool = True,
) -> None:
    """conn_R2 at the logged checkpoints over global iterations, W / V_rest phases shaded (without ``legend``
    the title names the shading)."""
    seen: set[str] = set()
    for start, end, phase in spans:
        if phase in PHASE_COLOURS:
            label = f"{phase}-phase" if phase not in seen else None
            seen.add(phase)
            ax.axvspan(start, end, color=PHASE_COLOURS[phase], alpha=0.15, lw=0, label=label)
    x = [r.epoch * niter + r.iteration for r in rows]
    ax.plot(x, [r.connectivity_r2 for r in rows], "o-", color="k", ms=marker_size, label="connectivity R2")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("iteration")
    ax.set_ylabel("connectivity R2")
    if legend:
        ax.legend(loc="lower right")
        ax.set_title("connectivity R2 during training", fontsize=fontsize)
    elif seen:
        ax.set_title("conn R2 at checkpoints (W-phase blue, V_rest orange)", fontsize=fontsize)
    else:  # standard training: one phase, nothing shaded
        ax.set_title("conn R2 at checkpoints", fontsize=fontsize)


def r2_trajectory_plot(rows: Sequence[R2Row], spans: Sequence[tuple[int, int, Phase]], niter: int, path: Path) -> None:
    """conn_R2 at the logged checkpoints over global iterations, W / V_rest phases shaded."""
    fig, ax = plt.subplots(figsize=SIZE)
    draw_r2_trajectory(ax, rows, spans, niter)
    fig.tight_layout()
    _save(fig, path)


def draw_vrest_lever(ax: plt.Axes, lever: VrestLever, fontsize: float = 10, n_named: int = 5) -> None:
    """Per cell type: median lever arm |mu - V_rest| / sigma (x, log) against median |V_rest error| (y); the
    ``n_named`` types with the largest error are named; the Spearman rank correlation is in the title."""
    x, y = np.asarray(lever.lever, dtype=np.float64), np.asarray(lever.error, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    ax.scatter(x[ok], y[ok], s=12, alpha=0.7, lw=0, color="#c44e52")
    for k in np.flatnonzero(ok)[np.argsort(-y[ok])][:n_named]:
        ax.annotate(lever.type_names[k], (x[k], y[k]), fontsize=max(fontsize - 3, 6))
    if ok.any():
        ax.set_xscale("log")
    ax.set_xlabel("lever arm |mu - V_rest| / sigma (median per type)")
    ax.set_ylabel("|V_rest error| (median per type)")
    ax.set_title(f"V_rest error vs lever arm, per type (rho {lever.spearman():.2f})", fontsize=fontsize)


def vrest_lever_plot(lever: VrestLever, path: Path) -> None:
    """``draw_vrest_lever`` as its own image."""
    fig, ax = plt.subplots(figsize=SIZE)
    draw_vrest_lever(ax, lever, n_named=10)
    fig.tight_layout()
    _save(fig, path)


@dataclass(frozen=True)
class TraceStrip:
    """The data strip of the panel: a few neurons' training voltage, their true V_rest, the input they see."""

    names: list[str]
    voltage: np.ndarray  # (T, k)
    v_rest: np.ndarray  # (k,)
    stimulus: np.ndarray  # (T,) photoreceptor input of the centre column
    dt: float
    title: str


def draw_traces(ax: plt.Axes, strip: TraceStrip, names: Sequence[str], with_input: bool, fontsize: float) -> None:
    """One lane per trace, each scaled to its own range (true V_rest included, dotted); the range is printed."""
    lanes = [("input I", strip.stimulus, np.nan)] if with_input else []
    lanes += [(n, strip.voltage[:, strip.names.index(n)], strip.v_rest[strip.names.index(n)]) for n in names]
    t = np.arange(strip.voltage.shape[0]) * strip.dt
    ticks = []
    for k, (name, trace, v_rest) in enumerate(lanes):
        base = len(lanes) - 1 - k
        lo = float(np.nanmin([np.min(trace), v_rest]))
        hi = float(np.nanmax([np.max(trace), v_rest]))
        scale = 0.85 / max(hi - lo, 1e-9)
        colour = "0.3" if name == "input I" else f"C{k % 10}"
        ax.plot(t, base + (trace - lo) * scale, color=colour, lw=0.7)
        if np.isfinite(v_rest):
            ax.axhline(base + (v_rest - lo) * scale, color=colour, lw=0.8, ls=":")
        ax.text(t[-1] if t.size else 0, base + 0.42, f" {hi:.2g}\n {lo:.2g}", fontsize=fontsize - 2.5, va="center")
        ticks.append((base + 0.42, name))
    ax.set_yticks([y for y, _ in ticks], [n for _, n in ticks], fontsize=fontsize - 1)
    ax.set_ylim(-0.1, len(lanes))
    ax.margins(x=0)
    ax.set_xlabel("time (s)")
    ax.tick_params(axis="y", length=0)


def slot_panel(
    path: Path,
    *,
    embedding: np.ndarray,
    types: np.ndarray,
    type_names: Sequence[str],
    w_true: np.ndarray,
    w_learned: np.ndarray,
    w_outlier: float,
    r2_rows: Sequence[R2Row],
    spans: Sequence[tuple[int, int, Phase]],
    niter: int,
    tau: tuple[np.ndarray, np.ndarray],
    v_rest: tuple[np.ndarray, np.ndarray],
    lever: VrestLever,
    strip: TraceStrip,
) -> None:
    """``panel.png`` (PANEL_SIZE at DPI): the embedding coloured by true type, W* against true W, the R2
    trajectory with the phases shaded; learned against true tau and V_rest ((true, learned) pairs), the V_rest
    lever diagnostic; the data strip (centre neurons' training voltage with their true V_rest dotted)."""
    fs = 8.5
    with plt.rc_context({"font.size": fs, "axes.labelsize": fs - 0.5, "xtick.labelsize": fs - 1.5,
                         "ytick.labelsize": fs - 1.5, "axes.titlesize": fs + 0.5}):  # fmt: skip
        fig = plt.figure(figsize=PANEL_SIZE)
        grid = fig.add_gridspec(3, 6, height_ratios=[1.0, 1.0, 1.05])
        top = [fig.add_subplot(grid[r, 2 * c : 2 * c + 2]) for r in (0, 1) for c in range(3)]
        draw_embedding(top[0], embedding, types, type_names, label_types=strip.names, fontsize=fs)
        draw_true_learned(top[1], w_true, w_learned, "W* vs true W", "W", w_outlier, fs, 2, True)
        draw_r2_trajectory(top[2], r2_rows, spans, niter, fs, marker_size=2.5, legend=False)
        draw_true_learned(top[3], tau[0], tau[1], "tau", "tau", None, fs, 4, True)
        draw_true_learned(top[4], v_rest[0], v_rest[1], "V_rest", "V_rest", None, fs, 4, True)
        draw_vrest_lever(top[5], lever, fs)
        half = (len(strip.names) + 1) // 2
        left, right = fig.add_subplot(grid[2, :3]), fig.add_subplot(grid[2, 3:])
        draw_traces(left, strip, strip.names[:half], True, fs)
        draw_traces(right, strip, strip.names[half:], False, fs)
        left.set_title(strip.title, fontsize=fs, loc="left")
        fig.tight_layout(pad=0.4, h_pad=0.6, w_pad=0.4)
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
