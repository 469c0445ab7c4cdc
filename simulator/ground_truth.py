"""Ground-truth ODE parameters (W per edge, tau and V_rest per neuron): a flyvis checkpoint or synthetic.

Checkpoint parameters are grouped the way flyvis groups them at extent 15 (pandas ``groupby(sort=False)``:
groups in order of first appearance in the extent-15 edge table), then looked up by key (type pair,
or type pair and offset), so every extent works. ``W = sign * exp(log syn_count) * syn_strength``.

The synthetic ground truth keeps the connectome's signs and synapse counts (which flyvis never trains)
and draws per-type tau, V_rest and per-pair strengths from distributions fitted to a trained
checkpoint (MODEL.md section 2). It uses a fixed seed: the same for every simulation seed. Strong
weights are then moved onto stimulus-driven sources (a short fixed calibration simulation), since a
weight on a source whose ReLU output never varies cannot be recovered from data, and the network is
brought to the trained one's operating regime: W std, excitatory loop gain and active neurons.
``python benchmarks/compare_ground_truth.py`` prints both side by side.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from experiment.networks import CHECKPOINT_FILE, NetworkNotFound, checkpoint_file, find_network
from simulator.connectome import MAX_EXTENT, Connectome, ConnectomeSpec, build_connectome
from simulator.errors import SimulatorError

SYNTHETIC = "synthetic"
SYNTHETIC_SEED = 20240617
_KEYS = ("nodes_bias", "nodes_time_const", "edges_sign", "edges_syn_count", "edges_syn_strength")


@dataclass(frozen=True)
class GroundTruth:
    """Per-edge weights and per-neuron time constants / resting potentials (float32 numpy)."""

    W: np.ndarray  # (E,)
    tau: np.ndarray  # (N,)
    V_rest: np.ndarray  # (N,)
    kind: str  # "synthetic" | "checkpoint"
    path: str | None


@dataclass(frozen=True)
class TypeParams:
    """Grouped parameters in connectome-spec terms: per JSON type, per pair, per (pair, offset) row."""

    tau: np.ndarray  # (T,)
    V_rest: np.ndarray  # (T,)
    sign: np.ndarray  # (P,) per spec pair
    strength: np.ndarray  # (P,) per spec pair
    syn_count: np.ndarray  # (sum K,) per flattened (pair, offset)


def procedural_run(
    gt: GroundTruth, con: Connectome, n_frames: int, seed: int, noise_level: float = 0.05, dt: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """(V, y) as float64 (frames, neurons): steady state at grey, then seeded procedural stimulus and noise."""
    import torch

    from simulator.dynamics import EulerStepper
    from simulator.stimulus import make_stream

    t = {k: torch.from_numpy(getattr(gt, k)) for k in ("W", "tau", "V_rest")}
    stepper = EulerStepper(t["W"], torch.from_numpy(con.edge_index), t["tau"], t["V_rest"], con.n_input, dt)
    v = stepper.steady_state(t["V_rest"].clone(), 0.5, 100)
    stream = make_stream("procedural", con.columns, seed, dt, split="train", davis_root=None)
    stim = torch.from_numpy(stream.frames(n_frames)[:, con.column[: con.n_input]].astype(np.float32))
    noise = torch.randn(n_frames, con.n_neurons, generator=torch.Generator().manual_seed(seed))
    V, Y = torch.empty(n_frames, con.n_neurons), torch.empty(n_frames, con.n_neurons)
    stepper.run(v, stim, noise * noise_level, V, Y)
    return V.numpy().astype(np.float64), Y.numpy().astype(np.float64)


def _offset_base(spec: ConnectomeSpec) -> np.ndarray:
    """Start of each pair's offsets in the flattened (pair, offset) table."""
    sizes = np.array([len(p.offsets) for p in spec.pairs], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def expand(params: TypeParams, con: Connectome) -> GroundTruth:
    """Broadcast grouped parameters to the neurons and edges of ``con``."""
    flat = _offset_base(con.spec)[con.edge_pair] + con.edge_offset
    W = params.sign[con.edge_pair] * params.syn_count[flat] * params.strength[con.edge_pair]
    return GroundTruth(
        W=W.astype(np.float32),
        tau=params.tau[con.json_type].astype(np.float32),
        V_rest=params.V_rest[con.json_type].astype(np.float32),
        kind=SYNTHETIC,
        path=None,
    )


@lru_cache(maxsize=2)
def _flyvis_groups(spec_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Checkpoint row of every spec pair and every flattened (pair, offset); -1 where flyvis has none.

    Rows follow first appearance in the extent-15 edge table; duplicate (pair, du, dv) share a row.
    """
    con = build_connectome(MAX_EXTENT, str(spec_path))
    spec = con.spec
    pair_seen = np.zeros(len(spec.pairs), dtype=bool)
    pair_seen[con.edge_pair] = True
    pair_row = np.full(len(spec.pairs), -1, dtype=np.int64)
    pair_row[pair_seen] = np.arange(pair_seen.sum())
    base = _offset_base(spec)
    flat_seen = np.zeros(int(base[-1]) + len(spec.pairs[-1].offsets), dtype=bool)
    flat_seen[base[con.edge_pair] + con.edge_offset] = True
    keys = np.concatenate([np.column_stack([np.full(len(p.offsets), i), p.offsets]) for i, p in enumerate(spec.pairs)])
    seen_idx = np.flatnonzero(flat_seen)
    _, first, inverse = np.unique(keys[seen_idx], axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique keys by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    flat_row = np.full(len(keys), -1, dtype=np.int64)
    flat_row[seen_idx] = rank[inverse.ravel()]
    return pair_row, flat_row


def _read_checkpoint(directory: Path) -> dict[str, np.ndarray]:
    """The five network tensors of the folder's checkpoint (``checkpoint_file``) as float64 numpy arrays."""
    import torch

    if not directory.is_dir():
        raise SimulatorError(f"simulation.ground_truth: checkpoint directory {directory} does not exist")
    file = checkpoint_file(directory)
    if file is None:
        raise SimulatorError(
            f"simulation.ground_truth: {directory / CHECKPOINT_FILE} does not exist (expected a flyvis best_chkpt "
            "or chkpts/chkpt_00000)"
        )
    try:
        network = torch.load(file, map_location="cpu", weights_only=True)["network"]
        return {k: network[k].detach().double().numpy() for k in _KEYS}
    except (
        OSError,
        RuntimeError,
        KeyError,
        TypeError,
        ValueError,
        zipfile.BadZipFile,
        EOFError,
        pickle.UnpicklingError,
    ) as err:
        raise SimulatorError(f"{file}: not a flyvis checkpoint with network {'/'.join(_KEYS)} ({err})") from None


def checkpoint_params(directory: Path, spec: ConnectomeSpec) -> TypeParams:
    """Map a flyvis checkpoint onto the spec's types, pairs and offsets by key."""
    t = _read_checkpoint(directory)
    pair_row, flat_row = _flyvis_groups(spec.path)
    n_pair, n_flat = int(pair_row.max()) + 1, int(flat_row.max()) + 1
    expected = {
        "nodes_bias": len(spec.type_names),
        "nodes_time_const": len(spec.type_names),
        "edges_sign": n_pair,
        "edges_syn_strength": n_pair,
        "edges_syn_count": n_flat,
    }
    for key, n in expected.items():
        if t[key].shape != (n,):
            raise SimulatorError(
                f"{directory / CHECKPOINT_FILE}: network.{key} has shape {t[key].shape}, "
                f"the connectome {spec.path.name} needs ({n},)"
            )
    nan = np.nan
    return TypeParams(
        tau=t["nodes_time_const"],
        V_rest=t["nodes_bias"],
        sign=np.where(pair_row >= 0, t["edges_sign"][pair_row], nan),
        strength=np.where(pair_row >= 0, t["edges_syn_strength"][pair_row], nan),
        syn_count=np.where(flat_row >= 0, np.exp(t["edges_syn_count"][flat_row]), nan),
    )


def synthetic_params(spec: ConnectomeSpec, seed: int = SYNTHETIC_SEED) -> TypeParams:
    """Seeded parameters with the structure and statistics of a trained flyvis network.

    Signs and synapse counts come from the connectome (flyvis never trains them). tau: 51 types at
    ~dt (U[0.0194, 0.0200]) and 14 slow ones log-uniform in [0.037, 0.32]. V_rest and each pair's peak
    drive ``strength * max n_syn`` are drawn by inverse CDF from quantile tables of the trained
    checkpoint, per sign (trained inhibitory pairs are stronger); 7.4 % of excitatory and 1.3 % of
    inhibitory pairs get strength exactly 0 (training clamps them). One global factor scales the
    strengths so that W's std at extent 8 equals the trained 0.178, then excitatory loops are broken
    and input gains capped (slow types at the trained slow types' median: without that cap the science
    config's tau_R2 was 0.15 instead of 0.39, and conn_R2 0.74 instead of 0.89). Finally
    (``_activity_calibrate``) the peak drives are re-ranked so the strongest pairs of each sign have
    the most active sources, and rounds of re-stabilising (back to the trained std) and halving
    inhibition onto silenced types run until every type is above 0 at least ``MIN_ACTIVE_FRACTION``
    of the time.
    """
    rng = np.random.default_rng(seed)
    n_types, n_pairs = len(spec.type_names), len(spec.pairs)
    tau = rng.uniform(0.0194, 0.0200, n_types)
    slow = rng.choice(n_types, size=N_SLOW_TYPES, replace=False)
    tau[slow] = np.exp(rng.uniform(np.log(0.037), np.log(0.32), N_SLOW_TYPES))
    V_rest = _inverse_cdf(rng.random(n_types), V_REST_QUANTILES)
    sign = np.array([p.sign for p in spec.pairs], dtype=np.float64)
    excitatory = sign > 0
    u = rng.random(n_pairs)
    log_drive = np.where(
        excitatory,
        _inverse_cdf(u, EXCITATORY_LOG_PEAK_DRIVE_QUANTILES),
        _inverse_cdf(u, INHIBITORY_LOG_PEAK_DRIVE_QUANTILES),
    )
    strength = np.exp(log_drive) / np.array([p.n_syn.max() for p in spec.pairs])
    zero_fraction = np.where(excitatory, ZERO_STRENGTH_FRACTION_EXCITATORY, ZERO_STRENGTH_FRACTION_INHIBITORY)
    strength[rng.random(n_pairs) < zero_fraction] = 0.0
    params = TypeParams(
        tau=tau,
        V_rest=V_rest,
        sign=sign,
        strength=strength,
        syn_count=np.concatenate([p.n_syn for p in spec.pairs]),
    )
    con = build_connectome(CALIBRATION_EXTENT, str(spec.path))
    strength = strength * (TRAINED_W_STD / float(expand(params, con).W.std()))
    unit_gain, unit_abs_gain = _pair_gains(replace(params, strength=np.ones(n_pairs)), con)
    strength = _break_excitatory_loops(strength, unit_gain, spec)
    strength = _cap_input_gain(strength, unit_abs_gain, tau, spec)
    return _activity_calibrate(replace(params, strength=strength), con, unit_gain, unit_abs_gain)


def _stabilise(params: TypeParams, con: Connectome, unit_gain: np.ndarray, unit_abs_gain: np.ndarray) -> TypeParams:
    """Rescale to the trained W std at the calibration extent, break excitatory loops, cap input gains."""
    strength = params.strength * (TRAINED_W_STD / float(expand(params, con).W.std()))
    strength = _break_excitatory_loops(strength, unit_gain, con.spec)
    return replace(params, strength=_cap_input_gain(strength, unit_abs_gain, params.tau, con.spec))


def _calibration_activity(params: TypeParams, spec: ConnectomeSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per type: median ReLU-output std and median fraction of time above 0, in a fixed short simulation."""
    con = build_connectome(ACTIVITY_EXTENT, str(spec.path))
    V, _ = procedural_run(expand(params, con), con, ACTIVITY_FRAMES, ACTIVITY_SEED, ACTIVITY_NOISE, DT)
    relu_std, active = np.maximum(V, 0).std(0), (V > 0).mean(0)
    types = range(len(spec.type_names))  # a loop over the 65 types, not over neurons
    return (
        np.array([np.median(relu_std[con.json_type == t]) for t in types]),
        np.array([np.median(active[con.json_type == t]) for t in types]),
    )


def _rank_by_source_activity(
    strength: np.ndarray, sign: np.ndarray, source_act: np.ndarray, spec: ConnectomeSpec
) -> np.ndarray:
    """Within each sign, give the largest peak drives (strength * max n_syn) to the most active sources."""
    max_syn = np.array([p.n_syn.max() for p in spec.pairs])
    drive = strength * max_syn
    score = source_act[[p.source for p in spec.pairs]]
    new = drive.copy()
    for s in (-1.0, 1.0):
        idx = np.flatnonzero((sign == s) & (drive > 0))
        new[idx[np.argsort(-score[idx], kind="stable")]] = np.sort(drive[idx])[::-1]
    return new / max_syn


def _activity_calibrate(
    params: TypeParams, con: Connectome, unit_gain: np.ndarray, unit_abs_gain: np.ndarray
) -> TypeParams:
    """Move strong weights onto active sources; then alternate re-stabilising and releasing silenced types.

    Halving inhibition lowers W's std, so each round first rescales to the trained std (which may
    silence types again); the rounds stop once a round needs no release.
    """
    relu_std, _ = _calibration_activity(params, con.spec)
    params = replace(params, strength=_rank_by_source_activity(params.strength, params.sign, relu_std, con.spec))
    target = np.array([p.target for p in con.spec.pairs])
    inputs = [con.spec.type_names.index(t) for t in con.spec.input_types]
    for _ in range(MAX_CALIBRATION_ROUNDS):
        params = _stabilise(params, con, unit_gain, unit_abs_gain)
        released = False
        for _ in range(MAX_SILENCE_REPAIRS):
            _, active = _calibration_activity(params, con.spec)
            silent = active < MIN_ACTIVE_FRACTION
            silent[inputs] = False
            if not silent.any():
                break
            released = True
            params = replace(params, strength=np.where((params.sign < 0) & silent[target], 0.5, 1.0) * params.strength)
        if not released:
            break
    return params


def _pair_gains(unit: TypeParams, con: Connectome) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, at unit strength: excitatory and absolute input gain per target neuron."""
    W = expand(unit, con).W.astype(np.float64)
    n_pairs = len(unit.sign)
    per_target = np.bincount(con.json_type, minlength=len(unit.tau))[[p.target for p in con.spec.pairs]]
    exc = np.bincount(con.edge_pair, weights=np.clip(W, 0, None), minlength=n_pairs)
    absolute = np.bincount(con.edge_pair, weights=np.abs(W), minlength=n_pairs)
    return exc / np.maximum(per_target, 1), absolute / np.maximum(per_target, 1)


def _type_matrix(values: np.ndarray, spec: ConnectomeSpec) -> np.ndarray:
    """(T, T) matrix [target type, source type] summing per-pair values."""
    n = len(spec.type_names)
    G = np.zeros((n, n))
    np.add.at(G, ([p.target for p in spec.pairs], [p.source for p in spec.pairs]), values)
    return G


def _break_excitatory_loops(strength: np.ndarray, unit_gain: np.ndarray, spec: ConnectomeSpec) -> np.ndarray:
    """Halve the pair contributing most to the type-level excitatory Perron root until it is <= trained.

    Random strengths create runaway excitatory loops (Perron root ~7 vs 0.89 trained); the trained
    network is stable even with all ReLUs active, so the synthetic one must be too.
    """
    strength = strength.copy()
    tgt = np.array([p.target for p in spec.pairs])
    src = np.array([p.source for p in spec.pairs])
    for _ in range(MAX_LOOP_BREAKS):
        G = _type_matrix(unit_gain * strength, spec)
        ev, right = np.linalg.eig(G)
        i = int(np.argmax(ev.real))
        if ev[i].real <= TRAINED_EXC_PERRON:
            break
        evl, left = np.linalg.eig(G.T)
        x, u = np.abs(right[:, i].real), np.abs(left[:, int(np.argmax(evl.real))].real)
        strength[int(np.argmax(u[tgt] * unit_gain * strength * x[src]))] *= 0.5
    return strength


def _cap_input_gain(
    strength: np.ndarray, unit_abs_gain: np.ndarray, tau: np.ndarray, spec: ConnectomeSpec
) -> np.ndarray:
    """Scale the inputs of target types whose total |input gain| exceeds the trained range.

    Slow types get a lower cap: in the trained network they are driven less than fast ones (median
    total |input gain| 1.84 vs 2.83), and a strongly driven slow type hides its tau from the data.
    """
    tgt = np.array([p.target for p in spec.pairs])
    total = np.bincount(tgt, weights=unit_abs_gain * strength, minlength=len(spec.type_names))
    cap = np.where(tau > SLOW_TAU, SLOW_TYPE_INPUT_GAIN, MAX_TYPE_INPUT_GAIN)
    factor = np.minimum(1.0, cap / np.maximum(total, 1e-12))
    return strength * factor[tgt]


def _inverse_cdf(p: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Sample by linear interpolation of a table of equally spaced quantiles (0 %, 5 %, ..., 100 %)."""
    return np.interp(p, np.linspace(0.0, 1.0, len(quantiles)), np.asarray(quantiles))


# Fitted once on flyvis flow/0000/000 (the trained checkpoint of MODEL.md section 2): 5 %-step quantiles.
N_SLOW_TYPES = 14
ZERO_STRENGTH_FRACTION_EXCITATORY = 0.074
ZERO_STRENGTH_FRACTION_INHIBITORY = 0.013
CALIBRATION_EXTENT = 8
TRAINED_W_STD = 0.178
TRAINED_EXC_PERRON = 0.89  # Perron root of the type-level excitatory gain matrix at extent 8
MAX_TYPE_INPUT_GAIN = 4.0  # trained: median 1.95, 90th percentile 5.4, max 7.9 (sum |W| per target neuron)
SLOW_TYPE_INPUT_GAIN = 1.84  # the trained slow types (tau > SLOW_TAU) median; 12 of 14 are below 2.2
SLOW_TAU = 0.021
MAX_LOOP_BREAKS = 200
# Activity calibration: a fixed short simulation (independent of simulation.seed) at a small extent.
DT = 0.02
ACTIVITY_EXTENT = 2
ACTIVITY_FRAMES = 600
ACTIVITY_SEED = 1
ACTIVITY_NOISE = 0.05
MIN_ACTIVE_FRACTION = 0.2  # median fraction of time a type's neurons are above 0
MAX_SILENCE_REPAIRS = 6
MAX_CALIBRATION_ROUNDS = 5
V_REST_QUANTILES = (
    0.007, 0.207, 0.257, 0.352, 0.43, 0.467, 0.479, 0.498, 0.516, 0.528, 0.542,
    0.552, 0.567, 0.581, 0.603, 0.609, 0.618, 0.645, 0.668, 0.749, 0.795,
)  # fmt: skip
EXCITATORY_LOG_PEAK_DRIVE_QUANTILES = (
    -16.51, -12.19, -9.84, -8.44, -7.56, -5.76, -4.6, -3.96, -3.56, -3.19, -2.79,
    -2.59, -2.38, -2.14, -1.98, -1.8, -1.61, -1.37, -1.05, -0.68, 1.43,
)  # fmt: skip
INHIBITORY_LOG_PEAK_DRIVE_QUANTILES = (
    -18.78, -9.17, -7.59, -4.94, -4.21, -3.52, -3.23, -3.0, -2.81, -2.58, -2.38,
    -2.29, -2.19, -1.89, -1.69, -1.55, -1.34, -1.15, -0.91, -0.63, 0.41,
)  # fmt: skip


def shared_checkpoint_dir() -> Path | None:
    """The pretrained checkpoint under ``$FLYVIS_SHARED_DATA`` (default ../shared/data beside the repository).

    None when it is absent: benchmarks then fall back to the synthetic ground truth and tests skip.
    """
    repo = Path(__file__).resolve().parents[1]
    root = Path(os.environ.get("FLYVIS_SHARED_DATA", repo / ".." / "shared" / "data"))
    path = root / "flyvis_model" / "flow" / "0000" / "000"
    return path.resolve() if (path / CHECKPOINT_FILE).is_file() else None


def resolve_checkpoint_dir(spec: str) -> Path:
    """``experiment.networks.find_network`` with its one-line error as a SimulatorError."""
    try:
        return find_network(spec)
    except NetworkNotFound as err:
        raise SimulatorError(str(err)) from None


def load_ground_truth(spec: str, connectome: Connectome) -> GroundTruth:
    """``"synthetic"``, ``flyvis:<task>/<ensemble>/<model>`` or a flyvis network folder, at ``connectome``'s extent."""
    if spec == SYNTHETIC:
        return expand(synthetic_params(connectome.spec), connectome)
    directory = resolve_checkpoint_dir(spec)
    gt = expand(checkpoint_params(directory, connectome.spec), connectome)
    if not (np.isfinite(gt.W).all() and np.isfinite(gt.tau).all() and np.isfinite(gt.V_rest).all()):
        raise SimulatorError(f"{directory}: some edges at this extent have no checkpoint value")
    return GroundTruth(W=gt.W, tau=gt.tau, V_rest=gt.V_rest, kind="checkpoint", path=str(directory))


def weight_stats(W: np.ndarray) -> dict[str, float]:
    """Summary statistics used to compare a ground truth against MODEL.md section 2."""
    return {
        "mean": float(W.mean()),
        "std": float(W.std()),
        "min": float(W.min()),
        "max": float(W.max()),
        "frac_negative": float((W < 0).mean()),
        "frac_zero": float((W == 0).mean()),
    }
