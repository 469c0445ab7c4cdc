"""How strongly edge_weight_L1 pulls on lin_edge against the data term, at a given scale (docs/CONFIG.md).

Trains ``--iterations`` standard iterations (no schedule switches) of CONFIG on an existing dataset, then prints
the median over 20 random batches of ``||grad data_loss|| / ||grad sum_p ||p||_1||`` on lin_edge's parameters.
The ratio says how many times the data term outweighs a unit L1 coefficient; comparing it between a CPU
extent and extent 8 gives the CPU value of coeff_edge_weight_L1 that keeps the full-scale balance.

    python -m simulator.generate --config configs/flyvis_demo_cpu.yaml --seed 1 --extent E --n-frames 2000 --out D
    python benchmarks/bench_l1_balance.py --config configs/flyvis_demo_cpu.yaml --data D [--iterations 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiment.config import load_experiment  # noqa: E402
from trainer.data import read_dataset  # noqa: E402
from trainer.losses import data_loss, norm_sum  # noqa: E402
from trainer.train import FrameSampler, build_model, build_probe, train  # noqa: E402


def gradient_ratio(model: torch.nn.Module, data: object, n_batches: int, seed: int) -> np.ndarray:
    """Per batch of 2 random training frames: |grad data loss| / |grad L1| on lin_edge's parameters."""
    frames = FrameSampler(data.train, batch_size=2, total=n_batches, seed=seed, device=torch.device("cpu"))
    params = list(model.lin_edge.parameters())
    out = []
    for step in range(n_batches):
        v, y, s = frames.batch(step)
        g_data = torch.autograd.grad(data_loss(model(v, s), y), params, allow_unused=True)
        g_l1 = torch.autograd.grad(norm_sum(model.lin_edge, 1), params)
        n_data = torch.sqrt(sum((g**2).sum() for g in g_data if g is not None)).item()
        n_l1 = torch.sqrt(sum((g**2).sum() for g in g_l1)).item()
        out.append(n_data / n_l1)
    return np.asarray(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=32, help="hidden width of both MLPs (same at every extent)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_experiment(args.config)
    cfg.training.alternate_training = False
    cfg.training.n_iterations = args.iterations
    cfg.graph_model.hidden_dim = cfg.graph_model.hidden_dim_update = args.hidden
    data = read_dataset(args.data)
    device = torch.device("cpu")
    model = build_model(cfg, data, device)
    train(model, data, cfg.training, build_probe(data, device), progress=False)
    r = gradient_ratio(model, data, 20, seed=0)
    print(
        f"N={data.n_neurons} iterations={args.iterations} hidden={args.hidden}: median |grad data| / |grad L1| "
        f"on lin_edge = {np.median(r):.2f} (quartiles {np.quantile(r, 0.25):.2f}-{np.quantile(r, 0.75):.2f})"
    )


if __name__ == "__main__":
    main()
