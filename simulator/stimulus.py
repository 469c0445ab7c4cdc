"""Stimulus streams: per-column luminance in [0, 1], one frame per ODE step.

``ProceduralStream`` draws seeded hexagonal movies (drifting gratings, moving edges, spatially smoothed
AR(1) noise, flashes), each 50-80 frames long. ``make_stream`` picks it, the DAVIS stream (simulator.davis)
or the natural-photograph stream (simulator.natural); all build on simulator.streams, so neither of those
imports this module.
"""

from __future__ import annotations

import numpy as np

from simulator.streams import BufferedStream

MIN_LEN, MAX_LEN = 50, 80
KINDS = ("grating", "edge", "noise", "flash")


def column_xy(columns: np.ndarray) -> np.ndarray:
    """Cartesian centres (C, 2) of axial hex columns (u, v) with unit spacing."""
    u, v = columns[:, 0].astype(np.float64), columns[:, 1].astype(np.float64)
    return np.stack([u + v / 2.0, v * np.sqrt(3.0) / 2.0], axis=1)


class ProceduralStream(BufferedStream):
    """Seeded procedural hexagonal movies on the lattice columns."""

    def __init__(self, columns: np.ndarray, seed: int, delta_t: float) -> None:
        super().__init__()
        self.xy = column_xy(columns)
        self.dt = delta_t
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        d2 = ((self.xy[:, None, :] - self.xy[None, :, :]) ** 2).sum(-1)
        self._d2 = d2

    def describe(self) -> dict:
        return {"kind": "procedural", "sequences": list(KINDS), "length": [MIN_LEN, MAX_LEN]}

    def _next_sequence(self) -> np.ndarray:
        rng = self.rng
        n = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        kind = KINDS[int(rng.integers(len(KINDS)))]
        t = np.arange(n)[:, None] * self.dt  # (n, 1) seconds
        seq = getattr(self, f"_{kind}")(rng, n, t)
        return np.clip(seq, 0.0, 1.0)

    def _direction(self, rng: np.random.Generator) -> np.ndarray:
        theta = rng.uniform(0, 2 * np.pi)
        return self.xy @ np.array([np.cos(theta), np.sin(theta)])  # (C,) projection

    def _grating(self, rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
        proj = self._direction(rng)
        period = rng.uniform(2.0, 10.0)  # columns
        speed = rng.uniform(-40.0, 40.0)  # columns / s
        contrast = rng.uniform(0.2, 1.0)
        phase = 2 * np.pi * (proj[None, :] - speed * t) / period + rng.uniform(0, 2 * np.pi)
        return 0.5 + 0.5 * contrast * np.sin(phase)

    def _edge(self, rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
        proj = self._direction(rng)
        speed = rng.uniform(5.0, 40.0) * rng.choice([-1.0, 1.0])
        start = -speed * n * self.dt / 2 + rng.uniform(-2, 2)
        lo, hi = sorted(rng.uniform(0.0, 1.0, 2))
        on = rng.random() < 0.5
        front = 1.0 / (1.0 + np.exp(-(proj[None, :] - start - speed * t) / 0.5))
        return (lo + (hi - lo) * front) if on else (hi - (hi - lo) * front)

    def _noise(self, rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        sigma = rng.uniform(0.5, 3.0)
        kernel = np.exp(-self._d2 / (2 * sigma**2))
        kernel /= kernel.sum(1, keepdims=True)
        a = rng.uniform(0.5, 0.95)
        white = rng.normal(size=(n, len(self.xy))) @ kernel.T
        ar = lfilter([np.sqrt(1 - a**2)], [1.0, -a], white, axis=0)
        ar /= max(float(ar.std()), 1e-9)
        return 0.5 + rng.uniform(0.1, 0.3) * ar

    def _flash(self, rng: np.random.Generator, n: int, t: np.ndarray) -> np.ndarray:
        level = rng.choice([0.0, 1.0]) if rng.random() < 0.7 else rng.uniform(0, 1)
        on, dur = int(rng.integers(5, n // 2)), int(rng.integers(3, n // 2))
        seq = np.full((n, len(self.xy)), 0.5)
        if rng.random() < 0.5:  # full field
            seq[on : on + dur] = level
        else:  # disc around a random column
            centre = self.xy[int(rng.integers(len(self.xy)))]
            disc = ((self.xy - centre) ** 2).sum(1) <= rng.uniform(1.0, 4.0) ** 2
            seq[on : on + dur, disc] = level
        return seq


def make_stream(kind: str, columns: np.ndarray, seed: int, delta_t: float, *, split: str, davis_root: str | None):
    """The stimulus stream for ``split`` ('train' or 'test'); test streams use their own seed stream."""
    split_seed = [seed, 0 if split == "train" else 1]
    if kind == "davis":
        from simulator.davis import DavisStream, resolve_davis_root

        return DavisStream(resolve_davis_root(davis_root), columns, np.random.SeedSequence(split_seed), split)
    if kind == "natural":
        from simulator.natural import NaturalStream

        return NaturalStream(columns, np.random.SeedSequence(split_seed), delta_t, split)
    return ProceduralStream(columns, np.random.SeedSequence(split_seed).generate_state(1)[0].item(), delta_t)
