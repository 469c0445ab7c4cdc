"""ms per training iteration of recurrent training (time_step 1, 2, 3) against the standard one-step loss.

Each mode is the training loop's own iteration (FrameSampler batch read, per-step noise when
``noise_recurrent_level`` > 0, loss with the config's regularisers, backward, optional grad_clip_W, Adam step)
on a dataset of ``--config`` (default configs/flyvis_science_cpu.yaml, extent 4); R2 checkpoints are left out
(they cost the same in every mode). The modes run in interleaved rounds in one process (medians of wall and
process CPU time per iteration; CPU time is less sensitive to other load on the machine).

    python -m simulator.generate --config configs/flyvis_science_cpu.yaml --seed 1 --n-frames 4000 --out D
    python benchmarks/bench_recurrent.py --data D [--iterations 300] [--rounds 3] [--threads 1] [--time-steps 1 2 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiment.config import load_experiment  # noqa: E402
from trainer.data import global_voltage_std, read_dataset  # noqa: E402
from trainer.schedule import base_lrs, build_optimizer  # noqa: E402
from trainer.train import (  # noqa: E402
    FrameSampler,
    _step,
    build_model,
    fuse_adam,
    make_loss_fn,
    rollout_plan,
    tune_allocator,
)

SCIENCE_CONFIG = REPO / "configs" / "flyvis_science_cpu.yaml"


def make_mode(args: argparse.Namespace, time_step: int, total: int) -> Callable[[int], None]:
    """The loop's iteration ``step -> None`` for ``time_step`` (0 = the standard one-step loss)."""
    cfg = load_experiment(args.config)
    data = read_dataset(args.data)
    t = cfg.training
    t.n_iterations = total
    if time_step:
        t.recurrent_training, t.time_step, t.noise_recurrent_level = True, time_step, args.noise
    t.grad_clip_W = args.grad_clip_W
    device = torch.device("cpu")
    model = build_model(cfg, data, device)
    optimizer = fuse_adam(build_optimizer(model.param_groups(), base_lrs(t)))
    rollout = rollout_plan(t, data, total, device)
    sampler = FrameSampler(data.train, t.batch_size, total, t.seed, device, rollout=rollout.time_step)
    loss_fn = make_loss_fn(model, t, 1.5 * global_voltage_std(data.train.voltage), delta_t=data.delta_t)
    clip = (model.W, t.grad_clip_W) if t.grad_clip_W > 0 else None

    def iteration(step: int) -> None:
        _step(loss_fn, optimizer, sampler.batch(step), 0, noise=rollout.noise(model, step), clip_W=clip)

    return iteration


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="dataset folder (simulator.generate)")
    p.add_argument("--config", type=Path, default=SCIENCE_CONFIG)
    p.add_argument("--iterations", type=int, default=300, help="timed iterations per mode, over all rounds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-steps", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--noise", type=float, default=0.0, help="noise_recurrent_level of the recurrent modes")
    p.add_argument("--grad-clip-W", type=float, default=0.0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    tune_allocator()
    per_round = max(1, args.iterations // args.rounds)
    warmup = 5
    total = warmup + per_round * args.rounds
    modes = {("standard" if k == 0 else f"time_step {k}"): make_mode(args, k, total) for k in [0, *args.time_steps]}
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for fn in modes.values():
        for step in range(warmup):
            fn(step)
    for r in range(args.rounds):
        for name, fn in modes.items():
            first = warmup + r * per_round
            t0, c0 = time.perf_counter(), time.process_time()
            for step in range(first, first + per_round):
                fn(step)
            wall[name].append((time.perf_counter() - t0) / per_round * 1e3)
            cpu[name].append((time.process_time() - c0) / per_round * 1e3)
    base = statistics.median(cpu["standard"])
    print(
        f"{per_round * args.rounds} iterations per mode in {args.rounds} interleaved rounds, {args.threads} thread(s)"
    )
    print("| mode | ms/iteration (wall, median) | CPU ms/iteration (median) | CPU x standard |")
    print("|---|---|---|---|")
    for name in modes:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"| {name} | {w:.1f} | {c:.1f} | {c / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
