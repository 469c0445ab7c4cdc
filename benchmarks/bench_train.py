"""Trainer benchmarks.

Speed (default): ms per training iteration (forward, loss with the published regularisers of
configs/flyvis_62_1_gs_alternate.yaml, backward, Adam step) on the real connectome, the previous version
(``old``: lin_edge per neuron through nn.Sequential, messages by a flat gather/scatter over batch copies of the
edges) against the current one (``new``: sparse aggregation, fused MLP node, oneDNN on the CPU), timed in
interleaved rounds (medians; the ratio is old/new), each mode in its own worker process; the process CPU time
per iteration is printed too (less sensitive than wall time to other load on the machine). ``compile:MODE`` times the step with training.compile=MODE
(CUDA: ``compile:reduce-overhead`` = CUDA graphs). ``--profile FILE`` writes torch.profiler's top-10 table of
the new step; ``--json FILE`` the figures (rewritten after every mode, so a timed-out run keeps what it did).
Science (``--science``): extent 4, 20,000 frames, configs/flyvis_science_cpu.yaml; conn_R2, tau_R2,
V_rest_R2 and wall time for the synthetic and the checkpoint ground truth (skipped when absent),
standard and cyclic alternating training.
Checkpoints (``--checkpoints``): ms per training iteration (train() from start to end, R2 checkpoints included)
without R2 checkpoints, with them in the loop (``training.r2_async: off``) and on the background thread
(``on``), interleaved rounds (medians), on a dataset of ``--config`` (default configs/flyvis_demo_cpu.yaml).
The R2 rows of background vs loop are compared next to those of a second in-loop run (``loop2``): on CUDA two
trainings differ anyway (index_add_ atomics), so loop vs loop2 is the noise floor the background diff is read
against (both are 0 on the CPU).

    python benchmarks/bench_train.py --threads 2 [--extents 8] [--modes old new] [--rounds 7] [--device cpu]
    python benchmarks/bench_train.py --science [--iterations N] [--work /tmp/bench_train]
    python benchmarks/bench_train.py --checkpoints [--config FILE] [--iterations 300] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiment.atomic import atomic_write_json  # noqa: E402
from experiment.config import ExperimentConfig, load_experiment  # noqa: E402
from simulator.ground_truth import shared_checkpoint_dir  # noqa: E402
from trainer.losses import data_loss, regularisers  # noqa: E402
from trainer.model import EdgeMode, FlyVisGNN  # noqa: E402
from trainer.schedule import base_lrs, build_optimizer  # noqa: E402
from trainer.train import fuse_adam, make_loss_fn, tune_allocator  # noqa: E402

SCIENCE_CONFIG = REPO / "configs" / "flyvis_science_cpu.yaml"
DEMO_CONFIG = REPO / "configs" / "flyvis_demo_cpu.yaml"
FULL_CONFIG = REPO / "configs" / "flyvis_62_1_gs_alternate.yaml"
XNORM = 0.5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    mode: str, extent: int, cfg: ExperimentConfig, device: torch.device
) -> tuple[Callable[[], None], int, int]:
    """A full training step on fixed random frames for ``mode`` (old | new | edge | compile:MODE)."""
    from simulator.connectome import build_connectome

    con = build_connectome(extent)
    n, b = con.n_neurons, cfg.training.batch_size
    edge_mode: EdgeMode = "node" if mode == "old" else "edge" if mode == "edge" else "sparse"
    model = FlyVisGNN(
        cfg.graph_model, torch.from_numpy(con.edge_index), n, con.n_input, seed=0, edge_mode=edge_mode
    ).to(device)
    opt = build_optimizer(model.param_groups(), base_lrs(cfg.training))
    if mode not in ("old", "edge"):
        fuse_adam(opt)
    gen = torch.Generator().manual_seed(0)
    v = (torch.rand(b, n, generator=gen) * 2 - 0.5).to(device)
    y = torch.randn(b, n, generator=gen).to(device)
    stim = torch.rand(b, con.n_input, generator=gen).to(device)
    t = cfg.training.model_copy(update={"compile": mode.split(":", 1)[1] if mode.startswith("compile:") else "off"})
    loss_fn = make_loss_fn(model, t, XNORM)

    def step_old() -> None:  # the previous loop's step: loss built inline, regularisers on the last frame
        loss = data_loss(model(v, stim), y)
        for term in regularisers(model, v[-1], cfg.training, 0, XNORM).values():
            loss = loss + term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_new() -> None:
        loss = loss_fn(v, y, stim, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return (step_old if mode in ("old", "edge") else step_new), n, con.n_edges


def _worker(mode: str, extent: int, device_name: str, threads: int, conn: Connection) -> None:
    """One mode in its own process (its own allocator state and settings): build, warm up, then time ``k``
    iterations per request until told to stop."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    if mode != "old" and mode != "edge":
        tune_allocator()  # part of the new trainer (train() calls it); the previous one did not have it
    device = torch.device(device_name)
    try:
        t0 = time.perf_counter()
        step, n, e = make_step(mode, extent, load_experiment(FULL_CONFIG), device)
        for _ in range(3 if mode.startswith("compile") else 2):  # warm-up (and compilation)
            step()
        _sync(device)
        conn.send({"neurons": n, "edges": e, "setup_s": time.perf_counter() - t0})
        while (k := conn.recv()) is not None:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(k):
                step()
            _sync(device)
            conn.send(((time.perf_counter() - t0) / k * 1e3, (time.process_time() - c0) / k * 1e3))
    except Exception as err:  # reported to the coordinator, which drops this mode
        conn.send({"error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"})


def time_modes(
    modes: list[str], extent: int, device: torch.device, n_iter: int, rounds: int,
    on_result: Callable[[dict], None] | None = None,
) -> dict[str, dict]:  # fmt: skip
    """Median ms per iteration of each mode over ``rounds`` interleaved rounds of ``n_iter`` iterations; each mode
    runs in its own worker process, one at a time."""
    ctx = mp.get_context("spawn")
    workers, results = {}, {}
    try:
        for mode in modes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(mode, extent, str(device), torch.get_num_threads(), child))
            proc.start()
            info = parent.recv() if parent.poll(timeout=3600) else {"error": "no answer"}
            if "error" in info:
                results[mode] = {"extent": extent, **info}
                proc.join(timeout=5)
                continue
            workers[mode] = (proc, parent)
            results[mode] = {"extent": extent, **info, "ms": [], "cpu_ms": []}
        for _ in range(rounds):
            for mode, (_, conn) in list(workers.items()):
                try:
                    conn.send(max(1, n_iter // 10) if mode == "edge" else n_iter)
                    answer = conn.recv()
                except (EOFError, OSError, BrokenPipeError):  # the worker died (crash, out of memory)
                    answer = {"error": "worker process died"}
                if isinstance(answer, dict):
                    results[mode].update(answer)
                    workers.pop(mode)
                else:
                    results[mode]["ms"].append(answer[0])
                    results[mode]["cpu_ms"].append(answer[1])
            for r in results.values():
                if r.get("ms"):
                    r["median_ms"] = statistics.median(r["ms"])
                    r["median_cpu_ms"] = statistics.median(r["cpu_ms"])
            if on_result is not None:
                on_result(results)
    finally:
        for proc, conn in workers.values():
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(None)
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return results


def profile_table(extent: int, cfg: ExperimentConfig, device: torch.device, mode: str = "new", n: int = 10) -> str:
    """torch.profiler's top-10 (by device time on CUDA, CPU time otherwise) for ``n`` steps of ``mode``."""
    from torch.profiler import ProfilerActivity, profile

    step, _, _ = make_step(mode, extent, cfg, device)
    for _ in range(3):
        step()
    _sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    wall = prof.key_averages().table(sort_by="cpu_time_total", row_limit=5)
    return (
        f"{n} steps of {mode}, extent {extent}, {device}\n"
        + prof.key_averages().table(sort_by=key, row_limit=10)
        + ("\nby CPU time including children (Python/launch overhead):\n" + wall)
    )


def speed(args: argparse.Namespace) -> None:
    cfg = load_experiment(FULL_CONFIG)  # full-scale model and the published regularisers
    device = torch.device(args.device)
    print(
        f"device={device} threads={torch.get_num_threads()} hidden={cfg.graph_model.hidden_dim} "
        f"batch={cfg.training.batch_size} rounds={args.rounds} x {args.n_iter} iterations (medians)"
    )
    report: dict = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "extents": {},
    }

    def save(partial: dict) -> None:
        if args.json:
            report["extents"][str(extent)] = partial
            atomic_write_json(args.json, report)

    for extent in args.extents:
        res = time_modes(args.modes, extent, device, args.n_iter, args.rounds, on_result=save)
        save(res)
        base = res.get("old", {}).get("median_ms")
        sizes = next((r for r in res.values() if "neurons" in r), {})
        print(f"extent {extent}: {sizes.get('neurons')} neurons, {sizes.get('edges')} edges")
        for mode, r in res.items():
            if "median_ms" not in r:
                print(f"  {mode:26s} failed: {r.get('error', 'no timing')}", flush=True)
                continue
            ratio = f"  old/{mode} = {base / r['median_ms']:.2f}" if base and mode != "old" else ""
            cpu_ratio = res["old"]["median_cpu_ms"] / r["median_cpu_ms"] if base and mode != "old" else None
            spread = f"{min(r['ms']):.1f}-{max(r['ms']):.1f}"
            cpu = f"  CPU {r['median_cpu_ms']:.1f} ms/it" + (f" (old/{mode} {cpu_ratio:.2f})" if cpu_ratio else "")
            print(f"  {mode:26s} {r['median_ms']:8.2f} ms/it (rounds {spread}){ratio}{cpu}", flush=True)
    if args.profile:
        tune_allocator()
        table = profile_table(args.extents[-1], cfg, device)
        args.profile.write_text(table)
        print(table)


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


def _max_r2_diff(rows: list[float], reference: list[float]) -> float | None:
    """Largest |difference| of two runs' R2 rows; None when their numbers of rows differ."""
    if len(rows) != len(reference):
        return None
    return max((abs(a - b) for a, b in zip(rows, reference, strict=True)), default=0.0)


def checkpoint_cost(args: argparse.Namespace) -> None:
    """ms per iteration of train() without R2 checkpoints, with them in the loop and in the background; the
    R2 rows of background vs loop next to loop vs loop2 (a second in-loop run: the run-to-run noise floor)."""
    from unittest import mock

    import trainer.train as train_mod
    from simulator.generate import generate_dataset
    from trainer.data import read_dataset

    cfg = load_experiment(args.config or DEMO_CONFIG)
    cfg.training.n_iterations = args.iterations or 300
    data_dir = args.work / f"data_checkpoints_{cfg.dataset}"
    if not (data_dir / "meta.json").exists():
        generate_dataset(cfg.simulation, data_dir, device=args.device, overwrite=True)
    data, device = read_dataset(data_dir), torch.device(args.device)
    probe = train_mod.build_probe(data, device)
    n_ckpt = len(train_mod.r2_checkpoints(cfg.training.n_iterations, cfg.training)) * cfg.training.n_epochs
    modes = {"none": None, "loop": "off", "background": "on", "loop2": "off"}
    ms: dict[str, list[float]] = {m: [] for m in modes}
    r2: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode, r2_async in modes.items():
            c = cfg.model_copy(deep=True)
            c.training.r2_async = r2_async or "off"
            c.training.compile = args.compile
            model = train_mod.build_model(c, data, device)
            no_checkpoints = mock.patch.object(train_mod, "r2_checkpoints", lambda niter, cfg=None: [])
            with no_checkpoints if r2_async is None else contextlib.nullcontext():
                result = train_mod.train(model, data, c.training, probe, progress=False)
            ms[mode].append(1e3 * result.seconds / len(result.losses))
            r2.setdefault(mode, [row.connectivity_r2 for row in result.r2_rows])
    print(f"{data.n_neurons} neurons, {cfg.training.n_iterations} x {cfg.training.n_epochs} iterations, "
          f"{n_ckpt} checkpoints, threads={torch.get_num_threads()}, {args.rounds} rounds (medians)")  # fmt: skip
    for mode, values in ms.items():
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"  {mode:10s} {statistics.median(values):8.2f} ms/it (rounds {rounds})", flush=True)
    diff, noise = _max_r2_diff(r2["background"], r2["loop"]), _max_r2_diff(r2["loop2"], r2["loop"])
    print(f"  R2 rows, background vs loop: {len(r2['background'])} vs {len(r2['loop'])}, max |diff| {diff}")
    print(f"  R2 rows, loop2 vs loop (run-to-run noise floor): {len(r2['loop2'])} vs {len(r2['loop'])}, "
          f"max |diff| {noise}")  # fmt: skip
    if args.json:
        figures = {
            "stage": "checkpoints",
            "device": args.device,
            "compile": args.compile,
            "neurons": data.n_neurons,
            "iterations": cfg.training.n_iterations * cfg.training.n_epochs,
            "checkpoints": n_ckpt,
            "median_ms": {mode: statistics.median(values) for mode, values in ms.items()},
            "rounds_ms": ms,
            "r2_rows": {mode: len(rows) for mode, rows in r2.items()},
            "max_r2_diff_background_vs_loop": diff,
            "max_r2_diff_loop_vs_loop2": noise,
        }
        atomic_write_json(args.json, figures)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--science", action="store_true", help="CPU science benchmark instead of the speed one")
    p.add_argument("--checkpoints", action="store_true", help="R2 checkpoint cost instead of the speed benchmark")
    p.add_argument("--config", type=Path, default=None, help="checkpoints: experiment YAML (default: the demo)")
    p.add_argument(
        "--compile", default="off", help="checkpoints: training.compile of every run (off, reduce-overhead...)"
    )
    p.add_argument("--extents", type=int, nargs="+", default=[8])
    p.add_argument("--modes", nargs="+", default=["old", "new"], help="old | new | edge | compile:MODE")
    p.add_argument("--n-iter", type=int, default=5, help="iterations per round and mode (edge: 1/10)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    p.add_argument("--json", type=Path, default=None, help="speed, checkpoints: write the figures here")
    p.add_argument("--profile", type=Path, default=None, help="speed: write the profiler table of 'new' here")
    p.add_argument("--iterations", type=int, default=None, help="science, checkpoints: training.n_iterations")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_train"), help="science, checkpoints: data and outputs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    bad = [m for m in args.modes if m not in ("old", "new", "edge") and not m.startswith("compile:")]
    if bad:
        p.error(f"--modes: unknown {bad}; use old, new, edge or compile:MODE")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    np.seterr(all="ignore")
    if args.checkpoints:
        checkpoint_cost(args)
    else:
        science(args) if args.science else speed(args)


if __name__ == "__main__":
    main()
