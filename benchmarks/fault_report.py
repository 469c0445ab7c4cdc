"""Fault-injection report (issue 7): run ``pytest -m fault`` and count, per fault kind, the cases that ran,
passed and failed.

Run: ``python benchmarks/fault_report.py [--slow] [PYTEST_ARGS...]`` from anywhere. Without ``--slow`` the
cases marked ``slow`` (and ``gpu`` / ``browser``) are left out, as in the default suite; with it the slow
ones are included. Extra arguments go to pytest (e.g. ``-k kill``). A case is one collected test item
(one parametrization). Exit status 1 when a case failed or errored, when pytest itself failed, or (without
extra arguments) when a kind has no passing case; 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

REPO = Path(__file__).resolve().parents[1]
KINDS = ("llm", "reply", "yaml", "trainer", "controller", "secrets", "fuzz")
Outcome = Literal["passed", "failed", "error", "skipped", "xfailed"]
COLUMNS = ("cases", "passed", "failed", "skipped", "xfailed")


class Case(BaseModel):
    """One collected fault case and how it ended."""

    model_config = ConfigDict(extra="forbid")

    nodeid: str
    kind: str
    outcome: Outcome | None = None  # None: collected but no report arrived (interrupted run)
    reason: str = ""  # xfail reason / skip reason


class FaultTally:
    """pytest plugin: the fault kind of every selected item, then the outcome of each from its reports."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.bad_marks: list[str] = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:  # runs after -m/-k deselection (trylast): only the items that will run
            mark = item.get_closest_marker("fault")
            if mark is None:
                continue
            kind = mark.args[0] if len(mark.args) == 1 and not mark.kwargs else None
            if kind not in KINDS:
                self.bad_marks.append(
                    f"{item.nodeid}: fault marker must be fault(kind), kind one of {', '.join(KINDS)}"
                )
                continue
            self.cases[item.nodeid] = Case(nodeid=item.nodeid, kind=kind)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = self.cases.get(report.nodeid)
        if case is not None:
            case.outcome, case.reason = merge_outcome(case.outcome, case.reason, report)


def merge_outcome(outcome: Outcome | None, reason: str, report: Any) -> tuple[Outcome | None, str]:
    """Fold one phase report (setup / call / teardown) into a case's (outcome, reason), as pytest's summary
    counts it: a failed setup or teardown is an error, a strict xfail that passed is a failure, a
    non-strict one counts as passed."""
    xfail = getattr(report, "wasxfail", None)
    if report.failed:
        return ("failed" if report.when == "call" else "error"), ""
    if report.skipped:
        return ("xfailed", xfail) if xfail is not None else ("skipped", _skip_reason(report))
    if report.when == "call":
        return "passed", ""
    return outcome, reason


def _skip_reason(report: Any) -> str:
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


def tally(cases: Iterable[Case]) -> dict[str, Counter[str]]:
    """kind -> counts of cases, passed, failed (errors included), skipped, xfailed; every kind present."""
    rows: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    for case in cases:
        row = rows[case.kind]
        row["cases"] += 1
        outcome = "failed" if case.outcome in ("error", None) else case.outcome
        row[outcome] += 1
    return rows


def format_table(rows: dict[str, Counter[str]]) -> str:
    """A fixed-width table, one line per kind plus the total."""
    total: Counter[str] = Counter()
    for counts in rows.values():
        total.update(counts)
    lines = [f"{'kind':<12}" + "".join(f"{c:>9}" for c in COLUMNS)]
    for kind, counts in [*rows.items(), ("total", total)]:
        if kind == "total":
            lines.append("-" * len(lines[0]))
        lines.append(f"{kind:<12}" + "".join(f"{counts[c]:>9}" for c in COLUMNS))
    return "\n".join(lines)


def problems(rows: dict[str, Counter[str]], exit_code: int, filtered: bool) -> list[str]:
    """Why the report fails (empty: it passes)."""
    found = []
    failed = sum(counts["failed"] for counts in rows.values())
    if failed:
        found.append(f"{failed} fault case(s) failed")
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) and not failed:
        found.append(f"pytest exited with {pytest.ExitCode(exit_code).name}")
    if not filtered:
        found += [f"kind {kind}: no passing case" for kind, counts in rows.items() if counts["passed"] == 0]
    return found


def marker_expression(slow: bool) -> str:
    return "fault and not gpu and not browser" if slow else "fault and not slow and not gpu and not browser"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/fault_report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", action="store_true", help="include the cases marked slow")
    args, extra = p.parse_known_args(argv)
    os.chdir(REPO)
    plugin = FaultTally()
    pytest_args = ["-m", marker_expression(args.slow), "-p", "no:cacheprovider", "-q", *extra]
    print(f"$ pytest {' '.join(pytest_args)}", flush=True)
    t0 = time.monotonic()
    exit_code = int(pytest.main(pytest_args, plugins=[plugin]))
    wall = time.monotonic() - t0
    rows = tally(plugin.cases.values())
    print(f'\nFault cases by kind (pytest -m "{marker_expression(args.slow)}", {wall:.1f} s wall):')
    print(format_table(rows))
    for case in sorted(plugin.cases.values(), key=lambda c: c.nodeid):
        if case.outcome in ("xfailed", "failed", "error", None):
            note = f": {case.reason}" if case.reason else ""
            print(f"  {case.outcome or 'not run'}: {case.nodeid}{note}")
    issues = [*plugin.bad_marks, *problems(rows, exit_code, filtered=bool(extra))]
    for issue in issues:
        print(f"FAIL: {issue}", file=sys.stderr)
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
