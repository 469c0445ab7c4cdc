"""Build the FlyVis connectome graph (nodes on a hexagonal lattice, convolutional edges).

Reads the connectome JSON shipped inside the ``flyvis`` distribution without importing flyvis.
Conventions reproduce flyvis's ``ConnectomeFromAvgFilters``: neurons in JSON type order, within a
type by u then v; edges per type pair in JSON order, per offset (reported offsets first, then the
offsets filling the convex hull of pairs with >= 3 offsets with ``N_SYN_FILL`` synapses), per source.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from simulator.errors import SimulatorError

DEFAULT_CONNECTOME = "fib25-fib19_v2.2"
N_SYN_FILL = 1.0
MAX_EXTENT = 15
CARRIER_FIX = "pip install --no-deps flyvis==1.2.0"


@dataclass(frozen=True)
class PairSpec:
    """One type-pair entry of the JSON: its types, sign and (hull-filled) offsets with synapse counts."""

    source: int  # JSON type index
    target: int
    sign: float
    offsets: np.ndarray  # (K, 2) int64 (du, dv)
    n_syn: np.ndarray  # (K,) float64


@dataclass(frozen=True)
class ConnectomeSpec:
    """Parsed connectome JSON: type names in JSON order, input types, and the pair entries."""

    path: Path
    type_names: tuple[str, ...]
    strides: np.ndarray  # (T, 2) int64 (u_stride, v_stride)
    input_types: tuple[str, ...]
    pairs: tuple[PairSpec, ...]


@dataclass(frozen=True)
class Connectome:
    """The network at one extent. Arrays are numpy; labels are the alphabetical rank of the type name."""

    extent: int
    spec: ConnectomeSpec
    type_names: list[str]  # label order (alphabetical)
    json_type: np.ndarray  # (N,) int64 JSON type index
    types: np.ndarray  # (N,) int64 label
    u: np.ndarray  # (N,) int64
    v: np.ndarray  # (N,) int64
    column: np.ndarray  # (N,) int64 index into ``columns``
    columns: np.ndarray  # (C, 2) int64 (u, v), ordered by u then v
    n_input: int
    edge_index: np.ndarray  # (2, E) int64, row 0 = source
    edge_pair: np.ndarray  # (E,) int64 index into spec.pairs
    edge_offset: np.ndarray  # (E,) int64 index into that pair's offsets
    n_syn: np.ndarray  # (E,) float32
    sign: np.ndarray  # (E,) float32

    @property
    def n_neurons(self) -> int:
        return int(self.types.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def n_types(self) -> int:
        return len(self.type_names)

    @property
    def positions(self) -> np.ndarray:
        """(N, 2) float32 axial coordinates (u, v)."""
        return np.stack([self.u, self.v], axis=1).astype(np.float32)


def hex_columns(extent: int) -> np.ndarray:
    """All (u, v) with |u|, |v|, |u+v| <= extent, ordered by u then v: (3R(R+1)+1, 2) int64."""
    r = np.arange(-extent, extent + 1)
    uu, vv = np.meshgrid(r, r, indexing="ij")
    keep = np.abs(uu + vv) <= extent
    return np.stack([uu[keep], vv[keep]], axis=1).astype(np.int64)


def locate_connectome(connectome: str) -> Path:
    """Resolve a connectome name (inside the flyvis distribution) or a path to its JSON file."""
    as_path = Path(connectome).expanduser()
    if as_path.suffix == ".json" or as_path.exists():
        if not as_path.is_file():
            raise SimulatorError(f"simulation.connectome: file {as_path} does not exist")
        return as_path.resolve()
    name = connectome if connectome.endswith(".json") else f"{connectome}.json"
    try:
        dist = importlib.metadata.distribution("flyvis")
    except importlib.metadata.PackageNotFoundError:
        raise SimulatorError(
            f"simulation.connectome: the flyvis data carrier is not installed; run `{CARRIER_FIX}`"
        ) from None
    path = Path(str(dist.locate_file(f"flyvis/connectome/{name}")))
    if not path.is_file():
        raise SimulatorError(
            f"simulation.connectome: {name} is not in the installed flyvis distribution ({path}); "
            f"run `{CARRIER_FIX}` or give a path"
        )
    return path


def _fill_hull(offsets: np.ndarray, n_syn: np.ndarray, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Append the lattice points inside the convex hull of ``offsets`` that have no data (flyvis rule)."""
    from matplotlib.path import Path as MplPath
    from scipy.spatial import ConvexHull

    hull = ConvexHull((1 + 1e-6) * offsets, False, "QJ")
    vertices = offsets[hull.vertices]
    lo, hi = offsets.min(axis=0), offsets.max(axis=0)
    gu, gv = np.mgrid[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1]
    grid = np.stack([gu.ravel(), gv.ravel()], axis=1)
    inside = grid[MplPath(vertices).contains_points(grid)]
    known = {(int(a), int(b)) for a, b in offsets}
    extra = np.array([p for p in inside.tolist() if tuple(p) not in known], dtype=np.int64).reshape(-1, 2)
    return np.concatenate([offsets, extra]), np.concatenate([n_syn, np.full(len(extra), fill)])


@lru_cache(maxsize=4)
def load_spec(path: Path) -> ConnectomeSpec:
    """Parse and hull-fill a connectome JSON once per process (independent of the extent)."""
    try:
        raw = json.loads(Path(path).read_text())
        names = tuple(n["name"] for n in raw["nodes"])
        strides = np.array([_strides(n["pattern"]) for n in raw["nodes"]], dtype=np.int64)
        index = {name: i for i, name in enumerate(names)}
        pairs = []
        for e in raw["edges"]:
            offsets = np.array([o[0] for o in e["offsets"]], dtype=np.int64).reshape(-1, 2)
            n_syn = np.array([o[1] for o in e["offsets"]], dtype=np.float64)
            if len(offsets) >= 3:
                offsets, n_syn = _fill_hull(offsets, n_syn, N_SYN_FILL)
            pairs.append(PairSpec(index[e["src"]], index[e["tar"]], float(e["alpha"]), offsets, n_syn))
        inputs = tuple(raw["input_units"])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise SimulatorError(f"{path}: not a valid connectome JSON ({type(err).__name__}: {err})") from None
    return ConnectomeSpec(Path(path), names, strides, inputs, tuple(pairs))


def _strides(pattern: list) -> tuple[int, int]:
    kind, args = pattern
    if kind == "stride":
        return int(args[0]), int(args[1])
    if kind == "tile":
        return int(args), int(args)
    raise ValueError(f"unsupported node pattern {kind!r}")


def _nodes(spec: ConnectomeSpec, extent: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per neuron: JSON type index and column index, in flyvis order; plus the column table."""
    columns = hex_columns(extent)
    ok = (columns[None, :, 0] % spec.strides[:, None, 0] == 0) & (columns[None, :, 1] % spec.strides[:, None, 1] == 0)
    json_type, column = np.nonzero(ok)  # row-major: type order, then column order (u then v)
    return json_type.astype(np.int64), column.astype(np.int64), columns


def _edges(spec: ConnectomeSpec, extent: int, json_type: np.ndarray, uv: np.ndarray) -> dict[str, np.ndarray]:
    """Convolutional edges of every pair, vectorised over offsets x sources (loop over ~605 pairs)."""
    size = 2 * extent + 1
    lookup = np.full((len(spec.type_names), size, size), -1, dtype=np.int64)
    lookup[json_type, uv[:, 0] + extent, uv[:, 1] + extent] = np.arange(len(json_type))
    by_type = np.split(np.arange(len(json_type)), np.flatnonzero(np.diff(json_type)) + 1)
    members = {int(json_type[m[0]]): m for m in by_type if len(m)}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("src", "dst", "pair", "offset", "n_syn", "sign")}
    for p, pair in enumerate(spec.pairs):
        src = members.get(pair.source)
        if src is None:
            continue
        tu = uv[src, 0][None, :] + pair.offsets[:, 0:1]  # (K, S)
        tv = uv[src, 1][None, :] + pair.offsets[:, 1:2]
        valid = (np.abs(tu) <= extent) & (np.abs(tv) <= extent) & (np.abs(tu + tv) <= extent)
        dst = np.full(tu.shape, -1, dtype=np.int64)
        dst[valid] = lookup[pair.target, tu[valid] + extent, tv[valid] + extent]
        k_idx, s_idx = np.nonzero(dst >= 0)
        parts["src"].append(src[s_idx])
        parts["dst"].append(dst[k_idx, s_idx])
        parts["pair"].append(np.full(len(k_idx), p, dtype=np.int64))
        parts["offset"].append(k_idx.astype(np.int64))
        parts["n_syn"].append(pair.n_syn[k_idx])
        parts["sign"].append(np.full(len(k_idx), pair.sign))
    return {k: np.concatenate(v) for k, v in parts.items()}


def build_connectome(extent: int, connectome: str = DEFAULT_CONNECTOME) -> Connectome:
    """Build the network at ``extent`` (1-15) from a connectome name or JSON path."""
    if not isinstance(extent, int | np.integer) or not 1 <= int(extent) <= MAX_EXTENT:
        raise SimulatorError(f"simulation.extent: must be an integer in 1..{MAX_EXTENT}, got {extent!r}")
    extent = int(extent)
    spec = load_spec(locate_connectome(connectome))
    json_type, column, columns = _nodes(spec, extent)
    uv = columns[column]
    e = _edges(spec, extent, json_type, uv)
    labels = np.argsort(np.argsort(np.array(spec.type_names)))  # alphabetical rank of each JSON type
    input_json = {spec.type_names.index(t) for t in spec.input_types}
    n_input = int(np.isin(json_type, sorted(input_json)).sum())
    if not np.isin(json_type[:n_input], sorted(input_json)).all():
        raise SimulatorError(f"{spec.path}: input types must come first in the node list")
    return Connectome(
        extent=extent,
        spec=spec,
        type_names=sorted(spec.type_names),
        json_type=json_type,
        types=labels[json_type].astype(np.int64),
        u=uv[:, 0].copy(),
        v=uv[:, 1].copy(),
        column=column,
        columns=columns,
        n_input=n_input,
        edge_index=np.stack([e["src"], e["dst"]]).astype(np.int64),
        edge_pair=e["pair"],
        edge_offset=e["offset"],
        n_syn=e["n_syn"].astype(np.float32),
        sign=e["sign"].astype(np.float32),
    )
