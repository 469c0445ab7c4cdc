"""Train and test one config on an existing dataset; writes metrics, R2 log, images and the model.

``python -m trainer.run --config FILE --data DIR --out DIR [--iterations N] [--device auto|cpu|cuda]
[--threads N]``
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

from experiment.atomic import atomic_write_bytes
from experiment.config import ExperimentConfig, load_experiment
from experiment.records import PANEL_PNG, R2_LOG, ROLLOUT_PNG, VREST_LEVER_PNG, W_SCATTER_PNG, write_metrics
from simulator.plots import MAX_FRAMES, TRACE_TYPES, centre_neurons
from trainer import plots
from trainer.cli import EXPECTED_ERRORS, base_parser, one_line, parse, with_iterations
from trainer.data import Dataset, read_dataset
from trainer.diagnostics import vrest_lever_by_type
from trainer.metrics import W_OUTLIER, Probe
from trainer.model import EdgeMode
from trainer.train import (
    Evaluation,
    TrainResult,
    build_model,
    build_probe,
    evaluate,
    resolve_device,
    train,
)

MODEL_FILE = "model.pt"


def trace_strip(data: Dataset, dt: float) -> plots.TraceStrip:
    """The panel's data strip: the first MAX_FRAMES training frames of the centre neuron of each trace type
    (activity.png's neurons; the first 12 types where none of those names exists) and the photoreceptor input
    of the centre R1."""
    names, types = list(data.type_names), np.asarray(data.types)
    neurons = centre_neurons(names, types, np.asarray(data.positions))
    if not neurons:
        neurons = centre_neurons(names, types, np.asarray(data.positions), names[: len(TRACE_TYPES)])
    idx = np.asarray(list(neurons.values()), dtype=np.int64)
    t_n = min(data.train.n_frames, MAX_FRAMES)
    column = neurons.get("R1", 0)
    column = column if column < data.train.stimulus.shape[1] else 0
    meta = data.meta
    gt, stim = meta.get("ground_truth"), meta.get("stimulus")
    gt = gt.get("kind", "?") if isinstance(gt, dict) else gt or "?"
    stim = stim.get("train", {}).get("kind", "?") if isinstance(stim, dict) else stim or "?"
    title = (
        f"training data: extent {meta.get('extent', '?')}, {gt} GT, {stim} stimulus, noise "
        f"{meta.get('noise_model_level', '?')}, seed {meta.get('seed', '?')}; centre neurons, true V_rest dotted"
    )
    return plots.TraceStrip(
        names=list(neurons),
        voltage=np.asarray(data.train.voltage[:t_n, idx], dtype=np.float64),
        v_rest=np.asarray(data.V_rest, dtype=np.float64)[idx],
        stimulus=np.asarray(data.train.stimulus[:t_n, column], dtype=np.float64),
        dt=dt,
        title=title,
    )


def write_images(
    out: Path, data: Dataset, ev: Evaluation, result: TrainResult, dt: float, probe: Probe | None = None
) -> list[Path]:
    """All slot images, ``panel.png`` among them; returns their paths.

    ``probe``: its voltage statistics feed the V_rest lever diagnostic (else they are computed from the data).
    """
    rec = ev.recovered
    paths = {
        "W": out / W_SCATTER_PNG,
        "emb": out / "embedding.png",
        "tau": out / "tau.png",
        "vrest": out / "V_rest.png",
        "loss": out / "loss.png",
        "r2": out / "connectivity_r2.png",
        "roll": out / ROLLOUT_PNG,
        "lever": out / VREST_LEVER_PNG,
        "panel": out / PANEL_PNG,
    }
    stats = None if probe is None else probe.voltage_stats()
    lever = vrest_lever_by_type(data, rec.V_rest, stats)
    plots.scatter_true_learned(data.W, rec.W_corrected, "corrected W* vs true W", "W", paths["W"], outlier=W_OUTLIER)
    plots.embedding_plot(rec.embedding, data.types, data.type_names, paths["emb"])
    plots.scatter_true_learned(data.tau, rec.tau, "tau from lin_phi", "tau", paths["tau"])
    plots.scatter_true_learned(data.V_rest, rec.V_rest, "V_rest from lin_phi", "V_rest", paths["vrest"])
    plots.loss_plot(result.losses, paths["loss"])
    plots.r2_trajectory_plot(result.r2_rows, result.phase_spans, result.niter, paths["r2"])
    plots.rollout_plot(
        ev.rollout_pred, ev.rollout_true, data.types, dt, paths["roll"], diverged=ev.metrics.rollout_diverged
    )
    plots.vrest_lever_plot(lever, paths["lever"])
    plots.slot_panel(
        paths["panel"],
        embedding=rec.embedding,
        types=data.types,
        type_names=data.type_names,
        w_true=data.W,
        w_learned=rec.W_corrected,
        w_outlier=W_OUTLIER,
        r2_rows=result.r2_rows,
        spans=result.phase_spans,
        niter=result.niter,
        tau=(data.tau, rec.tau),
        v_rest=(data.V_rest, rec.V_rest),
        lever=lever,
        strip=trace_strip(data, dt),
    )
    return list(paths.values())


def save_model(model: torch.nn.Module, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def train_and_evaluate(
    cfg: ExperimentConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    device: str | None = None,
    progress: bool | None = None,
    edge_mode: EdgeMode = "sparse",
) -> tuple[Evaluation, TrainResult]:
    """Train on ``data_dir``, test, and write metrics, R2 log, images and model into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or cfg.training.device)
    data = read_dataset(data_dir)
    model = build_model(cfg, data, dev, edge_mode=edge_mode)
    probe = build_probe(data, dev)
    result = train(model, data, cfg.training, probe, r2_log=out_dir / R2_LOG, progress=progress)
    ev = evaluate(model, data, cfg, probe, result.seconds, result.recovered)
    write_metrics(out_dir, ev.metrics)
    write_images(out_dir, data, ev, result, data.delta_t or cfg.simulation.delta_t, probe)
    save_model(model, out_dir / MODEL_FILE)
    return ev, result


def parser() -> argparse.ArgumentParser:
    p = base_parser("python -m trainer.run", __doc__, config_help="experiment YAML", out_help="output folder")
    p.add_argument("--data", required=True, type=Path, help="dataset folder written by the simulator")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(), argv)
    try:
        cfg = with_iterations(load_experiment(args.config), args.iterations)
        ev, _ = train_and_evaluate(cfg, args.data, args.out, device=args.device)
    except EXPECTED_ERRORS as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    print(ev.metrics.as_lines(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
