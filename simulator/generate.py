"""Generate a dataset: connectome + ground truth + stimulus -> simulated frames on disk.

``generate_dataset`` streams frames to the .npy files in chunks (RAM does not grow with T), writes into a
temporary sibling folder and renames it at the end, so a failure leaves no half-written dataset.
CLI: ``python -m simulator.generate --config FILE --seed N --out DIR [--extent R] [--n-frames T] [--stimulus S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import platform
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from experiment.atomic import atomic_write_json
from experiment.config import ConfigError, SimulationConfig, load_experiment
from simulator.dataset import ACTIVITY_PNG, FORMAT, META, TYPE_NAMES
from simulator.errors import SimulatorError

CHUNK_FRAMES = 256
STEADY_GREY = 0.5


def _pick_device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SimulatorError(f"device: {device!r} is not a torch device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SimulatorError("device: cuda requested but no CUDA device is available")
    return dev


def _prepare_output(out_dir: Path, overwrite: bool) -> Path:
    """Check the destination and create the temporary sibling folder; returns it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SimulatorError(f"{out_dir}: output path exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SimulatorError(f"{out_dir}: output folder is not empty (use overwrite=True / --overwrite)")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        (tmp / "train").mkdir(parents=True)
        (tmp / "test").mkdir()
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SimulatorError(f"{out_dir}: output folder is not writable ({err.strerror or err})") from None
    return tmp


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished temporary folder into place (replacing an old dataset if present)."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict[str, str | None]:
    import torch

    try:
        flyvis = importlib.metadata.version("flyvis")
    except importlib.metadata.PackageNotFoundError:
        flyvis = None
    return {
        "format": FORMAT,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "flyvis": flyvis,
    }


def _simulate_split(stepper, stream, writers, *, n_frames, n_input, column, noise_level, n_steady, seed, progress):
    """Steady state, then chunks: stimulus -> Euler steps -> rows appended to the writers.

    Returns the first frames of (voltage, stimulus) for the activity plot.
    """
    import torch

    from simulator.plots import MAX_FRAMES

    dev, n = stepper.device, stepper.n_neurons
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(np.random.SeedSequence([seed, 2]).generate_state(1)[0]))
    v = stepper.V_rest.clone()
    stepper.steady_state(v, STEADY_GREY, n_steady)
    chunk = min(CHUNK_FRAMES, n_frames)
    v_buf = torch.empty(chunk, n, device=dev)
    y_buf = torch.empty(chunk, n, device=dev)
    noise = torch.empty(chunk, n, device=dev) if noise_level > 0 else None
    keep_v, keep_s = [], []
    bar = _progress(n_frames, progress)
    for start in range(0, n_frames, chunk):
        k = min(chunk, n_frames - start)
        stim = stream.frames(k)[:, column[:n_input]].astype(np.float32)
        stim_t = torch.from_numpy(stim).to(dev)
        if noise is not None:
            torch.randn(noise.shape, generator=gen, device=dev, out=noise).mul_(noise_level)
        stepper.run(v, stim_t, None if noise is None else noise[:k], v_buf[:k], y_buf[:k])
        if not torch.isfinite(v).all():
            raise SimulatorError(f"simulation diverged (non-finite voltage) at frame {start + k}")
        v_np, y_np = v_buf[:k].cpu().numpy(), y_buf[:k].cpu().numpy()
        writers["voltage"].write(v_np)
        writers["y"].write(y_np)
        writers["stimulus"].write(stim)
        if start < MAX_FRAMES:
            keep_v.append(v_np[: MAX_FRAMES - start].copy())
            keep_s.append(stim[: MAX_FRAMES - start].copy())
        bar.update(k)
    bar.close()
    return np.concatenate(keep_v), np.concatenate(keep_s)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled or not sys.stderr.isatty(), leave=False)


def generate_dataset(
    sim: SimulationConfig,
    out_dir: str | Path,
    *,
    seed: int | None = None,
    extent: int | None = None,
    n_frames: int | None = None,
    device: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
    backend: Literal["auto", "numpy", "torch"] = "auto",
) -> Path:
    """Simulate ``sim`` (with optional overrides) and write the dataset folder ``out_dir``; returns it.

    ``device``: cuda when available by default (the Euler loop runs there, frames stream to disk per chunk);
    ``backend``: EulerStepper's (``torch`` runs the GPU code path on the CPU too).
    """
    import torch

    from simulator.connectome import build_connectome
    from simulator.dynamics import EulerStepper
    from simulator.ground_truth import load_ground_truth, weight_stats
    from simulator.npy_stream import NpyStreamWriter
    from simulator.plots import centre_neurons, write_activity_png
    from simulator.stimulus import make_stream

    t0 = time.perf_counter()
    seed = sim.seed if seed is None else int(seed)
    extent = sim.extent if extent is None else extent
    n_train = sim.n_frames if n_frames is None else int(n_frames)
    if n_train < 1:
        raise SimulatorError(f"n_frames: must be >= 1, got {n_train}")
    out_dir = Path(out_dir).expanduser().resolve()
    con = build_connectome(extent, sim.connectome)
    t1 = time.perf_counter()
    gt = load_ground_truth(sim.ground_truth, con)
    t2 = time.perf_counter()
    dev = _pick_device(device)
    streams = {
        split: make_stream(sim.stimulus, con.columns, seed, sim.delta_t, split=split, davis_root=sim.davis_root)
        for split in ("train", "test")
    }
    tmp = _prepare_output(out_dir, overwrite)
    try:
        np.save(tmp / "edge_index.npy", con.edge_index)
        np.save(tmp / "W.npy", gt.W)
        np.save(tmp / "tau.npy", gt.tau)
        np.save(tmp / "V_rest.npy", gt.V_rest)
        np.save(tmp / "types.npy", con.types)
        np.save(tmp / "positions.npy", con.positions)
        np.save(tmp / "input_index.npy", np.arange(con.n_input, dtype=np.int64))
        atomic_write_json(tmp / TYPE_NAMES, con.type_names)
        stepper = EulerStepper(
            torch.from_numpy(gt.W).to(dev),
            torch.from_numpy(con.edge_index).to(dev),
            torch.from_numpy(gt.tau).to(dev),
            torch.from_numpy(gt.V_rest).to(dev),
            con.n_input,
            sim.delta_t,
            backend=backend,
        )
        frames = {"train": n_train, "test": sim.n_test_frames}
        timings = {"connectome": t1 - t0, "ground_truth": t2 - t1}
        kept = {}
        for split, noise_level in (("train", sim.noise_model_level), ("test", 0.0)):
            ts = time.perf_counter()
            shapes = {"voltage": con.n_neurons, "y": con.n_neurons, "stimulus": con.n_input}
            with contextlib.ExitStack() as stack:
                writers = {
                    k: stack.enter_context(NpyStreamWriter(tmp / split / f"{k}.npy", (frames[split], w)))
                    for k, w in shapes.items()
                }
                kept[split] = _simulate_split(
                    stepper, streams[split], writers, n_frames=frames[split], n_input=con.n_input,
                    column=con.column, noise_level=noise_level, n_steady=round(sim.steady_state_s / sim.delta_t),
                    seed=seed + (0 if split == "train" else 1_000_003), progress=progress,
                )  # fmt: skip
            timings[split] = time.perf_counter() - ts
        neurons = centre_neurons(con.type_names, con.types, con.positions)
        write_activity_png(
            tmp / ACTIVITY_PNG, *kept["train"], neurons, sim.delta_t,
            f"extent {extent}, {sim.ground_truth if gt.kind == 'synthetic' else 'checkpoint'} ground truth, "
            f"{sim.stimulus} stimulus, noise {sim.noise_model_level}, seed {seed} (centre-column neurons)",
        )  # fmt: skip
        timings["total"] = time.perf_counter() - t0
        meta = {
            "format": FORMAT,
            "seed": seed,
            "extent": extent,
            "n_neurons": con.n_neurons,
            "n_input": con.n_input,
            "n_edges": con.n_edges,
            "n_types": con.n_types,
            "delta_t": sim.delta_t,
            "noise_model_level": sim.noise_model_level,
            "steady_state_s": sim.steady_state_s,
            "connectome": str(con.spec.path.name),
            "ground_truth": {"kind": gt.kind, "path": gt.path, "W_stats": weight_stats(gt.W)},
            "stimulus": {"train": streams["train"].describe(), "test": streams["test"].describe()},
            "n_frames": frames,
            "device": str(dev),
            "backend": "numpy" if stepper.use_numpy else "torch",
            "versions": _versions(),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        atomic_write_json(tmp / META, meta)
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; bad input prints one line and exits 2."""
    p = argparse.ArgumentParser(prog="python -m simulator.generate", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="experiment YAML (its simulation: section is used)")
    p.add_argument("--seed", type=int, default=None, help="simulation seed (default: simulation.seed)")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--extent", type=int, default=None)
    p.add_argument("--n-frames", type=int, default=None, help="training frames (default: simulation.n_frames)")
    p.add_argument("--stimulus", choices=get_args(SimulationConfig.model_fields["stimulus"].annotation), default=None,
                   help="overrides simulation.stimulus (default: the config's)")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_experiment(args.config)
        sim = cfg.simulation if args.stimulus is None else cfg.simulation.model_copy(update={"stimulus": args.stimulus})
        out = generate_dataset(
            sim, args.out, seed=args.seed, extent=args.extent, n_frames=args.n_frames,
            device=args.device, progress=args.progress, overwrite=args.overwrite,
        )  # fmt: skip
    except (SimulatorError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
