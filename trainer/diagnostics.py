"""Why V_rest is or is not recovered: per cell type, how far the data keeps the voltage from V_rest.

V_rest is read off lin_phi as the zero of its line fit over ``mu ± 2 sigma`` of each neuron's voltage
(``trainer.metrics.phi_lines``). A neuron whose voltage never comes near its V_rest leaves V_rest to
extrapolation: its lever arm ``|mu - V_rest| / sigma`` (in units of its own voltage std) says how far. Per type we
set the median lever arm against the median V_rest error after training; a rank correlation across types says
whether the stimulus (what the voltages visit) limits V_rest recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from trainer.metrics import activity_stats

SIGMA_FLOOR = 1e-6  # a neuron that never moves has an infinite lever arm; capped at |mu - V_rest| / floor


@dataclass(frozen=True)
class VrestLever:
    """Per cell type: neurons, median lever arm ``|mu - V_rest| / sigma`` and median ``|V_rest_hat - V_rest|``."""

    type_names: list[str]
    n_neurons: np.ndarray
    lever: np.ndarray
    error: np.ndarray

    def spearman(self) -> float:
        """Rank correlation of lever arm and V_rest error across types (0 when undefined)."""
        ok = np.isfinite(self.lever) & np.isfinite(self.error)
        if ok.sum() < 3:
            return 0.0
        rho = spearmanr(self.lever[ok], self.error[ok]).statistic
        return float(rho) if np.isfinite(rho) else 0.0

    def as_records(self) -> list[dict[str, Any]]:
        return [
            {"type": name, "n": int(n), "lever": float(lv), "V_rest_abs_error": float(err)}
            for name, n, lv, err in zip(self.type_names, self.n_neurons, self.lever, self.error, strict=True)
        ]


def lever_arms(voltage: np.ndarray, v_rest: np.ndarray) -> np.ndarray:
    """``|mu_i - V_rest_i| / sigma_i`` per neuron over every frame of ``voltage`` (T, N), memory-mapped or not."""
    return lever_from_stats(*activity_stats(voltage), v_rest)


def lever_from_stats(mu: np.ndarray, sigma: np.ndarray, v_rest: np.ndarray) -> np.ndarray:
    """``|mu_i - V_rest_i| / sigma_i`` from the per-neuron voltage mean and std (``trainer.metrics.activity_stats``)."""
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    return np.abs(mu - v_rest) / np.maximum(sigma, SIGMA_FLOOR)


def group_median(values: np.ndarray, types: np.ndarray, n_types: int) -> np.ndarray:
    """Median of ``values`` per type index (NaN for a type without neurons)."""
    order = np.argsort(types, kind="stable")
    bounds = np.searchsorted(types[order], np.arange(n_types + 1))
    sorted_values = values[order]
    return np.array([np.median(sorted_values[a:b]) if b > a else np.nan for a, b in pairwise(bounds)])


def vrest_lever_by_type(
    data: Any, v_rest_learned: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None
) -> VrestLever:
    """The diagnostic for a dataset (``trainer.data.Dataset``) and the V_rest a model recovered on it.

    ``stats``: the training voltage's per-neuron (mu, sigma) when already known (``Probe.mu``, ``Probe.sigma``),
    else computed from ``data.train.voltage``.
    """
    v_true = np.asarray(data.V_rest, dtype=np.float64)
    types = np.asarray(data.types, dtype=np.int64)
    n_types = len(data.type_names)
    lever = lever_arms(data.train.voltage, v_true) if stats is None else lever_from_stats(*stats, v_true)
    error = np.abs(np.asarray(v_rest_learned, dtype=np.float64) - v_true)
    return VrestLever(
        type_names=list(data.type_names),
        n_neurons=np.bincount(types, minlength=n_types),
        lever=group_median(lever, types, n_types),
        error=group_median(error, types, n_types),
    )
