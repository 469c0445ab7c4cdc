"""Outcome parity of V_rest: one factor at a time, several seeds, conn/tau/V_rest R2 along each run.

Training draws its batches one iteration at a time from the seed and keeps its learning rates constant within the
epoch, so the parameters after k iterations of an 80,000-iteration run are those of a k-iteration run: one long
run per seed measures every shorter length at its checkpoints (``--at``). Each run also records, per cell type,
how far the type's voltage stays from its V_rest in the data (the lever arm the line fit of lin_phi must
extrapolate over) against its V_rest error after training (``trainer.diagnostics``).

    python benchmarks/vrest_parity.py run --config CFG --ground-truth CKPT --seed S --iterations 80000 \\
        --at 20000 40000 --work DIR --json OUT.json [--set simulation.stimulus=natural ...]
    python benchmarks/vrest_parity.py table OUT1.json OUT2.json ...   # mean +- std per (factor, length)

Each ``run`` prints one JSON line per checkpoint and rewrites ``--json`` atomically after each one (a stopped run keeps
the points it reached); the final metrics, the per-type diagnostic and the learned V_rest are added at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from gpu_runs import derive_config, parse_value

    from experiment.atomic import atomic_write_text
    from experiment.config import load_experiment
    from simulator.generate import generate_dataset
    from trainer.data import read_dataset
    from trainer.diagnostics import vrest_lever_by_type
    from trainer.metrics import r2_score
    from trainer.train import build_model, build_probe, evaluate, resolve_device, train

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    overrides.update({"training.alternate_training": False, "training.n_iterations": args.iterations})
    if args.ground_truth:
        overrides["simulation.ground_truth"] = str(args.ground_truth)
    cfg_path = derive_config(Path(args.config), work / "config.yaml", overrides)
    cfg = load_experiment(cfg_path)
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": args.seed + 500})})
    data_dir = work / "data"
    if not (data_dir / "meta.json").exists():
        generate_dataset(cfg.simulation, data_dir, seed=args.seed, device="cpu", overwrite=True)
    data = read_dataset(data_dir)
    device = resolve_device("cpu")
    model = build_model(cfg, data, device)
    probe = build_probe(data, device)
    trajectory: list[dict[str, Any]] = []
    record: dict[str, Any] = {
        "seed": args.seed,
        "overrides": {k: v for k, v in overrides.items() if k != "simulation.ground_truth"},
        "ground_truth": "checkpoint" if args.ground_truth else "synthetic",
        "iterations": args.iterations,
        "trajectory": trajectory,
        "final": None,
    }

    def on_recovered(row, rec) -> None:
        point = {
            "iteration": row.iteration,
            "connectivity_R2": row.connectivity_r2,
            "tau_R2": r2_score(rec.tau, data.tau),
            "V_rest_R2": r2_score(rec.V_rest, data.V_rest),
        }
        trajectory.append(point)
        print(json.dumps(point), flush=True)
        atomic_write_text(Path(args.json), json.dumps(record, indent=1) + "\n")  # a stopped run keeps its points

    t0 = time.perf_counter()
    result = train(
        model, data, cfg.training, probe, r2_log=work / "connectivity_r2.log", progress=False,
        extra_checkpoints=args.at, on_recovered=on_recovered,
    )  # fmt: skip
    ev = evaluate(model, data, cfg, probe, result.seconds, result.recovered)
    lever = vrest_lever_by_type(data, ev.recovered.V_rest, probe.voltage_stats())  # stats read once
    record.update(
        wall_s=time.perf_counter() - t0,
        ms_per_iteration=1000.0 * result.seconds / args.iterations,
        final=ev.metrics.model_dump(mode="json"),
        per_type=lever.as_records(),
        lever_error_spearman=lever.spearman(),
        V_rest_learned=[round(float(x), 6) for x in ev.recovered.V_rest],
    )
    atomic_write_text(Path(args.json), json.dumps(record, indent=1) + "\n")
    return record


def table(paths: list[Path], lengths: list[int]) -> str:
    """Markdown rows: factor, length, n seeds, mean +- std of conn/tau/V_rest R2 (sample std)."""
    groups: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    for p in paths:
        rec = json.loads(p.read_text())
        factor = ", ".join(f"{k}={v}" for k, v in sorted(rec["overrides"].items()) if k != "training.n_iterations")
        by_it = {pt["iteration"]: pt for pt in rec["trajectory"]}
        for n in lengths or [rec["iterations"]]:
            if n in by_it:
                groups[(factor, n)].append(by_it[n])
    lines = ["| factor | iterations | seeds | conn_R2 | tau_R2 | V_rest_R2 |", "|---|---|---|---|---|---|"]
    for (factor, n), pts in sorted(groups.items()):
        cells = []
        for key in ("connectivity_R2", "tau_R2", "V_rest_R2"):
            v = np.array([p[key] for p in pts])
            sd = v.std(ddof=1) if v.size > 1 else float("nan")
            cells.append(f"{v.mean():.3f} ± {sd:.3f}")
        lines.append(f"| {factor} | {n:,} | {len(pts)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one seed: generate, train with checkpoints, write JSON")
    r.add_argument("--config", type=Path, default=REPO / "configs" / "flyvis_science_cpu.yaml")
    r.add_argument("--ground-truth", type=Path, default=None, help="flyvis checkpoint dir (default: synthetic)")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--iterations", type=int, required=True)
    r.add_argument("--at", type=int, nargs="*", default=[], help="extra checkpoint iterations")
    r.add_argument("--set", nargs="*", default=[], help="dotted config overrides key=value")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--json", type=Path, required=True)
    r.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("table", help="mean +- std over seeds per factor and length")
    t.add_argument("json", type=Path, nargs="+")
    t.add_argument("--lengths", type=int, nargs="*", default=[])
    args = p.parse_args(argv)
    if args.cmd == "run":
        run(args)
    else:
        print(table(args.json, args.lengths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
