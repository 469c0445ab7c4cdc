"""Fixtures for the simulator tests: a small simulation config (the shared checkpoint is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from experiment.config import SimulationConfig


@pytest.fixture
def small_sim() -> SimulationConfig:
    """Extent 1, a few frames: generates in well under a second."""
    return SimulationConfig(extent=1, n_frames=60, n_test_frames=20, steady_state_s=0.1, seed=3)
