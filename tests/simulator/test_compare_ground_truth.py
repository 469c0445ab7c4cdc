from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_ground_truth.py"


def test_comparison_prints_a_row_per_statistic_for_the_synthetic_ground_truth() -> None:
    cmd = [sys.executable, str(SCRIPT), "--extent", "1", "--frames", "50", "--checkpoint", ""]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| statistic")]
    cells = {r.split(" | ")[0][2:]: r.split(" | ")[1:] for r in rows}
    assert len(cells["W std"]) == 1  # no checkpoint column
    assert float(cells["tau types at ~dt (<= 0.0201)"][0].rstrip(" |")) == 51
    assert 0 <= float(cells["neurons never above 0 (%)"][0].rstrip(" |")) <= 100
    assert "excitatory Perron root (type level)" in cells and "drift y rms" in cells
