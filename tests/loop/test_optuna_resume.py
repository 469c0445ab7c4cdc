"""``--llm optuna`` under SIGKILL: the controller killed at each step of a batch, then resumed, ends exactly like
an uninterrupted run, and its Optuna study holds each measured iteration once, with no trial left open."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import optuna
import pytest

from agent.journal import CRASH_ENV
from agent.llm.optuna_policy import STUDY_FILE, open_study
from helpers.agent_cli import journal_events, run_agent
from helpers.fault_run import write_tiny_config

TrialState = optuna.trial.TrialState

ITERATIONS = 12  # batch 1 baseline, batches 2-3 proposed by the study
# (event after which the controller dies, occurrence)
CRASH_POINTS = [
    ("llm_response", 2),  # batch 2's trials asked, the reply recorded but not yet accepted
    ("slot_finished", 6),  # batch 2 half trained: its trials are still running
    ("memory_read", 3),  # batch 2 measured, the study not told yet
]
COMPARED_FILES = ("analysis.md", "memory.md", "ucb_scores.txt", "flyvis_tiny_00.yaml", "flyvis_tiny_01.yaml")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_config(tmp_path_factory.mktemp("cfg"), claude={"baseline_batches": 1})


def optuna_run(run_dir: Path, config: Path, *extra: str, env: dict[str, str] | None = None):
    args = ("--config", str(config), "--llm", "optuna", *extra)
    return run_agent(run_dir, *args, iterations=ITERATIONS, env=env)


@pytest.fixture(scope="module")
def optuna_reference(tmp_path_factory: pytest.TempPathFactory, config: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("optuna-ref") / "run"
    proc = optuna_run(run_dir, config)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_an_optuna_run_records_its_backend_and_its_study(optuna_reference: Path) -> None:
    events = journal_events(optuna_reference)
    assert next(e for e in events if e["type"] == "run_started")["llm"] == "optuna"
    assert {e["backend"] for e in events if e["type"] == "llm_response"} == {"optuna"}
    study = open_study(optuna_reference / STUDY_FILE, seed=-1)
    assert any(t.user_attrs.get("kind") == "asked" for t in study.trials)


def test_the_report_says_the_optuna_policy_produced_the_run(optuna_reference: Path, tmp_path: Path) -> None:
    from agent.views.report import build_report

    page = build_report(optuna_reference, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<th>policy</th><td>Optuna policy (TPE; study in optuna_study.jsonl)</td>" in page


@pytest.mark.parametrize(("event", "nth"), CRASH_POINTS, ids=[f"{e}-{n}" for e, n in CRASH_POINTS])
@pytest.mark.fault("controller")
def test_killed_optuna_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, config: Path, optuna_reference: Path, event: str, nth: int
) -> None:
    run_dir = tmp_path / "run"
    killed = optuna_run(run_dir, config, env={CRASH_ENV: f"{event}:{nth}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = optuna_run(run_dir, config, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    for name in COMPARED_FILES:
        assert (run_dir / name).read_text() == (optuna_reference / name).read_text(), name
    events = journal_events(run_dir)
    calls = Counter(e["call_id"] for e in events if e["type"] == "llm_response")
    assert set(calls.values()) == {1}, f"a policy call was repeated: {calls}"

    trials = open_study(run_dir / STUDY_FILE, seed=-1).trials
    told = Counter(t.user_attrs.get("iteration") for t in trials if t.state == TrialState.COMPLETE)
    told.pop(None, None)  # proposals told a known config's mean (duplicates) belong to no iteration
    assert sorted(told) == list(range(1, ITERATIONS + 1)) and set(told.values()) == {1}, told
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], "a trial was left open"
    reference = open_study(optuna_reference / STUDY_FILE, seed=-1).trials
    asked = [(t.user_attrs["iteration"], t.params) for t in trials if t.user_attrs.get("kind") == "asked"]
    assert asked == [(t.user_attrs["iteration"], t.params) for t in reference if t.user_attrs.get("kind") == "asked"]
