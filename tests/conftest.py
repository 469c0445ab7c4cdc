"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.ground_truth import shared_checkpoint_dir


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The shared flyvis checkpoint directory; skips when ../shared/data (or $FLYVIS_SHARED_DATA) lacks it."""
    path = shared_checkpoint_dir()
    if path is None:
        pytest.skip("shared checkpoint not found ($FLYVIS_SHARED_DATA or ../shared/data)")
    return path
