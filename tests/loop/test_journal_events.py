"""Typed journal events and the RunState reducer: old journals load, bad lines are one-line errors, and the
reducer's phase follows the events.

``data/journal_v1.jsonl`` was written by the controller before events were typed (no ``v`` field): a
4-iteration run of 2-slot batches with ``--review``, paused after batch 1 and resumed to the end.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from agent.events import (
    AnalysisPending,
    Interrupted,
    LlmResponse,
    ReplyAccepted,
    ReviewDone,
    ReviewPause,
    RunFinished,
    RunResumed,
    RunStarted,
    SlotFinished,
    SlotSubmitted,
)
from agent.executors.base import JobHandle
from agent.journal import Journal, JournalError
from agent.run_state import RunState
from experiment.exploration import SlotResult
from helpers.agent_cli import REPO, journal_events, run_agent

V1_JOURNAL = Path(__file__).resolve().parent / "data" / "journal_v1.jsonl"


def _journal_with(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "journal.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return tmp_path / "journal.jsonl"


def _v1_lines() -> list[str]:
    return V1_JOURNAL.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def v1_journal(tmp_path: Path) -> Journal:
    shutil.copyfile(V1_JOURNAL, tmp_path / "journal.jsonl")
    return Journal(tmp_path)


# ---------------------------------------------------------------------------------------------- old journals


def test_a_journal_written_before_events_were_typed_loads_as_version_1(v1_journal: Journal) -> None:
    assert len(v1_journal.events) == 26
    assert all(e.v == 1 for e in v1_journal.events)
    assert [e.seq for e in v1_journal.events] == list(range(1, 27))
    finished = v1_journal.of_type(SlotFinished)
    assert [e.iteration for e in finished] == [1, 2, 3, 4]
    assert all(isinstance(e.result, SlotResult) for e in finished)
    assert all(isinstance(e.handle, JobHandle) for e in v1_journal.of_type(SlotSubmitted))


def test_a_version_1_journal_reduces_to_its_run_state(v1_journal: Journal) -> None:
    state = RunState.from_events(v1_journal.events, n_slots=2)  # v1 start events carry no batch size
    assert (state.name, state.n_iterations, state.n_batches, state.planned_iterations) == ("tiny2", 4, 2, 4)
    assert state.phase == "finished" and state.finished
    assert [r.iteration for r in state.results] == [1, 2, 3, 4]
    assert sorted(state.accepted) == [0, 1, 2] and state.n_rejected(1) == 0
    assert state.llm_calls == 3 and state.llms == ["offline", "offline"]
    assert state.review_pauses == {1} and state.paused_batch is None  # the resume ended the review pause
    assert state.current_batch == 2 and state.analysis_applied == {0, 1, 2}
    assert [p.iteration for p in state.plan(2) or []] == [3, 4]


def test_a_version_1_journal_cut_after_its_review_pause_reduces_to_the_pause(tmp_path: Path) -> None:
    lines = _v1_lines()
    pause = next(k for k, line in enumerate(lines) if '"review_pause"' in line)
    _journal_with(tmp_path, lines[: pause + 1])
    state = RunState.from_events(Journal(tmp_path).events, n_slots=2)
    assert state.phase == "review_pause" and state.paused_batch == 1
    assert len(state.results) == 2 and state.current_batch == 2


# ---------------------------------------------------------------------------------------------- bad lines


def test_an_unknown_event_type_is_a_one_line_error_naming_file_line_and_type(tmp_path: Path) -> None:
    path = _journal_with(tmp_path, [*_v1_lines()[:2], json.dumps({"type": "slot_exploded", "seq": 3})])
    with pytest.raises(JournalError) as err:
        Journal(tmp_path)
    assert str(err.value) == f"{path}: line 3: type: unknown event type 'slot_exploded'"


def test_an_event_without_a_type_is_a_one_line_error(tmp_path: Path) -> None:
    path = _journal_with(tmp_path, [json.dumps({"seq": 1})])
    with pytest.raises(JournalError, match=r"line 1: type: missing") as err:
        Journal(tmp_path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_malformed_payload_names_the_event_and_the_field(tmp_path: Path) -> None:
    lines = _v1_lines()
    k = next(k for k, line in enumerate(lines) if '"slot_finished"' in line)
    event = json.loads(lines[k])
    del event["result"]["seeds"]
    lines[k] = json.dumps(event)
    path = _journal_with(tmp_path, lines)
    with pytest.raises(JournalError) as err:
        Journal(tmp_path)
    assert str(err.value) == f"{path}: line {k + 1}: slot_finished.result.seeds: Field required"


def test_an_unexpected_field_is_refused(tmp_path: Path) -> None:
    _journal_with(tmp_path, [json.dumps({"type": "review_pause", "seq": 1, "at": "t", "batch": 1, "bacth": 2})])
    with pytest.raises(JournalError, match=r"line 1: review_pause\.bacth: Extra inputs are not permitted"):
        Journal(tmp_path)


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    _journal_with(tmp_path, [json.dumps({"type": "review_pause", "v": 2, "seq": 1, "at": "t", "batch": 1})])
    with pytest.raises(JournalError, match=r"line 1: review_pause\.v: schema version 2 is not supported"):
        Journal(tmp_path)


# ---------------------------------------------------------------------------------------------- writing


def test_append_stamps_seq_time_and_version_and_reads_back_equal(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first = journal.append(RunStarted(name="r", n_iterations=4, n_slots=2, llm="offline"))
    second = journal.append(ReviewPause(batch=1))
    assert (first.seq, second.seq) == (1, 2) and first.at and first.v == 1
    line = (tmp_path / "journal.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert line.startswith('{"type": "run_started", "v": 1, "seq": 1,')
    assert Journal(tmp_path).events == [first, second]


def test_typed_lookups_match_fields(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for batch in (1, 2):
        journal.append(ReviewPause(batch=batch))
    assert [e.batch for e in journal.of_type(ReviewPause)] == [1, 2]
    assert journal.last(ReviewPause, batch=1) == journal.events[0]
    assert journal.has(ReviewPause, batch=2) and not journal.has(ReviewDone)


# ---------------------------------------------------------------------------------------------- the reducer


def _start(n_iterations: int = 8, n_slots: int | None = 4) -> RunStarted:
    return RunStarted(name="r", n_iterations=n_iterations, n_slots=n_slots, llm="offline")


def test_the_size_comes_from_the_last_start_or_resume_not_the_fallback() -> None:
    state = RunState.from_events([_start(4), RunResumed(n_iterations=10, n_slots=4)], n_slots=99)
    assert (state.n_iterations, state.batch_size, state.n_batches, state.planned_iterations) == (10, 4, 3, 12)
    assert state.batch_iterations(3) == [9, 10, 11, 12] and state.batch_iterations(4) == []


def test_analysis_pending_lasts_until_a_reply_for_that_batch_is_accepted() -> None:
    pending = RunState.from_events([_start(), AnalysisPending(batch=0)])
    assert pending.phase == "analysis_pending" and pending.pending_batch == 0
    reply = ReplyAccepted(source_batch=0, for_batch=1, call_id="start", entries="", memory={}, planned=[])
    assert RunState.from_events([_start(), AnalysisPending(batch=0), reply]).phase == "starting"


def test_an_interruption_is_the_phase_until_the_run_resumes() -> None:
    events = [_start(), Interrupted(cancelled_jobs=2)]
    assert RunState.from_events(events).phase == "interrupted"
    assert RunState.from_events([*events, RunResumed(n_iterations=8)]).phase == "starting"


def test_llm_calls_and_cost_are_summed() -> None:
    calls = [LlmResponse(batch=0, call_id=f"c{k}", text="t", backend="anthropic", cost_usd=0.5) for k in range(3)]
    state = RunState.from_events([_start(), *calls])
    assert (state.llm_calls, state.cost_usd, state.backends) == (3, 1.5, ["anthropic"])


def test_a_finished_run_stays_finished_when_resumed() -> None:
    state = RunState.from_events([_start(), RunFinished(n_iterations=8), RunResumed(n_iterations=8)])
    assert state.finished and state.phase == "finished"


# ---------------------------------------------------------------------------------------------- resuming old runs

V1_RUN = Path(__file__).resolve().parent / "data" / "run_v1_review_pause"


def test_a_run_paused_by_the_previous_version_resumes_to_the_end(tmp_path: Path) -> None:
    """``data/run_v1_review_pause``: the run files (images and transcripts left out) of a tiny 8-iteration run that
    the version before typed events paused for review after batch 1; its trainables predate ``training.r2_async``.
    Absolute paths are placeholders filled in here."""
    run_dir = tmp_path / "run"
    shutil.copytree(V1_RUN, run_dir)
    for name in ("journal.jsonl", "run.json"):
        path = run_dir / name
        text = path.read_text(encoding="utf-8")
        text = text.replace("@RUN_DIR@", str(run_dir)).replace("@REPO@", str(REPO)).replace("@PYTHON@", sys.executable)
        path.write_text(text, encoding="utf-8")
    done = run_agent(run_dir, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    types = [e["type"] for e in journal_events(run_dir)]
    assert "reply_rejected" not in types and types[-1] == "run_finished"
    state = RunState.from_events(Journal(run_dir).events, n_slots=4)
    assert [r.iteration for r in state.results] == list(range(1, 9))


def test_an_old_node_and_a_new_node_of_the_same_config_are_one_config(v1_journal: Journal) -> None:
    from agent.config_policy import normalize_trainable
    from memory.variance import config_key

    old = v1_journal.of_type(SlotFinished)[0].result  # written before training.r2_async existed
    raw = json.loads(next(line for line in _v1_lines() if '"slot_finished"' in line))["result"]["trainable"]
    assert "r2_async" not in raw["training"]
    assert config_key(old.trainable) == config_key(normalize_trainable(raw))


def test_folding_a_journal_in_two_parts_gives_the_state_of_the_whole(v1_journal: Journal) -> None:
    events = v1_journal.events
    whole = RunState.from_events(events, n_slots=2)
    for cut in range(len(events) + 1):
        assert RunState.from_events(events[:cut], n_slots=2).fold(events[cut:]) == whole


def test_ctrl_c_during_an_append_keeps_the_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT in the fsync: the event is counted, Ctrl-C comes after, the next append keeps it."""
    import os
    import signal

    journal = Journal(tmp_path)
    real_fsync = os.fsync

    def fsync_then_ctrl_c(fd: int) -> None:
        real_fsync(fd)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "fsync", fsync_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        journal.append(_start())
    monkeypatch.undo()
    journal.append(Interrupted(cancelled_jobs=1))
    assert [type(e).__name__ for e in Journal(tmp_path).events] == ["RunStarted", "Interrupted"]
