"""Trainer benchmarks.

Speed (default): ms per training iteration (forward, loss with regularisers, backward, Adam step) on
the real connectome at extents 4 and 8, lin_edge evaluated once per neuron vs once per edge.
Science (``--science``): extent 4, 20,000 frames, configs/flyvis_science_cpu.yaml; conn_R2, tau_R2,
V_rest_R2 and wall time for the synthetic and the checkpoint ground truth (skipped when absent),
standard and cyclic alternating training.

    python benchmarks/bench_train.py [--extents 4 8] [--device cpu] [--threads 2]
    python benchmarks/bench_train.py --science [--iterations N] [--work /tmp/bench_train]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiment.config import ExperimentConfig, load_experiment  # noqa: E402
from simulator.ground_truth import shared_checkpoint_dir  # noqa: E402
from trainer.losses import data_loss, regularisers  # noqa: E402
from trainer.model import EdgeMode, FlyVisGNN  # noqa: E402
from trainer.schedule import base_lrs, build_optimizer  # noqa: E402

SCIENCE_CONFIG = REPO / "configs" / "flyvis_science_cpu.yaml"


def ms_per_iteration(
    extent: int, edge_mode: EdgeMode, cfg: ExperimentConfig, device: torch.device, n_iter: int, warmup: int = 2
) -> tuple[float, int, int]:
    """Mean wall ms of a full training step on random voltages; returns (ms, neurons, edges)."""
    from simulator.connectome import build_connectome

    con = build_connectome(extent)
    n, b = con.n_neurons, cfg.training.batch_size
    model = FlyVisGNN(
        cfg.graph_model, torch.from_numpy(con.edge_index), n, con.n_input, seed=0, edge_mode=edge_mode
    ).to(device)
    opt = build_optimizer(model.param_groups(), base_lrs(cfg.training))
    gen = torch.Generator().manual_seed(0)
    v = (torch.rand(b, n, generator=gen) * 2 - 0.5).to(device)
    y = torch.randn(b, n, generator=gen).to(device)
    stim = torch.rand(b, con.n_input, generator=gen).to(device)

    def step() -> None:
        loss = data_loss(model(v, stim), y)
        for term in regularisers(model, v[0], cfg.training, 0, 0.5).values():
            loss = loss + term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_iter):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n_iter * 1000.0, n, con.n_edges


def speed(args: argparse.Namespace) -> None:
    cfg = ExperimentConfig(dataset="bench")  # full-scale defaults: hidden 80, batch 2, all regularisers
    device = torch.device(args.device)
    print(
        f"device={device} threads={torch.get_num_threads()} hidden={cfg.graph_model.hidden_dim} "
        f"batch={cfg.training.batch_size}"
    )
    print("extent  neurons    edges  node ms/it  edge ms/it  ratio")
    for extent in args.extents:
        node_ms, n, e = ms_per_iteration(extent, "node", cfg, device, args.n_iter)
        edge_ms, _, _ = ms_per_iteration(extent, "edge", cfg, device, max(2, args.n_iter // 10))
        print(f"{extent:6d} {n:8d} {e:8d} {node_ms:11.1f} {edge_ms:11.1f} {edge_ms / node_ms:6.1f}", flush=True)


def science_run(cfg: ExperimentConfig, data_dir: Path, out: Path, device: str) -> tuple[dict, float]:
    from trainer.run import train_and_evaluate

    t0 = time.perf_counter()
    ev, _ = train_and_evaluate(cfg, data_dir, out, device=device, progress=False)
    return ev.metrics.model_dump(), (time.perf_counter() - t0) / 60.0


def science(args: argparse.Namespace) -> None:
    from simulator.generate import generate_dataset

    base = load_experiment(SCIENCE_CONFIG)
    truths = {"synthetic": "synthetic"}
    checkpoint = shared_checkpoint_dir()
    if checkpoint:
        truths["checkpoint"] = str(checkpoint)
    else:
        print("checkpoint ground truth skipped: no shared checkpoint ($FLYVIS_SHARED_DATA or ../shared/data)")
    print(f"threads={torch.get_num_threads()} extent={base.simulation.extent} frames={base.simulation.n_frames}")
    print("ground_truth  schedule   iterations  conn_R2  tau_R2  V_rest_R2  train_min  wall_min  gen_s")
    for name, truth in truths.items():
        cfg = base.model_copy(deep=True)
        cfg.simulation.ground_truth = truth
        data_dir = args.work / f"data_{name}"
        t0 = time.perf_counter()
        if not (data_dir / "meta.json").exists():
            generate_dataset(cfg.simulation, data_dir, device=args.device, overwrite=True)
        gen_s = time.perf_counter() - t0
        for schedule, alternate in (("standard", False), ("cyclic", True)):
            run_cfg = cfg.model_copy(deep=True)
            run_cfg.training.alternate_training = alternate
            run_cfg.training.alternate_schedule = "cyclic"
            if args.iterations:
                run_cfg.training.n_iterations = args.iterations
            m, wall = science_run(run_cfg, data_dir, args.work / f"{name}_{schedule}", args.device)
            niter = run_cfg.training.n_iterations or "config"
            print(
                f"{name:12s}  {schedule:9s}  {niter!s:>10}  {m['connectivity_R2']:7.3f}  {m['tau_R2']:6.3f}  "
                f"{m['V_rest_R2']:9.3f}  {m['training_time_min']:9.2f}  {wall:8.2f}  {gen_s:5.1f}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--science", action="store_true", help="CPU science benchmark instead of the speed one")
    p.add_argument("--extents", type=int, nargs="+", default=[4, 8])
    p.add_argument("--n-iter", type=int, default=20, help="timed iterations (node-level; per-edge gets 1/10)")
    p.add_argument("--iterations", type=int, default=None, help="science: override training.n_iterations")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_train"), help="science: data and outputs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    np.seterr(all="ignore")
    science(args) if args.science else speed(args)


if __name__ == "__main__":
    main()
