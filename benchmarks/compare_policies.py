"""Compare exploration policies under one protocol and one budget: the offline rule-based policy, the Optuna
(TPE) policy and, when a transcript folder is given, a replayed LLM run.

Run: ``python benchmarks/compare_policies.py [--config configs/flyvis_demo_cpu.yaml] [--iterations 16]
[--repeats 3] [--offline-repeats 1] [--transcripts DIR] [--out runs/compare_policies]``.

Each run is ``python -m agent.run`` on the same config and iteration budget in ``OUT/<policy>_<k>``; a finished
run is reused and an unfinished one resumed, so the benchmark can be stopped and started again. Optuna repeat k
uses sampler seed k (``FLYVIS_OPTUNA_SEED``). The offline policy and a replay are deterministic in their
proposals (the controller's slot seeds depend only on the iteration), so they default to one run each.

Per run, from its journal: the best replicated config (highest conn_R2 mean among configs with >= 3 runs, the
protocol's minimum for a robustness verdict) with its conn_R2 and V_rest_R2 means, the number of configs the
protocol calls robust, and the fraction of completed runs whose final R2 was >= its peak. Per policy: mean and
sample std over the repeats. Prints a markdown table, writes ``OUT/summary.json`` and ``OUT/compare_policies.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.events import RunFinished  # noqa: E402
from agent.journal import Journal  # noqa: E402
from agent.views.status import load_run_view  # noqa: E402
from experiment.atomic import atomic_write_text  # noqa: E402
from memory.variance import ROBUST_MIN_RUNS, variance_table  # noqa: E402

INSTRUCTIONS = "instruction_flyvis_62_1_gs_alternate.md"
METRICS = (
    ("best_conn", "best replicated conn_R2"),
    ("best_vrest", "its V_rest_R2"),
    ("frac_final_ge_peak", "runs with final >= peak"),
)


class RunSummary(BaseModel):
    """What one exploration run achieved."""

    model_config = ConfigDict(extra="forbid")

    policy: str
    repeat: int
    run_dir: str
    finished: bool
    iterations: int
    wall_s: float | None = None
    best_config: str | None = None
    best_runs: int = 0
    best_conn: float = math.nan
    best_vrest: float = math.nan
    n_robust: int = 0
    frac_final_ge_peak: float = math.nan
    best_single_conn: float = math.nan


def summarize(run_dir: Path, policy: str, repeat: int, wall_s: float | None) -> RunSummary:
    view = load_run_view(run_dir)
    results = view.results
    finished = view.state.finished
    out = RunSummary(
        policy=policy, repeat=repeat, run_dir=str(run_dir), finished=finished, iterations=len(results), wall_s=wall_s
    )
    if not results:
        return out
    rows = variance_table(results)
    replicated = [r for r in rows if r.runs >= ROBUST_MIN_RUNS]
    if replicated:
        best = max(replicated, key=lambda r: (r.conn_mean, -r.iterations[0]))
        out.best_config, out.best_runs = best.config_id, best.runs
        out.best_conn, out.best_vrest = best.conn_mean, best.vrest_mean
    out.n_robust = sum(r.verdict == "robust" for r in rows)
    completed = [r for r in results if r.status == "completed" and r.trajectory is not None]
    if completed:
        out.frac_final_ge_peak = sum(r.trajectory.final_ge_peak for r in completed) / len(completed)
    out.best_single_conn = max(r.conn_r2 for r in results)
    return out


def run_policy(
    policy: str, repeat: int, args: argparse.Namespace, run_dir: Path, log: Path
) -> tuple[int, float | None]:
    """Start (or resume) one run; returns its exit code and wall time (None when it was already finished)."""
    journal = run_dir / "journal.jsonl"
    if journal.exists() and Journal(run_dir).has(RunFinished):
        return 0, None
    llm = "replay" if policy == "llm-replay" else policy
    cmd = [sys.executable, "-m", "agent.run", "--instructions", INSTRUCTIONS, "--run-dir", str(run_dir)]
    cmd += ["--llm", llm]
    if journal.exists():
        cmd += ["--resume"]
    else:
        cmd += ["--config", str(args.config), "--iterations", str(args.iterations)]
    if llm == "replay":
        cmd += ["--transcripts", str(args.transcripts), "--allow-prompt-drift"]
    env = {**os.environ, "FLYVIS_OPTUNA_SEED": str(repeat), "PYTHONUNBUFFERED": "1"}
    env.pop("ANTHROPIC_API_KEY", None)
    t0 = time.monotonic()
    with log.open("a", encoding="utf-8") as fh:
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    return code, time.monotonic() - t0


def mean_std(values: list[float]) -> tuple[float, float, int]:
    xs = [v for v in values if math.isfinite(v)]
    if not xs:
        return math.nan, math.nan, 0
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std, len(xs)


def _cell(mean: float, std: float, n: int, digits: int = 3) -> str:
    if n == 0:
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def render_table(runs: list[RunSummary]) -> str:
    """Markdown: one row per policy, mean ± sample std over its repeats."""
    policies = list(dict.fromkeys(r.policy for r in runs))
    head = "| policy | runs | " + " | ".join(label for _, label in METRICS) + " | robust configs | minutes per run |"
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for p in policies:
        mine = [r for r in runs if r.policy == p]
        cells = [_cell(*mean_std([getattr(r, key) for r in mine])) for key, _ in METRICS]
        robust = _cell(*mean_std([float(r.n_robust) for r in mine]), digits=1)
        minutes = _cell(*mean_std([r.wall_s / 60 for r in mine if r.wall_s is not None]), digits=1)
        done = sum(r.finished for r in mine)
        lines.append(f"| {p} | {done}/{len(mine)} | " + " | ".join(cells) + f" | {robust} | {minutes} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[RunSummary], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r.policy for r in runs))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, (key, label) in zip(axes, METRICS, strict=True):
        for i, p in enumerate(policies):
            values = [getattr(r, key) for r in runs if r.policy == p]
            mean, std, n = mean_std(values)
            if n:
                ax.bar(i, mean, yerr=std if n > 1 else None, color=f"C{i}", alpha=0.6, capsize=4)
                ax.plot([i] * n, [v for v in values if math.isfinite(v)], "k.", ms=6)
        ax.set_xticks(range(len(policies)), policies)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, 1)
    fig.suptitle("policies under one protocol (bars: mean, whiskers: std over repeats, dots: runs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "flyvis_demo_cpu.yaml")
    p.add_argument("--iterations", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="Optuna runs (sampler seeds 0..N-1)")
    p.add_argument("--offline-repeats", type=int, default=1, help="offline runs (deterministic proposals)")
    p.add_argument("--transcripts", type=Path, help="a recorded LLM run's transcripts/ folder to replay")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "compare_policies")
    p.add_argument("--summarize-only", action="store_true", help="do not start runs; summarise those present")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = [("offline", k) for k in range(args.offline_repeats)] + [("optuna", k) for k in range(args.repeats)]
    if args.transcripts is not None:
        plan.append(("llm-replay", 0))
    walls: dict[str, float | None] = {}
    previous = args.out / "summary.json"
    if previous.exists():
        walls = {r["run_dir"]: r["wall_s"] for r in json.loads(previous.read_text(encoding="utf-8"))["runs"]}
    runs: list[RunSummary] = []
    for policy, k in plan:
        run_dir = args.out / f"{policy}_{k}"
        wall = walls.get(str(run_dir))
        if not args.summarize_only:
            code, took = run_policy(policy, k, args, run_dir, args.out / f"{policy}_{k}.log")
            wall = took if took is not None else wall
            print(f"{policy} repeat {k}: exit {code}" + (f" in {took / 60:.1f} min" if took else ""), flush=True)
        if (run_dir / "journal.jsonl").exists():
            runs.append(summarize(run_dir, policy, k, wall))
    table = render_table(runs)
    print(f"\n{args.iterations} iterations on {args.config.name}\n\n{table}")
    summary = {
        "config": str(args.config),
        "iterations": args.iterations,
        "runs": [r.model_dump() for r in runs],
        "table": table,
    }
    atomic_write_text(previous, json.dumps(summary, indent=2, allow_nan=True) + "\n")
    if runs:
        plot(runs, args.out / "compare_policies.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
