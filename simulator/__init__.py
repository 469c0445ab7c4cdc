"""FlyVis connectome ODE simulator: connectome, ground truth, stimulus, dynamics and datasets.

Submodules are imported on demand (nothing heavy happens at import time):
``connectome``, ``ground_truth``, ``dynamics``, ``stimulus``, ``generate``, ``dataset``.
"""

from __future__ import annotations

from simulator.errors import SimulatorError

__all__ = ["SimulatorError"]
