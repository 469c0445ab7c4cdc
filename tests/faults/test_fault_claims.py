"""A made-up metric figure in free text, replayed through the real controller: rejected, re-asked, and never
written to analysis.md (the record people and the next prompts trust)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import run as agent_run
from agent.events import ReplyRejected
from agent.journal import Journal
from agent.llm.base import LLMRequest
from agent.llm.offline_policy import offline_policy
from agent.rebuild import differing_files
from helpers.fault_run import ScriptedPolicy, agent_argv, assert_matches_clean_run, invoke

pytestmark = pytest.mark.fault("reply")

OBSERVATION_TAIL = "; connectivity_R2 reached 0.9990 here"
EXTRA_LINE = "Best metrics: connectivity_R2=0.9500, V_rest_R2=0.9000"
# Batch 1 of the fault slot: conn_R2 0.7735, 0.7898, 0.7861, 0.7824 (iterations 1-4), R2 logs of W-phases only.
FALSE_COUNT = "4 of 4 runs show a V_rest-phase drop"
FALSE_SUPERLATIVE = "the highest conn_R2 of the batch"
MEMORY_COUNT = "4 of 4 baseline runs show a V_rest-phase drop."
MEMORY_SUPERLATIVE = "Node 4 was the lowest of the batch."


def planted(request: LLMRequest) -> str:
    """The offline policy's valid reply with a made-up figure ending iteration 2's Observation and an extra
    line in iteration 3's entry."""
    text = offline_policy(request)
    entries = re.split(r"(?=^## Iter )", text, flags=re.MULTILINE)
    for k, chunk in enumerate(entries):
        if chunk.startswith("## Iter 2:"):
            entries[k] = re.sub(r"^(Observation: .*)$", rf"\1{OBSERVATION_TAIL}", chunk, count=1, flags=re.M)
        elif chunk.startswith("## Iter 3:"):
            entries[k] = re.sub(r"^(Parent rule: .*)$", rf"\1\n{EXTRA_LINE}", chunk, count=1, flags=re.M)
    return "".join(entries)


def test_planted_claims_are_rejected_and_the_reasked_reply_is_what_analysis_md_records(
    paused_run, clean_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy({"batch-001": planted}))
    done = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert done.code == 0, done.err
    rejected = Journal(run_dir).of_type(ReplyRejected)
    assert [e.call_id for e in rejected] == ["batch-001"]
    errors = rejected[0].errors
    assert [e.split(" states ")[0] for e in errors] == [
        "Iter 2: Observation: 'connectivity_R2 reached 0.9990'",
        "Iter 3: line 10 'Best metrics: connectivity_R2=0.9500,...': 'connectivity_R2=0.9500'",
        "Iter 3: line 10 'Best metrics: connectivity_R2=0.9500,...': 'V_rest_R2=0.9000'",
    ]
    analysis = (run_dir / "analysis.md").read_text()
    assert "0.9990" not in analysis and "Best metrics" not in analysis
    assert_matches_clean_run(run_dir, clean_run)


def test_planted_claims_at_every_attempt_pause_the_run_and_leave_analysis_md_unchanged(
    paused_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    before = (run_dir / "analysis.md").read_bytes()
    calls = ("batch-001", "batch-001-reask-1", "batch-001-reask-2")
    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy(dict.fromkeys(calls, planted)))
    paused = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert paused.code == agent_run.EXIT_PAUSED, paused.err
    assert [e.call_id for e in Journal(run_dir).of_type(ReplyRejected)] == list(calls)
    assert (run_dir / "analysis.md").read_bytes() == before
    assert differing_files(run_dir) == []


def planted_data_claims(request: LLMRequest) -> str:
    """The offline policy's valid reply with a false count and a false superlative in two Observation lines
    and the same two kinds in memory.md's Knowledge Base and Current Block."""
    text = offline_policy(request)
    entries = re.split(r"(?=^## Iter )", text, flags=re.MULTILINE)
    for k, chunk in enumerate(entries):
        tail = {"## Iter 2:": FALSE_COUNT, "## Iter 3:": FALSE_SUPERLATIVE}.get(chunk[:10])
        if tail:
            entries[k] = re.sub(r"^(Observation: .*)$", rf"\1; {tail}", chunk, count=1, flags=re.M)
    text = "".join(entries)
    text = text.replace("### Knowledge Base\n\n", f"### Knowledge Base\n\n{MEMORY_COUNT}\n", 1)
    return text.replace("### Current Block\n\n", f"### Current Block\n\n{MEMORY_SUPERLATIVE}\n", 1)


def test_a_false_count_and_superlative_in_entries_and_memory_are_rejected_and_never_written(
    paused_run, clean_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy({"batch-001": planted_data_claims}))
    done = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert done.code == 0, done.err
    rejected = Journal(run_dir).of_type(ReplyRejected)
    assert [e.call_id for e in rejected] == ["batch-001"]
    assert [e.rsplit(" (", 1)[0] for e in rejected[0].errors] == [
        f"Iter 2: Observation: '{FALSE_COUNT}' is false (read as 4 of 4 runs with a V_rest-phase drop): 0 of the 4 "
        "runs of the batch have a V_rest-phase drop",
        f"Iter 3: Observation: '{FALSE_SUPERLATIVE}' is false: node 3 has connectivity_R2=0.7861 but node 2 "
        "of the batch has 0.7898",
        f"memory: Knowledge Base: line 1 '{MEMORY_COUNT[:37]}...': '{MEMORY_COUNT}' is false (read as 4 of 4 runs "
        "with a V_rest-phase drop): 0 of the 4 runs of the baseline config have a V_rest-phase drop",
        f"memory: Current Block: line 1 '{MEMORY_SUPERLATIVE}': '{MEMORY_SUPERLATIVE}' is false: node 4 has "
        "connectivity_R2=0.7824 but node 1 of the batch has 0.7735",
    ]
    for text in ((run_dir / "analysis.md").read_text(), (run_dir / "memory.md").read_text()):
        assert not any(
            planted in text for planted in (FALSE_COUNT, FALSE_SUPERLATIVE, MEMORY_COUNT, MEMORY_SUPERLATIVE)
        )
    assert_matches_clean_run(run_dir, clean_run)
