"""Stimulus speed and how near V_rest each stimulus keeps the voltage (issue 21, the stimulus factor).

    python benchmarks/stimulus_voltage.py stream --extent 4 --frames 20000     # frames/s of each stream alone
    python benchmarks/stimulus_voltage.py voltage DATASET_DIR ...             # one row per dataset

``voltage`` reads train/voltage.npy and V_rest.npy: per neuron the std of its voltage and whether its mean lies
within 2 std of its V_rest (V_rest is lin_phi's intercept, identified only where the voltage visits it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def stream_speed(extent: int, n_frames: int, seed: int) -> list[dict]:
    """Frames/s of each stimulus stream alone (no ODE), after one warm-up sequence."""
    from simulator.connectome import hex_columns
    from simulator.stimulus import make_stream

    columns, rows = hex_columns(extent), []
    for kind in ("procedural", "natural"):
        stream = make_stream(kind, columns, seed, 0.02, split="train", davis_root=None)
        stream.frames(100)
        t0 = time.perf_counter()
        frames = stream.frames(n_frames)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "stimulus": kind, "extent": extent, "columns": len(columns), "frames": n_frames,
                "frames_per_s": round(n_frames / dt), "mean": round(float(frames.mean()), 3),
                "std": round(float(frames.std()), 3),
                "mean_abs_frame_step": round(float(np.abs(np.diff(frames, axis=0)).mean()), 4),
            }
        )  # fmt: skip
    return rows


def voltage_stats(path: Path) -> dict:
    """Per-neuron voltage std (median) and the fraction of neurons whose mean is within 2 std of V_rest."""
    v = np.load(path / "train" / "voltage.npy", mmap_mode="r")
    v_rest = np.load(path / "V_rest.npy")
    mu, sd = np.asarray(v.mean(0), dtype=np.float64), np.asarray(v.std(0), dtype=np.float64)
    lever = np.abs(mu - v_rest) / np.maximum(sd, 1e-12)
    meta = json.loads((path / "meta.json").read_text())
    return {
        "dataset": str(path), "stimulus": meta["stimulus"]["train"]["kind"], "frames": int(v.shape[0]),
        "neurons": int(v.shape[1]), "std_median": round(float(np.median(sd)), 4),
        "within_2std": round(float((lever <= 2).mean()), 3), "lever_median": round(float(np.median(lever)), 2),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stream", help="frames/s of each stimulus stream alone")
    s.add_argument("--extent", type=int, default=4)
    s.add_argument("--frames", type=int, default=20000)
    s.add_argument("--seed", type=int, default=1)
    v = sub.add_parser("voltage", help="voltage spread against V_rest per dataset")
    v.add_argument("datasets", nargs="+", type=Path)
    args = p.parse_args(argv)
    rows = (
        stream_speed(args.extent, args.frames, args.seed)
        if args.cmd == "stream"
        else [voltage_stats(d) for d in args.datasets]
    )
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
