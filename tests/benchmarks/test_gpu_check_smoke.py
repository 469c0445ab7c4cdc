"""benchmarks/gpu_check.sh end to end on the CPU with tiny sizes: the one script a GPU session runs must work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Each stage's limit (gpu_check.sh's T_*; its runs get the limit less 10 s) only bounds a hang here: the smoke
# defaults (datagen 120 s, slots 300 s, checkpoints 240 s) cut the checkpoints stage on 2 cores with two CPU
# burners beside the suite. The whole script is bounded by the sum of the limits.
STAGE_LIMIT_S = 900


def test_the_slots_and_checkpoints_stages_run_alone_on_the_cpu(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        "DEVICE": "cpu",
        "SMOKE": "1",
        "STAGES": "env slots checkpoints",
        "PYTHON": sys.executable,
        **{f"T_{stage}": str(STAGE_LIMIT_S) for stage in ("DATAGEN", "SLOTS", "CHECKPOINTS")},
    }
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * STAGE_LIMIT_S,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    stages = (tmp_path / "out" / "stages.txt").read_text()
    assert "datagen rc=0" in stages and "slots rc=0" in stages and "checkpoints rc=0" in stages, stages
    slots = json.loads((tmp_path / "out" / "slots.json").read_text())
    states = [s["state"] for run in slots["runs"].values() for s in run["slots"]]
    assert states == ["ok"] * 3  # one alone, a batch of two
    assert slots["batch_over_alone_wall"] > 0 and slots["batch_over_alone_training_rate"] > 0
    checkpoints = json.loads((tmp_path / "out" / "checkpoints.json").read_text())
    assert checkpoints["r2_rows"]["background"] == checkpoints["r2_rows"]["loop"] == checkpoints["r2_rows"]["loop2"] > 0
    assert checkpoints["max_r2_diff_background_vs_loop"] == 0.0  # CPU training is deterministic: identical rows
    assert checkpoints["max_r2_diff_loop_vs_loop2"] == 0.0
    lines = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["lines"]
    assert any(line.startswith("slots batch_of_2") for line in lines)
    assert any(line.startswith("checkpoints: ms/iteration") and "loop2 vs loop" in line for line in lines)
