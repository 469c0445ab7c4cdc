from __future__ import annotations

import time

import numpy as np
import pytest

from simulator.connectome import build_connectome
from simulator.errors import SimulatorError

COUNTS = {1: (443, 56, 8174), 2: (1203, 152, 28904), 4: (3865, 488, 110794), 8: (13741, 1736, 434112)}


@pytest.mark.parametrize("extent", sorted(COUNTS))
def test_counts_match_model_table(extent: int) -> None:
    con = build_connectome(extent)
    assert (con.n_neurons, con.n_input, con.n_edges) == COUNTS[extent]


def test_extent_8_builds_in_a_few_seconds() -> None:
    start = time.perf_counter()
    build_connectome(8)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("extent", [0, 16])
def test_extent_out_of_range_is_one_line_error(extent: int) -> None:
    with pytest.raises(SimulatorError, match=r"simulation\.extent") as err:
        build_connectome(extent)
    assert "\n" not in str(err.value)


def test_photoreceptors_come_first() -> None:
    con = build_connectome(2)
    names = [con.type_names[t] for t in con.types[: con.n_input]]
    assert set(names) == {f"R{i}" for i in range(1, 9)}
    input_labels = np.unique(con.types[: con.n_input])
    assert not np.isin(con.types[con.n_input :], input_labels).any()


def test_labels_are_alphabetical_ranks() -> None:
    con = build_connectome(1)
    assert con.type_names == sorted(con.type_names)
    assert len(con.type_names) == 65
    assert con.type_names[con.types[0]] == "R1"


def test_edge_index_is_int64_source_first_and_in_range() -> None:
    con = build_connectome(1)
    assert con.edge_index.dtype == np.int64 and con.edge_index.shape == (2, con.n_edges)
    assert con.edge_index.min() >= 0 and con.edge_index.max() < con.n_neurons
    # R1 -> L1 is a known edge: source row 0 holds the photoreceptor.
    r1, l1 = con.type_names.index("R1"), con.type_names.index("L1")
    src_t, dst_t = con.types[con.edge_index[0]], con.types[con.edge_index[1]]
    assert np.any((src_t == r1) & (dst_t == l1))
    assert not np.any((src_t == l1) & (dst_t == r1))


def test_missing_connectome_file_is_one_line_error(tmp_path) -> None:
    with pytest.raises(SimulatorError, match="does not exist"):
        build_connectome(1, str(tmp_path / "nope.json"))
