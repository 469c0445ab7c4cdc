"""The variance table: runs grouped by identical trainable config, with robust / fragile verdicts.

PROTOCOL.md section 7. Groups span the whole run (all blocks); a failed run counts as 0 for every
metric. The table is computed by code and written into memory.md's Variance Estimates section.
Each row also carries how well each metric's CV is determined: the std of the CV estimate and a 95%
interval from a seeded bootstrap over the config's runs (the replicate stopping rule reads the one of the
exploration's primary metric).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from experiment.exploration import SlotResult

Verdict = Literal["robust", "fragile", "undecided"]

VARIANCE_HEADER = (
    "| Config ID | Runs | conn_R2 (mean +/- std) | CV | R2 trend | tau_R2 (mean +/- std) | CV "
    "| V_rest_R2 (mean +/- std) | CV | cluster (mean +/- std) | CV | Robust? |"
)
VARIANCE_SEPARATOR = (
    "|-----------|------|------------------------|----|---------|-----------------------|----"
    "|--------------------------|----|-----------------------|----|---------|"
)

# Robust thresholds per metric: (max CV in percent, min value). PROTOCOL.md section 7.
ROBUST_RULES: dict[str, tuple[float, float]] = {
    "conn": (5.0, 0.90),
    "tau": (5.0, 0.90),
    "vrest": (20.0, 0.40),
    "cluster": (10.0, 0.80),
}
ROBUST_MIN_RUNS = 3
FRAGILE_CV = 25.0  # percent
FRAGILE_MIN_FRACTION = 0.5  # of the mean
# The table's metrics: short name (the VarianceRow field prefix) -> SlotMetrics field, in column order.
METRIC_COLUMNS: dict[str, str] = {
    "conn": "connectivity_R2",
    "tau": "tau_R2",
    "vrest": "V_rest_R2",
    "cluster": "cluster_accuracy",
}
# Bootstrap of each CV: resamples, seed (fixed: a row's interval depends only on its runs), interval level.
CV_BOOTSTRAP_RESAMPLES = 2000
CV_BOOTSTRAP_SEED = 20260
CV_INTERVAL = 0.95


class CvEstimate(BaseModel):
    """How well a config's CV of one metric is known: the bootstrap std of the CV estimate (percentage points)
    and its 95% interval (percent); nan for fewer than 2 runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    std: float = math.nan
    low: float = math.nan
    high: float = math.nan


class VarianceRow(BaseModel):
    """One config group of the variance table."""

    model_config = ConfigDict(extra="forbid")

    config_id: str
    iterations: list[int]
    runs: int
    conn_mean: float
    conn_std: float
    conn_cv: float
    trend_ge_peak: int
    tau_mean: float
    tau_std: float
    tau_cv: float
    vrest_mean: float
    vrest_std: float
    vrest_cv: float
    cluster_mean: float
    cluster_std: float
    cluster_cv: float
    verdict: Verdict
    cv_estimates: dict[str, CvEstimate] = {}  # short metric name (METRIC_COLUMNS) -> its CV estimate

    def mean(self, short: str) -> float:
        return float(getattr(self, f"{short}_mean"))

    def std(self, short: str) -> float:
        return float(getattr(self, f"{short}_std"))

    def cv(self, short: str) -> float:
        return float(getattr(self, f"{short}_cv"))

    def cv_estimate(self, short: str) -> CvEstimate:
        return self.cv_estimates.get(short, CvEstimate())


def _canonical(value: Any) -> Any:
    """Numbers compare like Python dict equality: ints and floats map to one float form."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return repr(value)


def config_key(trainable: dict[str, Any]) -> str:
    """Canonical JSON of a trainable config (sorted keys, floats as repr; ``750 == 750.0``)."""
    return json.dumps(_canonical(trainable), sort_keys=True, separators=(",", ":"))


def config_ids(results: Iterable[SlotResult]) -> dict[int, str]:
    """Iteration -> config id ``C{k}``, k = the smallest iteration that ran that config in the run."""
    ordered = sorted(results, key=lambda r: r.iteration)
    first: dict[str, int] = {}
    ids: dict[int, str] = {}
    for r in ordered:
        key = config_key(r.trainable)
        first.setdefault(key, r.iteration)
        ids[r.iteration] = f"C{first[key]}"
    return ids


def _stats(values: np.ndarray) -> tuple[float, float, float]:
    """mean, sample std (ddof=1; 0 for one run) and CV in percent (0 when the mean is 0)."""
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    cv = 100.0 * std / abs(mean) if mean != 0 else 0.0
    return mean, std, cv


def _cvs(values: np.ndarray) -> np.ndarray:
    """CV in percent of each row of a (resamples, runs) array, as _stats computes it."""
    means = values.mean(axis=1)
    stds = values.std(axis=1, ddof=1)
    safe = np.where(means != 0, np.abs(means), 1.0)
    return np.where(means != 0, 100.0 * stds / safe, 0.0)


def cv_estimate(values: np.ndarray) -> CvEstimate:
    """The CV estimate of ``values`` in percent from a seeded bootstrap over the runs: the std of the
    resampled CVs and their central CV_INTERVAL interval; nan for fewer than 2 runs."""
    n = values.size
    if n < 2:
        return CvEstimate()
    rng = np.random.default_rng(CV_BOOTSTRAP_SEED)
    cvs = _cvs(values[rng.integers(0, n, size=(CV_BOOTSTRAP_RESAMPLES, n))])
    tail = 100.0 * (1.0 - CV_INTERVAL) / 2.0
    low, high = np.percentile(cvs, [tail, 100.0 - tail])
    return CvEstimate(std=float(cvs.std(ddof=1)), low=float(low), high=float(high))


def _metric_matrix(group: list[SlotResult]) -> np.ndarray:
    """(runs, 4) array of conn, tau, V_rest, cluster; a failed run is all zeros."""
    rows = [
        (
            (r.metrics.connectivity_R2, r.metrics.tau_R2, r.metrics.V_rest_R2, r.metrics.cluster_accuracy)
            if r.status == "completed" and r.metrics is not None
            else (0.0, 0.0, 0.0, 0.0)
        )
        for r in group
    ]
    return np.asarray(rows, dtype=float)


def verdict_of(values: np.ndarray) -> Verdict:
    """Robust / fragile / undecided for a (runs, 4) matrix of conn, tau, V_rest, cluster."""
    means = values.mean(axis=0)
    stds = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1])
    cvs = np.where(means != 0, 100.0 * stds / np.where(means != 0, np.abs(means), 1.0), 0.0)
    mins = values.min(axis=0)
    max_cv = np.array([rule[0] for rule in ROBUST_RULES.values()])
    min_val = np.array([rule[1] for rule in ROBUST_RULES.values()])
    if values.shape[0] >= ROBUST_MIN_RUNS and bool(np.all((cvs < max_cv) & (mins > min_val))):
        return "robust"
    if bool(np.any(cvs > FRAGILE_CV)) or bool(np.any(mins < FRAGILE_MIN_FRACTION * means)):
        return "fragile"
    return "undecided"


def _row(config_id: str, group: list[SlotResult]) -> VarianceRow:
    values = _metric_matrix(group)
    stats = [_stats(values[:, j]) for j in range(4)]
    trend = sum(1 for r in group if r.status == "completed" and r.trajectory is not None and r.trajectory.final_ge_peak)
    (cm, cs, cc), (tm, ts, tc), (vm, vs, vc), (km, ks, kc) = stats
    return VarianceRow(
        config_id=config_id,
        iterations=[r.iteration for r in group],
        runs=len(group),
        conn_mean=cm,
        conn_std=cs,
        conn_cv=cc,
        trend_ge_peak=trend,
        tau_mean=tm,
        tau_std=ts,
        tau_cv=tc,
        vrest_mean=vm,
        vrest_std=vs,
        vrest_cv=vc,
        cluster_mean=km,
        cluster_std=ks,
        cluster_cv=kc,
        verdict=verdict_of(values),
        cv_estimates={short: cv_estimate(values[:, j]) for j, short in enumerate(METRIC_COLUMNS)},
    )


def variance_table(results: list[SlotResult]) -> list[VarianceRow]:
    """One row per distinct trainable config of the whole run, ordered by first iteration."""
    ids = config_ids(results)
    groups: dict[str, list[SlotResult]] = {}
    for r in sorted(results, key=lambda r: r.iteration):
        groups.setdefault(ids[r.iteration], []).append(r)
    return [_row(cid, group) for cid, group in groups.items()]


def _cell(mean: float, std: float) -> str:
    return f"{mean:.3f} +/- {std:.3f}"


def _cv(cv: float) -> str:
    return f"{cv:.1f}%" if math.isfinite(cv) else "n/a"


def render_variance_row(row: VarianceRow) -> str:
    """One markdown table line of a variance row."""
    cells = [
        row.config_id,
        str(row.runs),
        _cell(row.conn_mean, row.conn_std),
        _cv(row.conn_cv),
        f"{row.trend_ge_peak}/{row.runs}",
        _cell(row.tau_mean, row.tau_std),
        _cv(row.tau_cv),
        _cell(row.vrest_mean, row.vrest_std),
        _cv(row.vrest_cv),
        _cell(row.cluster_mean, row.cluster_std),
        _cv(row.cluster_cv),
        row.verdict,
    ]
    return "| " + " | ".join(cells) + " |"


def render_variance_table(rows: list[VarianceRow]) -> str:
    """The markdown table of PROTOCOL.md section 7 (header verbatim), newline-terminated."""
    lines = [VARIANCE_HEADER, VARIANCE_SEPARATOR, *(render_variance_row(r) for r in rows)]
    return "\n".join(lines) + "\n"


def cv_estimate_header(label: str) -> str:
    """The CV estimate table's header for a metric named ``label`` (e.g. conn_R2)."""
    return f"| Config ID | Runs | CV({label}) | std of the CV estimate | 95% interval | Enough runs? |"


CV_ESTIMATE_SEPARATOR = "|-----------|------|-------------|------------------------|--------------|--------------|"


def render_cv_estimates(rows: list[VarianceRow], marks: dict[str, str], short: str = "conn", label: str = "") -> str:
    """The CV estimate of metric ``short`` (METRIC_COLUMNS) of each config as a markdown table; ``marks``
    (config id -> the stopping rule's verdict, e.g. ``yes`` / ``no: 2 runs``) comes from the rule's owner
    (agent.protocol); ``label`` is how the header names the metric (default: its SlotMetrics name)."""
    lines = [cv_estimate_header(label or METRIC_COLUMNS[short]), CV_ESTIMATE_SEPARATOR]
    for row in rows:
        est = row.cv_estimate(short)
        std = f"{est.std:.1f} pp" if math.isfinite(est.std) else "n/a"
        interval = f"{est.low:.1f}-{est.high:.1f}%" if math.isfinite(est.low) else "n/a"
        cells = [row.config_id, str(row.runs), _cv(row.cv(short)), std, interval, marks.get(row.config_id, "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
