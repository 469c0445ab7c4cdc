"""A fast stand-in for ``python -m trainer.slot`` in controller tests (same CLI, same output files).

Metrics are a deterministic function of the config and its seeds, so a resumed run and an
uninterrupted run must produce identical files. ``FAKE_SLOT_CRASH`` (comma-separated iterations,
derived from the seed) makes those slots die by SIGKILL, like an out-of-memory kill.
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from experiment.config import load_experiment  # noqa: E402
from experiment.records import (  # noqa: E402
    R2_HEADER,
    Metrics,
    R2Row,
    SlotStatus,
    format_r2_row,
    utc_now,
    write_metrics,
    write_status,
)


def tiny_png(path: Path) -> None:
    """A 4x4 grey PNG written without any imaging library."""
    raw = b"".join(b"\x00" + bytes([128] * 4) for _ in range(4))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--iterations", type=int)
    args = p.parse_args()
    cfg = load_experiment(args.config)
    seed = cfg.simulation.seed
    iteration = seed // 1000
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "fake_slot_runs.log").open("a") as runs:  # tests count trainings per slot
        runs.write(f"{os.getpid()}\n")
    write_status(args.out, SlotStatus(state="running", pid=os.getpid(), started_at=utc_now()))
    time.sleep(float(os.environ.get("FAKE_SLOT_SLEEP", "0.2")))
    if str(iteration) in os.environ.get("FAKE_SLOT_CRASH", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    t = cfg.training
    jitter = ((seed * 7919) % 97) / 97.0 - 0.5  # deterministic "run-to-run" noise in [-0.5, 0.5)
    conn = min(0.99, 0.70 + 0.02 * t.n_alternations - 0.1 * t.alternate_vrest_ratio + 0.02 * jitter)
    rows = []
    n = 8
    for k in range(1, n + 1):
        phase = "W" if (k % 2) else "V_rest"
        rows.append(R2Row(epoch=0, iteration=k * 100, connectivity_r2=round(conn * k / n, 6), phase=phase))
    (args.out / "connectivity_r2.log").write_text(R2_HEADER + "\n" + "".join(format_r2_row(r) for r in rows))
    tiny_png(args.out / "activity.png")
    if not os.environ.get("FAKE_SLOT_NO_PANEL"):  # a slot of an older run: activity.png only
        tiny_png(args.out / "panel.png")
    write_metrics(
        args.out,
        Metrics(
            connectivity_R2=round(conn, 6),
            tau_R2=round(0.9 + 0.01 * jitter, 6),
            V_rest_R2=round(0.3 + 0.05 * jitter, 6),
            cluster_accuracy=round(0.8 + 0.02 * jitter, 6),
            test_R2=0.95,
            test_pearson=0.97,
            training_time_min=0.01,
        ),
    )
    write_status(args.out, SlotStatus(state="succeeded", exit_code=0, pid=os.getpid(), ended_at=utc_now()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
