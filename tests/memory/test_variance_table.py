"""Variance table: config identity, statistics, verdicts and the exact markdown."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.results import default_trainable, scenario, slot_result
from memory.variance import (
    VARIANCE_HEADER,
    config_ids,
    config_key,
    cv_estimate,
    cv_estimate_header,
    render_cv_estimates,
    render_variance_table,
    variance_table,
)


def test_config_key_ignores_int_float_spelling_and_key_order():
    a = {"training": {"coeff_edge_diff": 750, "n_alternations": 4}, "graph_model": {}}
    b = {"graph_model": {}, "training": {"n_alternations": 4, "coeff_edge_diff": 750.0}}
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({"training": {"coeff_edge_diff": 751}, "graph_model": {}})


def test_config_ids_use_the_first_iteration_of_each_config():
    res = scenario()
    ids = config_ids(res)
    assert ids[1] == ids[12] == ids[16] == ids[20] == "C1"
    assert ids[13] == ids[18] == "C13"
    assert ids[17] == "C17"


def test_statistics_use_sample_std_and_count_failed_runs_as_zero():
    res = [slot_result(1, conn=0.9), slot_result(2, conn=0.7), slot_result(3, failed=True)]
    (row,) = variance_table(res)
    assert row.runs == 3 and row.iterations == [1, 2, 3]
    assert row.conn_mean == pytest.approx((0.9 + 0.7) / 3)
    assert row.conn_std == pytest.approx(0.4725815626, rel=1e-6)  # numpy std(ddof=1) of [0.9, 0.7, 0]
    assert row.conn_cv == pytest.approx(100 * row.conn_std / row.conn_mean)
    assert row.trend_ge_peak == 2


def test_single_run_has_zero_std_and_zero_cv():
    (row,) = variance_table([slot_result(1, conn=0.5)])
    assert row.conn_std == 0.0 and row.conn_cv == 0.0 and row.verdict == "undecided"


def test_three_tight_high_runs_are_robust():
    res = [slot_result(i, conn=0.95, tau=0.96, vrest=0.6 + 0.01 * i, cluster=0.9) for i in (1, 2, 3)]
    assert variance_table(res)[0].verdict == "robust"


def test_two_tight_high_runs_are_only_undecided():
    res = [slot_result(i, conn=0.95, tau=0.96, vrest=0.6, cluster=0.9) for i in (1, 2)]
    assert variance_table(res)[0].verdict == "undecided"


def test_a_failed_run_makes_a_config_fragile():
    res = [slot_result(1, conn=0.95), slot_result(2, conn=0.95), slot_result(3, failed=True)]
    assert variance_table(res)[0].verdict == "fragile"


def test_a_run_below_half_the_mean_is_fragile_even_with_moderate_cv():
    # V_rest: 0.5, 0.5, 0.5, 0.5, 0.2: mean 0.44, min 0.2 < 0.22; CV = 30% so also check min alone below
    res = [slot_result(i, vrest=v) for i, v in enumerate([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.2], 1)]
    (row,) = variance_table(res)
    assert row.vrest_cv < 25.0
    assert row.verdict == "fragile"


def test_low_but_stable_config_is_undecided():
    res = [slot_result(i, conn=0.5, tau=0.6, vrest=0.1, cluster=0.4) for i in (1, 2, 3, 4)]
    assert variance_table(res)[0].verdict == "undecided"


def test_rows_are_ordered_by_first_iteration():
    res = [
        slot_result(5, trainable=default_trainable(n_alternations=8)),
        slot_result(2, trainable=default_trainable(n_alternations=6)),
        slot_result(3),
    ]
    assert [r.config_id for r in variance_table(res)] == ["C2", "C3", "C5"]


def test_rendered_table_has_the_protocol_header_and_cells():
    res = [slot_result(1, conn=0.9), slot_result(2, conn=0.92, final_ge_peak=False)]
    text = render_variance_table(variance_table(res))
    lines = text.splitlines()
    assert lines[0] == VARIANCE_HEADER
    assert lines[0] == (
        "| Config ID | Runs | conn_R2 (mean +/- std) | CV | R2 trend | tau_R2 (mean +/- std) | CV | "
        "V_rest_R2 (mean +/- std) | CV | cluster (mean +/- std) | CV | Robust? |"
    )
    assert lines[1].startswith("|---")
    assert lines[2] == (
        "| C1 | 2 | 0.910 +/- 0.014 | 1.6% | 1/2 | 0.950 +/- 0.000 | 0.0% | 0.500 +/- 0.000 | 0.0% "
        "| 0.850 +/- 0.000 | 0.0% | undecided |"
    )


def test_the_cv_estimate_is_a_seeded_bootstrap_whose_std_shrinks_with_more_runs():
    few = np.array([0.4, 0.5, 0.6, 0.7])
    many = np.tile(few, 16)  # the same CV from 16x the runs
    est4 = cv_estimate(few)
    assert cv_estimate(few) == est4  # deterministic
    assert est4.low < 100 * few.std(ddof=1) / few.mean() < est4.high
    assert cv_estimate(many).std < est4.std / 2
    assert all(math.isnan(v) for v in cv_estimate(np.array([0.5])).model_dump().values())


def test_each_row_carries_the_cv_estimate_of_every_metric_and_the_table_renders_the_given_marks():
    res = [
        slot_result(i, conn=c, vrest=v) for i, (c, v) in enumerate([(0.5, 0.2), (0.7, 0.3), (0.6, 0.1), (0.4, 0.3)], 1)
    ]
    res.append(slot_result(5, trainable=default_trainable(n_alternations=8)))
    rows = variance_table(res)
    assert rows[0].cv_estimate("conn") == cv_estimate(np.array([0.5, 0.7, 0.6, 0.4]))
    assert rows[0].cv_estimate("vrest") == cv_estimate(np.array([0.2, 0.3, 0.1, 0.3]))
    lines = render_cv_estimates(rows, {"C1": "no: CV std 7.1 >= 2 pp"}).splitlines()
    assert lines[0] == cv_estimate_header("connectivity_R2")
    conn = rows[0].cv_estimate("conn")
    assert lines[2].startswith(
        f"| C1 | 4 | {rows[0].conn_cv:.1f}% | {conn.std:.1f} pp | {conn.low:.1f}-{conn.high:.1f}%"
    )
    assert lines[3] == "| C5 | 1 | 0.0% | n/a | n/a |  |"
    vrest = render_cv_estimates(rows, {}, "vrest", "V_rest_R2").splitlines()
    assert vrest[0] == cv_estimate_header("V_rest_R2")
    assert vrest[2].startswith(f"| C1 | 4 | {rows[0].vrest_cv:.1f}% | {rows[0].cv_estimate('vrest').std:.1f} pp | ")
