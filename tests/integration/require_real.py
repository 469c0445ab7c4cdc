"""pytest plugin for CI: a ``real`` or ``browser`` test that skips is a failure (it must run there).

Loaded by tests/integration/run.sh (``-p tests.integration.require_real``) when ``CI=true`` or
``FLYVIS_REQUIRE_REAL=1``; elsewhere those tests may skip with their one-line reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

REQUIRED_MARKERS = ("real", "browser")


def required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("FLYVIS_REQUIRE_REAL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and required()) or hasattr(report, "wasxfail"):
        return
    if not any(item.get_closest_marker(name) for name in REQUIRED_MARKERS):
        return
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped where it must run (CI): {reason}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if required() and not items:
        raise pytest.UsageError("no real or browser test was selected, but CI must run them")
