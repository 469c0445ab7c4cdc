"""Synthetic vs checkpoint ground truth, side by side: weights, type-level gains, activity, learnability.

The yardstick for calibrating the synthetic ground truth (MODEL.md section 2 asks for the trained
network's structure and statistics). Prints one row per statistic.

Run: ``python benchmarks/compare_ground_truth.py`` (statistics at extent 8, about a minute on 2 cores);
add ``--learn-seeds 1 2 3`` to also generate the demo data and train it with the standard schedule,
once per seed and ground truth (about 40 s per run), and print the mean metrics.
The checkpoint comes from ``--checkpoint``, else FLYVIS_SHARED_DATA or ../shared/data; without one only
the synthetic column is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiment.yaml_io import load_yaml_file, write_yaml_roundtrip  # noqa: E402
from simulator.connectome import build_connectome  # noqa: E402
from simulator.ground_truth import load_ground_truth, shared_checkpoint_dir, weight_stats  # noqa: E402
from simulator.network_stats import activity_stats, type_level_stats  # noqa: E402

DEMO_CONFIG = REPO / "configs" / "flyvis_demo_cpu.yaml"
LEARN_METRICS = ("connectivity_R2", "tau_R2", "cluster_accuracy", "test_pearson")


def _run_module(*args: object) -> None:
    """Run ``python -m args``; on failure print its stderr and stop."""
    done = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(map(str, args[:1]))} failed:\n{done.stderr.strip()}")


def statistics(spec: str, extent: int, n_frames: int) -> dict[str, float]:
    con = build_connectome(extent)
    gt = load_ground_truth(spec, con)
    rows = {f"W {k}": v for k, v in weight_stats(gt.W).items()}
    rows["tau types at ~dt (<= 0.0201)"] = float((np.unique(gt.tau) <= 0.0201).sum())
    rows["V_rest min"], rows["V_rest max"] = float(gt.V_rest.min()), float(gt.V_rest.max())
    return rows | type_level_stats(gt, con) | activity_stats(gt, con, n_frames)


def learnability(spec: str, seeds: list[int], iterations: int, work: Path) -> dict[str, float]:
    """Mean metrics of standard training on the demo config's data, one run per seed."""
    config = load_yaml_file(DEMO_CONFIG)
    config["simulation"]["ground_truth"] = spec
    config["training"]["alternate_training"] = False
    cfg = work / f"{Path(spec).name}.yaml"
    write_yaml_roundtrip(cfg, config)
    runs = []
    for seed in seeds:
        data, out = work / f"data_{cfg.stem}_{seed}", work / f"run_{cfg.stem}_{seed}"
        _run_module("simulator.generate", "--config", cfg, "--seed", seed, "--out", data)
        _run_module(
            "trainer.run", "--config", cfg, "--data", data, "--out", out, "--iterations", iterations, "--threads", 1
        )
        runs.append(json.loads((out / "metrics.json").read_text()))
    return {f"{k} (mean of {len(seeds)})": float(np.mean([r[k] for r in runs])) for k in LEARN_METRICS}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extent", type=int, default=8)
    p.add_argument("--frames", type=int, default=2000, help="simulated frames for the activity rows")
    p.add_argument("--checkpoint", default=None, help="flyvis checkpoint directory ('' for none)")
    p.add_argument("--learn-seeds", type=int, nargs="*", default=[], help="also train the demo config per seed")
    p.add_argument("--iterations", type=int, default=4000)
    args = p.parse_args(argv)
    shared = shared_checkpoint_dir()
    ckpt = (str(shared) if shared else None) if args.checkpoint is None else (args.checkpoint or None)
    specs = ["synthetic"] + ([ckpt] if ckpt else [])
    columns = [statistics(s, args.extent, args.frames) for s in specs]
    if args.learn_seeds:
        with tempfile.TemporaryDirectory() as tmp:
            for s, col in zip(specs, columns, strict=True):
                col.update(learnability(s, args.learn_seeds, args.iterations, Path(tmp)))
    header = ["statistic", "synthetic"] + (["checkpoint"] if ckpt else [])
    print(f"extent {args.extent}, {args.frames} frames" + (f"; checkpoint {ckpt}" if ckpt else ""))
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for key in columns[0]:
        print(f"| {key} | " + " | ".join(f"{col[key]:.4g}" for col in columns) + " |")


if __name__ == "__main__":
    main()
