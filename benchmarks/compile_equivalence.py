"""Does a compiled training step learn what the eager one learns? Same data, same seed, both modes.

Trains one model per ``training.compile`` mode from the same initial state on one dataset (fixed seeds, the
standard schedule), then prints and writes as JSON: ms per iteration, the relative difference of the loss
curves (first 50 iterations and, smoothed over windows of 50, the whole run) and the final metrics of each mode.
Run on a GPU machine (CUDA graphs need one); ``--device cpu --extent 1`` is a quick dry run.

    python benchmarks/compile_equivalence.py --device cuda --extent 8 --frames 4000 --iterations 2000 \
        --modes off reduce-overhead --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METRICS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_pearson")


def smoothed(losses: np.ndarray, window: int = 50) -> np.ndarray:
    """Window means of the loss curve (a compiled kernel's rounding makes single steps drift apart)."""
    n = len(losses) // window * window
    return losses[:n].reshape(-1, window).mean(axis=1)


def main(argv: list[str] | None = None) -> int:
    from experiment.config import load_experiment
    from simulator.ground_truth import shared_checkpoint_dir
    from trainer.data import read_dataset
    from trainer.train import build_model, build_probe, evaluate, resolve_device, train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "flyvis_62_1_gs_alternate.yaml")
    p.add_argument("--device", default="cuda")
    p.add_argument("--extent", type=int, default=8)
    p.add_argument("--frames", type=int, default=4000)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--modes", nargs="+", default=["off", "reduce-overhead"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from simulator.generate import generate_dataset

    cfg = load_experiment(args.config)
    gt = shared_checkpoint_dir()
    cfg.simulation.ground_truth = str(gt) if gt else "synthetic"
    cfg.simulation.stimulus, cfg.simulation.extent = "procedural", args.extent
    cfg.simulation.n_frames, cfg.simulation.n_test_frames = args.frames, max(100, args.frames // 10)
    cfg.training.alternate_training, cfg.training.n_iterations = False, args.iterations
    cfg.training.n_rollout_frames = min(cfg.training.n_rollout_frames, cfg.simulation.n_test_frames)
    device = resolve_device(args.device)
    out: dict = {"device": str(device), "extent": args.extent, "frames": args.frames, "iterations": args.iterations,
                 "ground_truth": cfg.simulation.ground_truth, "modes": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        data = read_dataset(generate_dataset(cfg.simulation, Path(tmp) / "data", device=str(device)))
        probe = build_probe(data, device)
        curves = {}
        for mode in args.modes:
            c = cfg.model_copy(deep=True)
            c.training.compile = mode
            torch.manual_seed(c.training.seed)
            model = build_model(c, data, device)
            t0 = time.perf_counter()
            result = train(model, data, c.training, probe, progress=False)
            wall = time.perf_counter() - t0
            metrics = evaluate(model, data, c, probe, wall, result.recovered).metrics
            curves[mode] = result.losses
            out["modes"][mode] = {"ms_per_iteration": 1e3 * result.seconds / len(result.losses), "wall_s": wall,
                                  **{k: float(getattr(metrics, k)) for k in METRICS}}  # fmt: skip
            print(mode, json.dumps(out["modes"][mode]), flush=True)
    ref = args.modes[0]
    for mode in args.modes[1:]:
        a, b = curves[ref], curves[mode]
        early = np.abs(b[:50] - a[:50]) / np.abs(a[:50])
        sa, sb = smoothed(a), smoothed(b)
        out["modes"][mode]["vs_" + ref] = {
            "loss_rel_diff_first_50_max": float(early.max()),
            "loss_rel_diff_window50_max": float((np.abs(sb - sa) / np.abs(sa)).max()) if len(sa) else None,
            "metric_abs_diff_max": max(abs(out["modes"][mode][k] - out["modes"][ref][k]) for k in METRICS),
        }
        print(f"{mode} vs {ref}:", json.dumps(out["modes"][mode]["vs_" + ref]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
