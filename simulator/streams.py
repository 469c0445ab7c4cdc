"""What every stimulus source is: a stream of frames, and the base class that serves them sequence by sequence.

simulator.stimulus (procedural movies, the ``make_stream`` factory) and simulator.davis (natural videos)
both build on it; keeping it here lets the factory import the DAVIS stream without a cycle.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class StimulusStream(Protocol):
    """Stateful source of frames (n, C) float32 for the C lattice columns."""

    def frames(self, n: int) -> np.ndarray: ...

    def describe(self) -> dict: ...


class BufferedStream:
    """Serves frames from successive sequences produced by ``_next_sequence``."""

    def __init__(self) -> None:
        self._buf = np.zeros((0, 0), dtype=np.float32)

    def _next_sequence(self) -> np.ndarray:
        raise NotImplementedError

    def frames(self, n: int) -> np.ndarray:
        parts, have = [], 0
        while have < n:
            if len(self._buf) == 0:
                self._buf = self._next_sequence().astype(np.float32)
            take = min(n - have, len(self._buf))
            parts.append(self._buf[:take])
            self._buf, have = self._buf[take:], have + take
        return np.concatenate(parts, axis=0)
