"""A fast stand-in for ``python -m trainer.slot`` that fails on purpose (same CLI, same output files).

``FAULT_SLOT_MODES`` maps iterations to faults, e.g. ``1:exit137,2:hang``; the iteration is read from
the controller-owned seed. Faults: ``exit137`` (killed by SIGKILL, as the OOM killer does it),
``hang`` (sleeps past any time limit), ``no_metrics`` (claims success, writes no metrics file),
``corrupt_metrics`` (a truncated metrics.json), ``nan_metrics`` (a metrics.json holding NaN),
``nan_loss`` (the failed status the real slot writes on a non-finite loss), ``over_time`` (succeeds,
reporting more training minutes than ``claude.time_limit_min``). Any other iteration succeeds with
deterministic metrics derived from its config and seed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from experiment.config import load_experiment  # noqa: E402
from experiment.records import (  # noqa: E402
    METRICS_JSON,
    R2_HEADER,
    Metrics,
    R2Row,
    SlotStatus,
    format_r2_row,
    utc_now,
    write_metrics,
    write_status,
)

MODES_ENV = "FAULT_SLOT_MODES"


def fault_of(iteration: int) -> str | None:
    """The fault configured for ``iteration`` in FAULT_SLOT_MODES, if any."""
    for item in os.environ.get(MODES_ENV, "").split(","):
        it, _, mode = item.partition(":")
        if it.strip() == str(iteration):
            return mode.strip()
    return None


def good_metrics(n_alternations: int, seed: int, minutes: float) -> Metrics:
    jitter = ((seed * 7919) % 97) / 97.0 - 0.5
    conn = round(min(0.99, 0.70 + 0.02 * n_alternations + 0.02 * jitter), 6)
    return Metrics(
        connectivity_R2=conn,
        tau_R2=round(0.9 + 0.01 * jitter, 6),
        V_rest_R2=round(0.3 + 0.05 * jitter, 6),
        cluster_accuracy=round(0.8 + 0.02 * jitter, 6),
        test_R2=0.95,
        test_pearson=0.97,
        training_time_min=minutes,
    )


def write_r2_log(out: Path, conn: float) -> None:
    rows = [R2Row(epoch=0, iteration=k * 100, connectivity_r2=round(conn * k / 4, 6), phase="W") for k in range(1, 5)]
    (out / "connectivity_r2.log").write_text(R2_HEADER + "\n" + "".join(format_r2_row(r) for r in rows))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--iterations", type=int)
    args = p.parse_args()
    cfg = load_experiment(args.config)
    seed = cfg.simulation.seed
    fault = fault_of(seed // 1000)
    args.out.mkdir(parents=True, exist_ok=True)
    write_status(args.out, SlotStatus(state="running", pid=os.getpid(), started_at=utc_now()))
    print(f"fault slot: seed {seed}", flush=True)
    if fault == "exit137":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        time.sleep(60)  # far past the test time limit; bounded so a leaked slot ends by itself
    if fault == "nan_loss":
        print("slot failed: NaN loss at iteration 17", file=sys.stderr, flush=True)
        write_status(args.out, SlotStatus(state="failed", exit_code=1, reason="NaN loss at iteration 17"))
        return 1
    minutes = 2 * cfg.claude.time_limit_min if fault == "over_time" else 0.01
    metrics = good_metrics(cfg.training.n_alternations, seed, minutes)
    write_r2_log(args.out, metrics.connectivity_R2)
    if fault == "corrupt_metrics":
        (args.out / METRICS_JSON).write_text(json.dumps(metrics.model_dump())[:40])
    elif fault == "nan_metrics":
        (args.out / METRICS_JSON).write_text(json.dumps({**metrics.model_dump(), "tau_R2": float("nan")}))
    elif fault != "no_metrics":
        write_metrics(args.out, metrics)
    write_status(args.out, SlotStatus(state="succeeded", exit_code=0, pid=os.getpid(), ended_at=utc_now()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
