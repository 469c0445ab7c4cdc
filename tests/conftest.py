"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.ground_truth import shared_checkpoint_dir

# Numerics-sensitive modules marked from here rather than in the module (its recorded runs are being rewritten
# to replay on any CPU); every other `numerics` test carries the mark itself.
NUMERICS_MODULES = ("loop/test_e2e_replay.py",)
TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of NUMERICS_MODULES `numerics` (make test-cpus)."""
    for item in items:
        if item.path.is_relative_to(TESTS) and item.path.relative_to(TESTS).as_posix() in NUMERICS_MODULES:
            item.add_marker(pytest.mark.numerics)


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The shared flyvis checkpoint directory; skips when ../shared/data (or $FLYVIS_SHARED_DATA) lacks it."""
    path = shared_checkpoint_dir()
    if path is None:
        pytest.skip("shared checkpoint not found ($FLYVIS_SHARED_DATA or ../shared/data)")
    return path
