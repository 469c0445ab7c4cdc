"""Fixtures for the simulator tests: a small simulation config and the optional shared checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiment.config import SimulationConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_sim() -> SimulationConfig:
    """Extent 1, a few frames: generates in well under a second."""
    return SimulationConfig(extent=1, n_frames=60, n_test_frames=20, steady_state_s=0.1, seed=3)


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The shared flyvis checkpoint directory; skips when ../shared/data is absent."""
    root = Path(os.environ.get("FLYVIS_SHARED_DATA", REPO / ".." / "shared" / "data"))
    path = root / "flyvis_model" / "flow" / "0000" / "000"
    if not (path / "best_chkpt").is_file():
        pytest.skip(f"shared checkpoint not found at {path}")
    return path
