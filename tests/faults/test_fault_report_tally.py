"""benchmarks/fault_report.py counts every case once, per kind, the way pytest's summary does."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fault_report.py"


@cache
def fault_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fault_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_report"] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


def report(when: str, outcome: str, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(
        when=when, passed=outcome == "passed", failed=outcome == "failed", skipped=outcome == "skipped", **extra
    )


def fold(*reports: SimpleNamespace) -> tuple[str | None, str]:
    state: tuple[str | None, str] = (None, "")
    for r in reports:
        state = fault_report().merge_outcome(*state, r)
    return state


def test_passing_case_is_passed() -> None:
    assert fold(report("setup", "passed"), report("call", "passed"), report("teardown", "passed")) == ("passed", "")


def test_failed_teardown_after_a_pass_is_an_error() -> None:
    assert fold(report("setup", "passed"), report("call", "passed"), report("teardown", "failed"))[0] == "error"


def test_expected_failure_keeps_its_reason_through_teardown() -> None:
    call = report("call", "skipped", wasxfail="run.py lets OSError escape")
    assert fold(report("setup", "passed"), call, report("teardown", "passed")) == (
        "xfailed",
        "run.py lets OSError escape",
    )


def test_skip_at_setup_is_skipped_with_its_reason() -> None:
    setup = report("setup", "skipped", longrepr=("f.py", 3, "Skipped: no shared data"))
    assert fold(setup, report("teardown", "passed")) == ("skipped", "no shared data")


def test_tally_counts_errors_and_unreported_cases_as_failed_and_lists_every_kind() -> None:
    m = fault_report()
    cases = [
        m.Case(nodeid="a", kind="llm", outcome="passed"),
        m.Case(nodeid="b", kind="llm", outcome="error"),
        m.Case(nodeid="c", kind="yaml", outcome=None),
        m.Case(nodeid="d", kind="yaml", outcome="xfailed"),
    ]
    rows = m.tally(cases)
    assert list(rows) == list(m.KINDS)
    assert (rows["llm"]["cases"], rows["llm"]["passed"], rows["llm"]["failed"]) == (2, 1, 1)
    assert (rows["yaml"]["failed"], rows["yaml"]["xfailed"], rows["fuzz"]["cases"]) == (1, 1, 0)


def test_table_ends_with_the_total_row() -> None:
    m = fault_report()
    table = m.format_table(m.tally([m.Case(nodeid="a", kind="llm", outcome="passed")]))
    assert table.splitlines()[-1].split() == ["total", "1", "1", "0", "0", "0"]


@pytest.mark.parametrize(("slow", "has_not_slow"), [(False, True), (True, False)])
def test_slow_cases_are_selected_only_with_the_slow_switch(slow: bool, has_not_slow: bool) -> None:
    assert ("not slow" in fault_report().marker_expression(slow)) is has_not_slow
