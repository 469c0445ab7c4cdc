"""Simulator benchmark: mat-vec variants, ms per Euler step, frames/s, neuron-steps/s, streamed peak RSS.

Run: ``python benchmarks/bench_simulator.py`` (CPU, 2 torch threads). Uses the shared checkpoint when
present (FLYVIS_SHARED_DATA or ../shared/data), the synthetic ground truth otherwise.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulator.connectome import build_connectome  # noqa: E402
from simulator.dynamics import EulerStepper, csr_weights  # noqa: E402
from simulator.ground_truth import load_ground_truth, shared_checkpoint_dir  # noqa: E402

THREADS = 2


def _ground_truth_spec() -> str:
    ckpt = shared_checkpoint_dir()
    return str(ckpt) if ckpt else "synthetic"


def _time_ms(fn, n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def matvec_variants(extent: int, gt_spec: str) -> dict[str, float]:
    """ms per W @ relu(v) for each implementation."""
    import scipy.sparse

    con = build_connectome(extent)
    gt = load_ground_truth(gt_spec, con)
    n = con.n_neurons
    ei, W, x = torch.from_numpy(con.edge_index), torch.from_numpy(gt.W), torch.rand(n)
    A = csr_weights(W, ei, n)
    order = torch.argsort(ei[1])
    src, dst, Ws = ei[0][order].contiguous(), ei[1][order].contiguous(), W[order].contiguous()
    msg, out = torch.empty_like(Ws), torch.empty(n)

    def index_add() -> None:
        torch.index_select(x, 0, src, out=msg).mul_(Ws)
        out.zero_().index_add_(0, dst, msg)

    def scatter() -> None:
        torch.index_select(x, 0, src, out=msg).mul_(Ws)
        out.zero_().scatter_add_(0, dst, msg)

    S = scipy.sparse.csr_matrix((gt.W, (con.edge_index[1], con.edge_index[0])), shape=(n, n))
    xn = x.numpy()
    return {
        "torch csr mv": _time_ms(lambda: torch.mv(A, x), 50),
        "torch csr mm (N,1)": _time_ms(lambda: torch.sparse.mm(A, x[:, None]), 200),
        "torch index_add": _time_ms(index_add, 200),
        "torch scatter_add": _time_ms(scatter, 200),
        "scipy csr (used on CPU)": _time_ms(lambda: S @ xn, 500),
    }


def euler_rate(extent: int, gt_spec: str, steps: int = 2000) -> dict[str, float]:
    """Full noisy Euler steps through EulerStepper (recording state and drift)."""
    con = build_connectome(extent)
    gt = load_ground_truth(gt_spec, con)
    t = {k: torch.from_numpy(getattr(gt, k)) for k in ("W", "tau", "V_rest")}
    stepper = EulerStepper(t["W"], torch.from_numpy(con.edge_index), t["tau"], t["V_rest"], con.n_input, 0.02)
    n = con.n_neurons
    stim, noise = torch.rand(steps, con.n_input), 0.05 * torch.randn(steps, n)
    v_out, y_out = torch.empty(steps, n), torch.empty(steps, n)
    v = t["V_rest"].clone()
    start = time.perf_counter()
    stepper.run(v, stim, noise, v_out, y_out)
    ms = (time.perf_counter() - start) / steps * 1e3
    return {"neurons": n, "edges": con.n_edges, "ms_per_step": ms, "frames_per_s": 1e3 / ms,
            "neuron_steps_per_s": n * 1e3 / ms}  # fmt: skip


_CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads({threads})
sys.path.insert(0, {repo!r})
from experiment.config import SimulationConfig
from simulator.generate import generate_dataset
sim = SimulationConfig(extent=8, n_frames={frames}, n_test_frames=100, ground_truth={gt!r}, steady_state_s=0.5)
t = time.perf_counter()
generate_dataset(sim, {out!r}, seed=1, device="cpu")
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]  # per process; ru_maxrss survives exec
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"wall_s": time.perf_counter() - t, "peak_rss_mb": peak}}))
"""


def streamed_rss(frames: int, gt_spec: str) -> dict[str, float]:
    """Generate an extent-8 dataset of ``frames`` in a fresh process; its wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        code = _CHILD.format(threads=THREADS, repo=str(REPO), frames=frames, gt=gt_spec, out=f"{tmp}/d")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["field_gb"] = frames * 13741 * 4 / 1e9
    return result


def main() -> None:
    torch.set_num_threads(THREADS)
    gt_spec = _ground_truth_spec()
    print(f"simulator benchmark: CPU, {THREADS} torch threads, ground truth {gt_spec}, torch {torch.__version__}\n")
    for extent in (4, 8):
        print(f"W @ relu(v), extent {extent}: ms per mat-vec")
        for name, ms in matvec_variants(extent, gt_spec).items():
            print(f"  {name:26s} {ms:8.3f}")
    print("\nEuler steps (record v and y, add noise)")
    print(f"  {'extent':>6} {'neurons':>8} {'edges':>9} {'ms/step':>8} {'frames/s':>9} {'neuron-steps/s':>15}")
    for extent in (4, 8):
        r = euler_rate(extent, gt_spec)
        print(f"  {extent:>6} {r['neurons']:>8} {r['edges']:>9} {r['ms_per_step']:>8.3f} "
              f"{r['frames_per_s']:>9.0f} {r['neuron_steps_per_s']:>15.3e}")  # fmt: skip
    print("\nstreamed generation at extent 8 (fresh process each): peak RSS must not grow with T")
    print(f"  {'frames':>7} {'one (T,N) field GB':>19} {'wall s':>7} {'peak RSS MB':>12}")
    for frames in (1000, 6000, 12000):
        r = streamed_rss(frames, gt_spec)
        print(f"  {frames:>7} {r['field_gb']:>19.3f} {r['wall_s']:>7.1f} {r['peak_rss_mb']:>12.0f}")
    print(f"\n(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
