"""Figures of a run: the per-block exploration tree, batch R2 trajectories, config spread, metrics.

Every figure is drawn with matplotlib's Agg canvas (no display), kept under ~1.15 megapixels (the size
an LLM image block and a report page both handle well) and written atomically. Each function returns
what it drew, so tests can check the picture's content without looking at pixels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.profile import Profile
from agent.protocol import UCB_C
from agent.run_files import RunFiles
from agent.tree import best_node, ucb_ranking
from experiment.atomic import atomic_write_bytes
from experiment.exploration import ROOT, SlotResult
from experiment.records import METRIC_KEYS, R2_LOG, R2Row, RecordError, read_r2_log
from memory.variance import config_ids

MAX_PIXELS = 1.15e6
MAX_DPI = 110
LABEL_CHARS = 44
PHASE_COLOURS = {"W": "#4c72b0", "V_rest": "#dd8452", "-": "#bbbbbb"}
R2_METRICS = tuple(k for k in METRIC_KEYS if k != "training_time_min")


# ---------------------------------------------------------------------------------------------- helpers


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported on first use (no work at import time)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, max_pixels: float = MAX_PIXELS) -> tuple[int, int]:
    """Write ``fig`` as PNG atomically at a dpi that keeps it under ``max_pixels``; returns (width, height)."""
    plt = _pyplot()
    w_in, h_in = fig.get_size_inches()
    dpi = min(MAX_DPI, math.sqrt(max_pixels / (w_in * h_in)))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return round(w_in * dpi), round(h_in * dpi)


def short_mutation(mutation: str, limit: int = LABEL_CHARS) -> str:
    """A node label's mutation: replicate / baseline forms abbreviated, long diffs cut with an ellipsis."""
    text = " ".join(mutation.split())
    if "robustness re-run of Node" in text:
        return "rep of " + text.rsplit("Node", 1)[1].strip()
    if text.startswith("[none]"):
        return "baseline" if "baseline" in text else "[none]"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tree_layout(parents: dict[int, Any]) -> dict[Any, tuple[float, float]]:
    """Tidy left-to-right layout: x = depth, y = leaf order (parents centred on their children).

    ``parents`` maps node -> parent; a parent that is not a node (or ``root``) hangs the node on the
    ``root`` key, which is placed at depth 0. Children are ordered by node id, so the layout is stable.
    """
    children: dict[Any, list[int]] = {ROOT: []}
    for node in sorted(parents):
        parent = parents[node] if parents[node] in parents and parents[node] != node else ROOT
        children.setdefault(parent, []).append(node)
    pos: dict[Any, tuple[float, float]] = {}
    next_leaf = [0.0]
    placed: set[Any] = set()

    def place(node: Any, depth: int) -> float:
        placed.add(node)
        kids = [k for k in children.get(node, []) if k not in placed]
        if not kids:
            y = next_leaf[0]
            next_leaf[0] += 1.0
        else:
            y = float(np.mean([place(k, depth + 1) for k in kids]))
        pos[node] = (float(depth), y)
        return y

    place(ROOT, 0)
    for node in sorted(parents):  # nodes on a parent cycle (invalid input) still get drawn
        if node not in placed:
            place(node, 1)
    return pos


# ---------------------------------------------------------------------------------------------- tree


def plot_block_tree(
    results: list[SlotResult], block: int, path: str | Path, c: float = UCB_C, profile: Profile | None = None
) -> list[int]:
    """The exploration tree of one block as PNG; returns the node ids drawn (ascending).

    Colour = conn_R2 (failed = 0), size = UCB, circle = new config, square = replicate, X = failed;
    the block's best node (by the tree's score under ``profile``) gets a gold ring; ``root`` (the base config)
    is the black node on the left.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    members = {r.iteration: r for r in results if r.block == block}
    ucb = {e.node: e.ucb for e in ucb_ranking(results, block, c, profile=profile)}
    pos = tree_layout({it: r.parent for it, r in members.items()})
    n_leaves = int(max(y for _, y in pos.values())) + 1
    depth = max(x for x, _ in pos.values())
    fig, ax = plt.subplots(figsize=(min(16.0, 4.0 + 2.9 * depth), min(12.0, 2.2 + 0.62 * n_leaves)))
    for it, r in members.items():
        parent = r.parent if r.parent in members else ROOT
        (x0, y0), (x1, y1) = pos[parent], pos[it]
        ax.plot([x0, x1], [y0, y1], color="#888888", lw=1.2, zorder=1)
        if r.replicate_of in members and r.replicate_of != r.parent:
            xr, yr = pos[r.replicate_of]
            ax.plot([xr, x1], [yr, y1], color="#888888", lw=1.0, ls=":", zorder=1)
    ax.scatter(*pos[ROOT], s=260, c="black", marker="o", zorder=3)
    ax.annotate("root", pos[ROOT], xytext=(-12, 0), textcoords="offset points", ha="right", va="center")
    nodes = sorted(members)
    if nodes:
        scores = np.array([ucb.get(it, 0.0) for it in nodes])
        span = float(scores.max() - scores.min()) or 1.0
        sizes = 140 + 520 * (scores - scores.min()) / span
        colour = _draw_nodes(ax, members, nodes, pos, sizes)
        fig.colorbar(colour, ax=ax, fraction=0.035, pad=0.02, label="connectivity_R2")
        best = best_node(list(members.values()), profile)
        if best is not None:
            k = nodes.index(best.iteration)
            ax.scatter(*pos[best.iteration], s=sizes[k] + 420, facecolors="none", edgecolors="gold", lw=3, zorder=2)
        for k, it in enumerate(nodes):
            r = members[it]
            tag = " ★ best" if best is not None and it == best.iteration else ""
            label = f"{it}: {short_mutation(r.mutation)}{tag}\nUCB={ucb.get(it, 0.0):.2f} R2={r.conn_r2:.3f}"
            ax.annotate(
                label,
                pos[it],
                xytext=(11 + math.sqrt(sizes[k]) / 2, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
    else:
        ax.text(0.5, 0.5, f"block {block}: no nodes yet", transform=ax.transAxes, ha="center")
    handles = [
        Line2D([], [], marker="o", ls="", color="#777777", label="new config"),
        Line2D([], [], marker="s", ls="", color="#777777", label="replicate"),
        Line2D([], [], marker="X", ls="", color="#777777", markeredgecolor="red", label="failed"),
        Line2D([], [], marker="o", ls="", mfc="none", mec="gold", mew=2.5, ms=12, label="best node"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)
    its = [r.iteration for r in members.values()]
    span_txt = f"iterations {min(its)}-{max(its)}, " if its else ""
    ax.set_title(f"Exploration tree, block {block} ({span_txt}N={len(nodes)}, c={c:g}); size = UCB")
    ax.set_xlim(-0.6, depth + 1.35)
    ax.set_ylim(-0.8, n_leaves - 0.2)
    ax.invert_yaxis()
    ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    return nodes


def _draw_nodes(ax: Any, members: dict[int, SlotResult], nodes: list[int], pos: dict[Any, Any], sizes: Any) -> Any:
    """Scatter the nodes by kind (marker) coloured by conn_R2; returns a mappable for the colorbar."""
    mappable = None
    kinds = {
        "o": lambda r: r.status == "completed" and r.replicate_of is None,
        "s": lambda r: r.status == "completed" and r.replicate_of is not None,
        "X": lambda r: r.status == "failed",
    }
    for marker, wanted in kinds.items():
        idx = [k for k, it in enumerate(nodes) if wanted(members[it])]
        if not idx:
            continue
        xy = np.array([pos[nodes[k]] for k in idx])
        values = [members[nodes[k]].conn_r2 for k in idx]
        edge = "red" if marker == "X" else "black"
        mappable = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=sizes[idx],
            c=values,
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
            marker=marker,
            edgecolors=edge,
            linewidths=1.6 if marker == "X" else 0.8,
            zorder=3,
        )
    return mappable


# ---------------------------------------------------------------------------------------------- trajectories


def global_iterations(rows: Sequence[R2Row]) -> np.ndarray:
    """x positions of R2 rows across epochs: the log restarts ``iteration`` at each epoch."""
    offsets: dict[int, int] = {}
    total = 0
    for epoch in sorted({r.epoch for r in rows}):
        offsets[epoch] = total
        total += max(r.iteration for r in rows if r.epoch == epoch)
    return np.array([offsets[r.epoch] + r.iteration for r in rows], dtype=float)


def phase_spans(rows: Sequence[R2Row]) -> list[tuple[float, float, str]]:
    """Contiguous phase runs as (start, end, phase); a run starts at the previous checkpoint (or 0)."""
    if not rows:
        return []
    x = global_iterations(rows)
    spans: list[tuple[float, float, str]] = []
    start = 0.0
    for k, row in enumerate(rows):
        last = k == len(rows) - 1 or rows[k + 1].phase != row.phase
        if last:
            spans.append((start, float(x[k]), row.phase))
            start = float(x[k])
    return spans


def _slot_rows(files: RunFiles, r: SlotResult) -> list[R2Row]:
    """The slot's finite R2 rows; [] when its log is missing or unreadable."""
    try:
        rows = read_r2_log(files.slot_dir(r.iteration, r.slot) / R2_LOG)
    except RecordError:
        return []
    return [row for row in rows if math.isfinite(row.connectivity_r2)]


def plot_batch_trajectories(run_dir: str | Path, results: list[SlotResult], batch: int, path: str | Path) -> int:
    """The batch's R2 trajectories overlaid, with each slot's W / V_rest spans as a strip below.

    Returns the number of trajectories drawn (slots whose ``connectivity_r2.log`` has a finite row).
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    files = RunFiles(Path(run_dir))
    members = sorted((r for r in results if r.batch == batch), key=lambda r: r.slot)
    n_rows = max(1, len(members))
    fig, (ax, strip) = plt.subplots(
        2, 1, figsize=(10, 6.2), sharex=True, gridspec_kw={"height_ratios": [4, 0.35 * n_rows + 0.4]}
    )
    colours = plt.get_cmap("tab10")
    drawn = 0
    for k, r in enumerate(members):
        rows = _slot_rows(files, r)
        y_row = n_rows - 1 - k
        strip.text(
            0, y_row + 0.4, f"slot {r.slot}", fontsize=7, va="center", ha="right", transform=strip.get_yaxis_transform()
        )
        if not rows:
            note = "failed, no R2 log" if r.status == "failed" else "no R2 log"
            strip.text(
                0.01, y_row + 0.4, note, fontsize=7, va="center", color="red", transform=strip.get_yaxis_transform()
            )
            continue
        x = global_iterations(rows)
        y = np.array([row.connectivity_r2 for row in rows])
        tag = "FAILED" if r.status == "failed" else f"final {y[-1]:.3f}"
        ax.plot(x, y, "-", color=colours(k), lw=1.6, label=f"slot {r.slot} (iter {r.iteration}, {tag})")
        vrest = np.array([row.phase == "V_rest" for row in rows])
        ax.scatter(x[~vrest], y[~vrest], color=colours(k), s=22, zorder=3)
        ax.scatter(x[vrest], y[vrest], facecolors="white", edgecolors=colours(k), s=22, zorder=3)
        for start, end, phase in phase_spans(rows):
            strip.broken_barh([(start, max(end - start, 1e-9))], (y_row + 0.1, 0.6), color=PHASE_COLOURS[phase])
        drawn += 1
    ax.set_ylabel("connectivity_R2")
    its = [r.iteration for r in members]
    span_txt = f"iterations {min(its)}-{max(its)}" if its else "no slots"
    ax.set_title(f"Batch {batch} ({span_txt}): R2 trajectories (filled = W-phase point, open = V_rest)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no R2 logs", transform=ax.transAxes, ha="center")
    strip.set_ylim(0, n_rows)
    strip.set_yticks([])
    strip.set_xlabel("training iteration")
    strip.legend(
        handles=[
            Patch(color=PHASE_COLOURS["W"], label="W-phase"),
            Patch(color=PHASE_COLOURS["V_rest"], label="V_rest-phase"),
        ],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    fig.tight_layout()
    save_figure(fig, path)
    return drawn


# ---------------------------------------------------------------------------------------------- spread


def plot_config_spread(results: list[SlotResult], path: str | Path) -> list[str]:
    """Per config group (variance-table ids): conn_R2 and V_rest_R2 over its runs; returns the ids drawn.

    Each run is a jittered point (failed runs as red X at 0), groups with >= 3 runs also get a box.
    """
    plt = _pyplot()
    ids = config_ids(results)
    groups: dict[str, list[SlotResult]] = {}
    for r in sorted(results, key=lambda r: r.iteration):
        groups.setdefault(ids[r.iteration], []).append(r)
    names = list(groups)
    width = min(16.0, 6.5 + 0.55 * max(1, len(names)))
    fig, axes = plt.subplots(2, 1, figsize=(width, 6.5), sharex=True)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, ("connectivity_R2", "V_rest_R2"), strict=True):
        for k, name in enumerate(names):
            _spread_column(ax, k, groups[name], metric, rng)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(names)))
    axes[-1].set_xticklabels([f"{n}\n(n={len(groups[n])})" for n in names], fontsize=8)
    axes[0].set_title("Spread over runs per config (point = run, red X = failed run, counted as 0)", fontsize=10)
    if not names:
        axes[0].text(0.5, 0.5, "no runs yet", transform=axes[0].transAxes, ha="center")
    fig.tight_layout()
    save_figure(fig, path)
    return names


def _spread_column(ax: Any, k: int, group: list[SlotResult], metric: str, rng: np.random.Generator) -> None:
    """One config's box (>= 3 runs) and jittered points for one metric."""
    ok = [getattr(r.metrics, metric) for r in group if r.status == "completed" and r.metrics is not None]
    failed = sum(1 for r in group if r.status == "failed" or r.metrics is None)
    values = ok + [0.0] * failed
    if len(values) >= 3:
        ax.boxplot([values], positions=[k], widths=0.5, showfliers=False, manage_ticks=False)
    if ok:
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(ok)), ok, s=16, color="#4c72b0", alpha=0.8, zorder=3)
    if failed:
        ax.scatter(np.full(failed, float(k)), np.zeros(failed), marker="X", s=40, color="red", zorder=3)


# ---------------------------------------------------------------------------------------------- metrics


def plot_metrics_over_iterations(results: list[SlotResult], path: str | Path) -> int:
    """All metrics vs iteration (R2-type above, training time below); failures red, block starts dashed.

    Returns the number of iterations plotted.
    """
    plt = _pyplot()
    ordered = sorted(results, key=lambda r: r.iteration)
    fig, (ax, ax_t) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    done = [r for r in ordered if r.status == "completed" and r.metrics is not None]
    x = np.array([r.iteration for r in done], dtype=float)
    for metric in R2_METRICS:
        ax.plot(x, [getattr(r.metrics, metric) for r in done], "o-", ms=3.5, lw=1.1, label=metric)
    ax_t.plot(x, [r.metrics.training_time_min for r in done], "o-", ms=3.5, color="#555555")  # type: ignore[union-attr]
    slow = [r for r in done if r.over_time_limit]
    if slow:
        ax_t.scatter(
            [r.iteration for r in slow],
            [r.metrics.training_time_min for r in slow],  # type: ignore[union-attr]
            s=60,
            facecolors="none",
            edgecolors="red",
            zorder=3,
            label="over time limit",
        )
        ax_t.legend(fontsize=8)
    done_its = {r.iteration for r in done}
    failed = [r.iteration for r in ordered if r.iteration not in done_its]
    for it in failed:
        ax.axvspan(it - 0.4, it + 0.4, color="red", alpha=0.12, lw=0)
    if failed:
        ax.scatter(failed, np.zeros(len(failed)), marker="X", s=60, color="red", zorder=4, label="failed slot")
    _block_boundaries((ax, ax_t), ordered)
    ax.set_ylabel("metric value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="lower left")
    ax.set_title(f"Metrics over iterations ({len(ordered)} iterations, {len(failed)} failed)", pad=16)
    ax_t.set_ylabel("training min")
    ax_t.set_xlabel("iteration")
    ax_t.grid(alpha=0.3)
    if not ordered:
        ax.text(0.5, 0.5, "no results yet", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    save_figure(fig, path)
    return len(ordered)


def _block_boundaries(axes: Sequence[Any], ordered: list[SlotResult]) -> None:
    """Dashed vertical lines before the first iteration of every block after the first, with its label."""
    firsts: dict[int, int] = {}
    for r in ordered:
        firsts.setdefault(r.block, r.iteration)
    for block, first in firsts.items():
        for ax in axes:
            if block != min(firsts):
                ax.axvline(first - 0.5, color="black", ls="--", lw=0.9, alpha=0.6)
        axes[0].text(
            first - 0.4,
            1.005,
            f"block {block}",
            transform=axes[0].get_xaxis_transform(),
            fontsize=8,
            va="bottom",
            color="#444444",
        )
