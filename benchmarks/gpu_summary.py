"""Gather the GPU check's stage JSON files into OUT/gpu_check.json and print the figures the README table needs.

python benchmarks/gpu_summary.py OUT
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

STAGE_FILES = ("env", "speed", "compile", "datagen", "slots", "science", "checkpoints", "checkpoints_compiled")
SCIENCE_KEYS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_pearson")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {"missing": f"{path.name}: {type(err).__name__}"}


def _speed_lines(name: str, data: dict[str, Any]) -> list[str]:
    lines = []
    for extent, modes in (data.get("extents") or {}).items():
        base = (modes.get("old") or modes.get("new") or {}).get("median_ms")
        for mode, r in modes.items():
            if "median_ms" not in r:  # a mode that failed to start (compile error, out of memory)
                lines.append(f"{name}: extent {extent} {mode}: failed: {r.get('error', 'no timing')}")
                continue
            ratio = f", {base / r['median_ms']:.2f}x vs {'old' if 'old' in modes else 'new'}" if base else ""
            lines.append(f"{name}: extent {extent} {mode}: {r['median_ms']:.2f} ms/iteration{ratio}")
    return lines


def science_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread (min-max) of each metric per (set, schedule) over the finished runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r.get("set", "?"), r.get("schedule", "?")), []).append(r)
    table = []
    for (set_name, schedule), rows in sorted(groups.items()):
        done = [r for r in rows if r.get("metrics")]
        entry: dict[str, Any] = {"set": set_name, "schedule": schedule, "runs": len(rows), "finished": len(done)}
        for key in SCIENCE_KEYS:
            vals = [r["metrics"][key] for r in done if r["metrics"].get(key) is not None]
            if vals:
                entry[key] = {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)}
        ms = [r["ms_per_iteration"] for r in done if r.get("ms_per_iteration")]
        if ms:
            entry["ms_per_iteration"] = statistics.fmean(ms)
        table.append(entry)
    return table


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    summary: dict[str, Any] = {k: _load(out / f"{k}.json") for k in STAGE_FILES}
    stages = out / "stages.txt"
    summary["stages"] = stages.read_text().splitlines() if stages.exists() else []
    lines = []
    for name in ("speed", "compile"):
        lines += _speed_lines(name, summary[name])
    gen = (summary["datagen"].get("runs") or [{}])[0]
    if gen.get("timings_s"):
        lines.append(f"datagen: {gen.get('n_frames')} frames, {gen.get('n_neurons')} neurons on {gen.get('device')}: "
                     f"wall {gen.get('wall_s', 0):.1f} s, generator timings {gen['timings_s']}")  # fmt: skip
    slots = summary["slots"]
    for label, block in (slots.get("runs") or {}).items():
        ms = [r.get("ms_per_iteration") for r in block["slots"]]
        ms_text = ", ".join(f"{m:.2f}" if m else "-" for m in ms)
        lines.append(f"slots {label}: wall {block['wall_s']:.1f} s, ms/iteration per slot: {ms_text}")
    for key in ("batch_over_alone_wall", "batch_over_alone_training", "batch_over_alone_training_rate"):
        if key in slots:
            lines.append(f"slots {key}: {slots[key]:.2f}")
    for name in ("checkpoints", "checkpoints_compiled"):
        ck = summary[name]
        if "median_ms" in ck:
            ms_text = ", ".join(f"{mode} {v:.2f}" for mode, v in ck["median_ms"].items())
            lines.append(f"{name}: ms/iteration {ms_text}; R2 rows {ck['r2_rows']}, background vs loop max |diff| "
                         f"{ck['max_r2_diff_background_vs_loop']}, loop2 vs loop (noise floor) max |diff| "
                         f"{ck.get('max_r2_diff_loop_vs_loop2')}")  # fmt: skip
    table = science_table(summary["science"].get("runs") or [])
    summary["science_table"] = table
    for e in table:
        cells = "  ".join(
            f"{k}={e[k]['mean']:.3f} [{e[k]['min']:.3f}, {e[k]['max']:.3f}]" for k in SCIENCE_KEYS[:3] if k in e
        )
        ms = f"  {e['ms_per_iteration']:.2f} ms/it" if "ms_per_iteration" in e else ""
        lines.append(f"science {e['set']} {e['schedule']}: {e['finished']}/{e['runs']} finished  {cells}{ms}")
    summary["lines"] = lines
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n".join(lines))
    print(f"(all figures: {out / 'gpu_check.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
