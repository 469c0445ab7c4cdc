"""Hostile sizes cost nothing: an oversized reply is one error line, its re-ask carries a short excerpt, and the
journal and transcripts keep a hash, the size and an excerpt instead of the text; oversized events and images
never reach the journal or the prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import run as agent_run
from agent.controller import MAX_IMAGE_BYTES, MAX_REASK_ERRORS, Controller, cap_errors
from agent.events import LlmResponse, ReplyAccepted, ReplyRejected, RunStarted
from agent.journal import MAX_EVENT_BYTES, Journal, JournalError
from agent.llm.base import LLMRequest, LLMResponse
from agent.llm.offline_policy import offline_policy
from agent.llm.transcripts import EXCERPT_CHARS, MAX_KEPT_CHARS, TextDigest, TranscriptStore
from agent.reply_parse import MAX_REPLY_CHARS, parse_reply, size_error
from helpers.fault_run import ScriptedPolicy, agent_argv, assert_matches_clean_run, invoke

pytestmark = pytest.mark.fault("reply")

HUGE_CHARS = 50 * 1024 * 1024
REASK_LIMIT_BYTES = 20 * 1024
JOURNAL_GROWTH_LIMIT_BYTES = 100 * 1024


def test_a_reply_the_controller_could_accept_is_always_kept_whole() -> None:
    assert MAX_KEPT_CHARS >= MAX_REPLY_CHARS


def test_50_mb_reply_is_one_error_a_short_reask_and_a_small_journal(
    paused_run, clean_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)

    sent: list[str] = []

    def huge(request: LLMRequest) -> str:
        text = offline_policy(request)  # a valid reply buried in 50 MB
        sent.append(text + "\n" + "y" * (HUGE_CHARS - len(text) - 1))
        return sent[-1]

    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy({"batch-001": huge}))
    done = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert done.code == 0, done.err

    rejected = Journal(run_dir).of_type(ReplyRejected)
    assert [(e.call_id, e.errors) for e in rejected] == [("batch-001", [size_error(HUGE_CHARS)])]
    reask = TranscriptStore(run_dir / "transcripts").find("batch-001-reask-1")
    assert reask is not None and len(reask.prompt.encode()) < REASK_LIMIT_BYTES
    assert sent[0][:EXCERPT_CHARS] in reask.prompt and TextDigest.of(sent[0]).note() in reask.prompt
    journal_growth = (run_dir / "journal.jsonl").stat().st_size - (clean_run / "journal.jsonl").stat().st_size
    assert journal_growth < JOURNAL_GROWTH_LIMIT_BYTES
    transcripts = {p.name: p.stat().st_size for p in (run_dir / "transcripts").glob("*.json")}
    assert max(transcripts.values()) < JOURNAL_GROWTH_LIMIT_BYTES, transcripts
    recorded = TranscriptStore(run_dir / "transcripts").find("batch-001")
    assert recorded is not None and recorded.response_digest is not None
    assert recorded.response_digest.chars == HUGE_CHARS and recorded.raw is None
    assert_matches_clean_run(run_dir, clean_run)
    print(
        f"\n50 MB reply: 1 error ({len(rejected[0].errors[0])} chars), re-ask prompt {len(reask.prompt.encode())} B, "
        f"journal growth vs the clean run {journal_growth} B, largest transcript {max(transcripts.values())} B"
    )


def test_an_oversized_reply_served_again_from_the_journal_is_rejected_the_same_way() -> None:
    text = "z" * (MAX_REPLY_CHARS + 10)
    event = LlmResponse(
        batch=1, call_id="batch-001", text=text[:EXCERPT_CHARS], text_digest=TextDigest.of(text), backend="x"
    )
    assert parse_reply(event.served_text()).errors == parse_reply(text).errors == [size_error(len(text))]


def test_transcript_keeps_a_digest_of_an_oversized_reply_and_replays_it_the_same_way(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    text = "reply " * (MAX_KEPT_CHARS // 3)
    request = LLMRequest(call_id="batch-001", purpose="batch", system="s", prompt="p", model="m", max_tokens=256)
    response = LLMResponse(text=text, stop_reason="end_turn", model="m", request_id=None, backend="x", raw={"t": text})
    store.append(request, backend="x", started_at="t", elapsed_s=0.0, response=response)
    path = next(tmp_path.glob("*.json"))
    assert path.stat().st_size < 3 * EXCERPT_CHARS + 4096
    record = store.find("batch-001")
    assert record is not None and record.raw is None
    assert record.response_digest == TextDigest.of(text)
    served = record.to_response().text
    assert len(served) == len(text) and served.startswith(text[:EXCERPT_CHARS])


def test_journal_refuses_an_event_over_its_limit_before_writing(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(RunStarted(name="x", n_iterations=1))
    before = journal.path.read_bytes()
    with pytest.raises(JournalError, match=f"over the limit of {MAX_EVENT_BYTES:,}$"):
        journal.append(LlmResponse(batch=0, call_id="x", text="w" * MAX_EVENT_BYTES, backend="x"))
    assert journal.path.read_bytes() == before and len(journal.events) == 1


def test_errors_past_the_cap_are_counted_in_one_line() -> None:
    errors = [f"e{i}" for i in range(MAX_REASK_ERRORS + 7)]
    capped = cap_errors(errors)
    assert capped[:-1] == errors[:MAX_REASK_ERRORS] and capped[-1].startswith("... and 7 more errors")
    assert cap_errors(errors[:3]) == errors[:3]


def test_an_oversized_image_is_left_out_of_the_prompt_with_a_log_line(tmp_path: Path) -> None:
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    small.write_bytes(b"\x89PNG" + b"0" * 100)
    with open(big, "wb") as fh:
        fh.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no 5 MB written

    class Logged:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def log(self, line: str) -> None:
            self.lines.append(line)

    stub = Logged()
    assert Controller._image_fits(stub, small) and not Controller._image_fits(stub, tmp_path / "missing.png")  # type: ignore[arg-type]
    assert not Controller._image_fits(stub, big)  # type: ignore[arg-type]
    assert stub.lines == [
        f"   {big}: {MAX_IMAGE_BYTES + 1:,} bytes, over the limit of {MAX_IMAGE_BYTES:,}; left out of the prompt"
    ]


def test_resume_after_a_crash_before_the_rejection_rejects_the_journaled_oversized_reply_the_same_way(
    paused_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    size = MAX_REPLY_CHARS + 1000
    calls = ("batch-001", "batch-001-reask-1", "batch-001-reask-2")
    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy(dict.fromkeys(calls, "w" * size)))
    assert invoke(agent_argv(run_dir, paused_run.config, "--resume")).code == agent_run.EXIT_PAUSED
    journal = run_dir / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    last_response = max(i for i, ln in enumerate(lines) if b'"llm_response"' in ln)
    journal.write_bytes(b"".join(lines[: last_response + 1]))  # as if killed right after journaling the reply

    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy())
    assert invoke(agent_argv(run_dir, paused_run.config, "--resume")).code == 0
    rejected = Journal(run_dir).of_type(ReplyRejected)
    assert [(e.call_id, e.errors) for e in rejected] == [(c, [size_error(size)]) for c in calls]
    accepted = [e.call_id for e in Journal(run_dir).of_type(ReplyAccepted)]
    assert accepted == ["start", "batch-001-reask-3"]
