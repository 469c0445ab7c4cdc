"""The GPU check's run stages: datasets, several training runs at once on one device, one JSON of their results.

Each run is ``python -m trainer.run`` (one torch thread, one BLAS thread) on a dataset written by
``python -m simulator.generate``; runs of one stage start together (the GPU is shared, through CUDA MPS when
gpu_check.sh started it) and are killed at the stage deadline. The JSON has, per run, its config overrides,
state (ok | failed | timeout), wall seconds, ms per iteration (training time / iterations), the metrics and the
last connectivity_R2 row of its log (so a run killed at the deadline still shows how far it got).

    python benchmarks/gpu_runs.py datagen --out DIR --json FILE [--config CFG] [--set key=value ...]
    python benchmarks/gpu_runs.py slots --data DIR --work DIR --json FILE [--slots 4] [--iterations 2000]
    python benchmarks/gpu_runs.py science --work DIR --json FILE [--deadline-s 240] [--scale 1.0] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL = REPO / "configs" / "flyvis_62_1_gs_alternate.yaml"
SCIENCE = REPO / "configs" / "flyvis_science_cpu.yaml"
DEMO = REPO / "configs" / "flyvis_demo_cpu.yaml"
SCHEDULES: dict[str, dict[str, Any]] = {
    "standard": {"training.alternate_training": False},
    "cyclic_W_first": {"training.alternate_training": True, "training.alternate_schedule": "cyclic",
                       "training.alternate_first_phase": "W"},
    "cyclic_V_rest_first": {"training.alternate_training": True, "training.alternate_schedule": "cyclic",
                            "training.alternate_first_phase": "V_rest"},
}  # fmt: skip


def parse_value(text: str) -> Any:
    """``key=value`` values: JSON when it parses (numbers, true/false, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def derive_config(base: Path, out: Path, overrides: dict[str, Any]) -> Path:
    """``base`` with dotted-key ``overrides`` applied, validated against the schema, written as YAML to ``out``."""
    from experiment.config import load_experiment, parse_experiment
    from experiment.yaml_io import write_yaml_roundtrip

    data = load_experiment(base).model_dump(mode="json")
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    parse_experiment(data, f"{base} with {overrides}")  # one-line ConfigError naming the bad key
    out.parent.mkdir(parents=True, exist_ok=True)
    write_yaml_roundtrip(out, data)
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
    return env


@dataclass
class Job:
    """One subprocess of a stage and what came of it."""

    name: str
    argv: list[str]
    out: Path
    info: dict[str, Any] = field(default_factory=dict)
    state: str = "pending"
    wall_s: float | None = None
    exit_code: int | None = None
    _popen: subprocess.Popen[bytes] | None = None
    _t0: float = 0.0

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        log = (self.out / "run.log").open("ab")
        self._t0 = time.perf_counter()
        self._popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=REPO,
                                       start_new_session=True)  # fmt: skip
        log.close()
        self.state = "running"

    def poll(self) -> bool:
        """True once finished (sets state and wall time)."""
        if self._popen is None or self.state != "running":
            return True
        code = self._popen.poll()
        if code is None:
            return False
        self.exit_code, self.wall_s = code, time.perf_counter() - self._t0
        self.state = "ok" if code == 0 else "failed"
        return True

    def kill(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self._popen.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._popen.wait(timeout=3)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.wall_s = time.perf_counter() - self._t0
            self.state = "timeout"


def run_jobs(jobs: list[Job], deadline_s: float, max_running: int | None = None) -> None:
    """Start the jobs (at most ``max_running`` at a time) and wait; whatever runs at the deadline is killed."""
    end = time.monotonic() + deadline_s
    pending = list(jobs)
    running: list[Job] = []
    try:
        while pending or running:
            running = [j for j in running if not j.poll()]
            while pending and (max_running is None or len(running) < max_running):
                job = pending.pop(0)
                job.start()
                running.append(job)
            if time.monotonic() > end:
                break
            time.sleep(0.2)
    finally:
        for j in running:
            j.kill()
        for j in pending:
            j.state = "not started (deadline)"


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]


PROGRESS = re.compile(r"train: (\d+)/\d+ \(\d+%\) (\d+(?:\.\d+)?)s")


def training_rate(log: Path) -> float | None:
    """Iterations per second of training from a run log's last progress line (works for a run cut short)."""
    try:
        found = PROGRESS.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    if not found:
        return None
    done, seconds = int(found[-1][0]), float(found[-1][1])
    return done / seconds if seconds > 0 else None


def train_job(name: str, config: Path, data: Path, out: Path, device: str, iterations: int | None, **info: Any) -> Job:
    argv = [sys.executable, "-m", "trainer.run", "--config", str(config), "--data", str(data), "--out", str(out),
            "--device", device, "--threads", "1"]  # fmt: skip
    if iterations:
        argv += ["--iterations", str(iterations)]
    return Job(name, argv, out, info={**info, "iterations": iterations})


def gen_job(name: str, config: Path, out: Path, device: str, seed: int, **info: Any) -> Job:
    argv = [sys.executable, "-m", "simulator.generate", "--config", str(config), "--seed", str(seed),
            "--out", str(out / "data"), "--device", device, "--overwrite"]  # fmt: skip
    return Job(name, argv, out, info={**info, "seed": seed})


def describe(job: Job) -> dict[str, Any]:
    """A job's JSON row: state, wall time, and for training runs metrics, ms/iteration and the last R2 row."""
    row: dict[str, Any] = {"name": job.name, **job.info, "state": job.state, "wall_s": job.wall_s,
                           "exit_code": job.exit_code}  # fmt: skip
    metrics_file = job.out / "metrics.json"
    if metrics_file.exists():
        m = json.loads(metrics_file.read_text())
        row["metrics"] = m
        iters = job.info.get("iterations")
        if iters and m.get("training_time_min") is not None:
            row["ms_per_iteration"] = m["training_time_min"] * 60_000.0 / iters
    r2 = job.out / "connectivity_r2.log"
    if r2.exists():
        from experiment.records import read_r2_log

        try:
            rows = read_r2_log(r2)
        except Exception as err:  # a log this stage cannot read is reported, not fatal
            row["r2_log_error"] = " ".join(str(err).split())[:200]
            rows = []
        if rows:
            last = rows[-1]
            row["last_r2"] = {"iteration": last.iteration, "connectivity_r2": last.connectivity_r2, "phase": last.phase}
    row["training_it_per_s"] = training_rate(job.out / "run.log")
    if job.state != "ok":
        row["log_tail"] = _tail(job.out / "run.log")
    return row


def write_json(path: Path, payload: dict[str, Any]) -> None:
    from experiment.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, default=str))


# -- stages -------------------------------------------------------------------------------------------------------


def cmd_datagen(args: argparse.Namespace) -> int:
    """One dataset, timed (the generator's own split timings come from its meta.json)."""
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = derive_config(args.config, args.out / "config.yaml", overrides)
    job = gen_job("datagen", cfg, args.out, args.device, args.seed, overrides=overrides)
    run_jobs([job], args.deadline_s)
    row = describe(job)
    meta = args.out / "data" / "meta.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        row.update(timings_s=m.get("timings_s"), n_frames=m.get("n_frames"), n_neurons=m.get("n_neurons"),
                   device=m.get("device"))  # fmt: skip
    write_json(args.json, {"stage": "datagen", "runs": [row]})
    print(json.dumps(row, default=str))
    return 0 if job.state == "ok" else 1


def cmd_slots(args: argparse.Namespace) -> int:
    """One slot alone, then ``--slots`` slots at once on the same device (same data, seeds 1..n)."""
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    results: dict[str, Any] = {"stage": "slots", "slots": args.slots, "iterations": args.iterations, "runs": {}}
    t_start = time.monotonic()
    for label, count in (("alone", 1), (f"batch_of_{args.slots}", args.slots)):
        jobs = []
        for k in range(count):
            cfg = derive_config(args.config, args.work / label / f"slot{k}" / "config.yaml",
                                {**overrides, "training.seed": k + 1})  # fmt: skip
            jobs.append(train_job(f"{label}_{k}", cfg, args.data, args.work / label / f"slot{k}", args.device,
                                  args.iterations, seed=k + 1))  # fmt: skip
        t0 = time.perf_counter()
        left = args.deadline_s - (time.monotonic() - t_start)
        run_jobs(jobs, max(10.0, left if label != "alone" else 0.4 * args.deadline_s))
        rows = [describe(j) for j in jobs]
        results["runs"][label] = {"wall_s": time.perf_counter() - t0, "slots": rows}
        write_json(args.json, results)
    alone, batch = results["runs"].get("alone"), results["runs"].get(f"batch_of_{args.slots}")
    finished = alone and batch and all(r["state"] == "ok" for r in alone["slots"] + batch["slots"])
    if finished:  # wall times of runs cut at a deadline compare nothing
        results["batch_over_alone_wall"] = batch["wall_s"] / alone["wall_s"]
    if alone and batch:  # training rates hold for runs cut short too: how much slower a slot trains when sharing
        rate_alone = alone["slots"][0].get("training_it_per_s")
        rates = [r.get("training_it_per_s") for r in batch["slots"]]
        if rate_alone and all(rates):
            results["batch_over_alone_training_rate"] = rate_alone / min(rates)
        ms = [r.get("ms_per_iteration") for r in batch["slots"]]
        ms_alone = alone["slots"][0].get("ms_per_iteration")
        if ms_alone and all(ms):
            results["batch_over_alone_training"] = max(ms) / ms_alone
    write_json(args.json, results)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, default=str))
    return 0


def science_plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The run sets: (a) science config and (b) demo config x seeds x schedules, (c) full config standard/cyclic."""
    gt = args.ground_truth
    sets = []
    a_iters = max(10, round(20000 * args.scale)) if args.a_iterations is None else args.a_iterations
    b_iters = max(10, round(6000 * args.scale)) if args.b_iterations is None else args.b_iterations
    c_iters = max(10, round(32000 * args.scale)) if args.c_iterations is None else args.c_iterations
    small = {"simulation.n_frames": 300, "simulation.n_test_frames": 60, "simulation.extent": 1,
             "training.n_rollout_frames": 20, "training.cluster_n_components": 5}  # fmt: skip
    for tag, base, iters in (("a_science", SCIENCE, a_iters), ("b_demo", DEMO, b_iters)):
        if tag[0] not in args.sets:
            continue
        for seed in args.seeds:
            sim = {"simulation.ground_truth": gt, "simulation.seed": seed, **(small if args.smoke else {})}
            for sched, over in SCHEDULES.items():
                sets.append({"set": tag, "base": base, "seed": seed, "schedule": sched, "iterations": iters,
                             "data_key": f"{tag}_seed{seed}", "sim": sim,
                             "overrides": {**sim, **over, "training.seed": seed, "training.device": "auto"}})  # fmt: skip
    c_sim = {"simulation.ground_truth": gt, "simulation.stimulus": "procedural", "simulation.seed": 42,
             "simulation.n_frames": args.c_frames, **(small if args.smoke else {})}  # fmt: skip
    for sched in ("standard", "cyclic_W_first") if "c" in args.sets else ():
        sets.append({"set": "c_full", "base": FULL, "seed": 1, "schedule": sched, "iterations": c_iters,
                     "data_key": "c_full", "sim": c_sim, "data": args.c_data,
                     "overrides": {**c_sim, **SCHEDULES[sched], "training.seed": 1,
                                   "training.compile": args.c_compile}})  # fmt: skip
    return sets


def cmd_science(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    plan = science_plan(args)
    results: dict[str, Any] = {"stage": "science", "ground_truth": args.ground_truth, "device": args.device,
                               "scale": args.scale, "datasets": [], "runs": []}  # fmt: skip
    # datasets: one per (set, seed), generated together; (c) reuses --c-data when it exists
    gens, data_dirs = [], {}
    for item in plan:
        key = item["data_key"]
        if key in data_dirs:
            continue
        if item.get("data") and (Path(item["data"]) / "meta.json").exists():
            data_dirs[key] = Path(item["data"])
            continue
        out = args.work / "data" / key
        cfg = derive_config(item["base"], out / "config.yaml", item["sim"])
        gens.append(gen_job(f"gen_{key}", cfg, out, args.device, int(item["sim"]["simulation.seed"])))
        data_dirs[key] = out / "data"
    run_jobs(gens, args.deadline_s * 0.3)
    results["datasets"] = [describe(j) for j in gens]
    write_json(args.json, results)
    jobs = []
    for item in plan:
        name = f"{item['set']}_seed{item['seed']}_{item['schedule']}"
        out = args.work / "runs" / name
        try:
            cfg = derive_config(item["base"], out / "config.yaml", item["overrides"])
        except Exception as err:  # e.g. a key the schema does not know yet: this run fails, the others go on
            results["runs"].append({"name": name, "state": "config error", "error": " ".join(str(err).split())[:300]})
            continue
        if not (data_dirs[item["data_key"]] / "meta.json").exists():
            results["runs"].append({"name": name, "state": "no dataset", "dataset": str(data_dirs[item["data_key"]])})
            continue
        info = {k: item[k] for k in ("set", "seed", "schedule")}
        jobs.append(train_job(name, cfg, data_dirs[item["data_key"]], out, args.device, item["iterations"], **info))
    left = args.deadline_s - (time.monotonic() - t_start)
    run_jobs(jobs, max(10.0, left))
    results["runs"] += [describe(j) for j in jobs]
    results["wall_s"] = time.monotonic() - t_start
    write_json(args.json, results)
    for r in results["runs"]:
        m = r.get("metrics") or {}
        print(f"{r['name']:40s} {r['state']:8s} conn_R2={m.get('connectivity_R2', float('nan')):.3f} "
              f"tau_R2={m.get('tau_R2', float('nan')):.3f} V_rest_R2={m.get('V_rest_R2', float('nan')):.3f} "
              f"ms/it={r.get('ms_per_iteration') or float('nan'):.2f}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("datagen", "slots", "science"):
        s = sub.add_parser(name)
        s.add_argument("--json", type=Path, required=True)
        s.add_argument("--device", default="cuda")
        s.add_argument("--deadline-s", type=float, default=240.0)
        if name != "science":
            s.add_argument("--config", type=Path, default=FULL)
            s.add_argument("--set", action="append", default=[], help="dotted key=value override (repeatable)")
    d = sub.choices["datagen"]
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--seed", type=int, default=42)
    s = sub.choices["slots"]
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--slots", type=int, default=4)
    s.add_argument("--iterations", type=int, default=2000)
    c = sub.choices["science"]
    c.add_argument("--work", type=Path, required=True)
    c.add_argument("--ground-truth", default=os.environ.get("GROUND_TRUTH") or "synthetic")
    c.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    c.add_argument("--scale", type=float, default=1.0, help="multiplies the default iteration counts")
    c.add_argument("--a-iterations", type=int, default=None, help="(a) science config (default 20,000 x scale)")
    c.add_argument("--b-iterations", type=int, default=None, help="(b) demo config (default 6,000 x scale)")
    c.add_argument("--c-iterations", type=int, default=None, help="(c) full config (default 32,000 x scale)")
    c.add_argument("--c-frames", type=int, default=64000)
    c.add_argument("--sets", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"], help="run sets to start")
    c.add_argument("--c-compile", default="off", help="(c) training.compile (off | default | reduce-overhead | ...)")
    c.add_argument("--c-data", type=Path, default=None, help="(c) dataset already generated (the datagen stage's)")
    c.add_argument("--smoke", action="store_true", help="tiny datasets (extent 1, 300 frames) for a CPU dry run")
    args = p.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run_jobs' finally: the stage's runs are killed too

    signal.signal(signal.SIGTERM, on_term)
    return {"datagen": cmd_datagen, "slots": cmd_slots, "science": cmd_science}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
