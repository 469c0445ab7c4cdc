"""Transcripts: recording every call, reuse on resume, replay with fingerprint checks."""

from __future__ import annotations

import base64
import json

import pytest

from agent.llm.base import ImageInput, LLMBackend, LLMCallFailed, LLMRequest, LLMResponse, Usage
from agent.llm.replay import ReplayBackend
from agent.llm.transcripts import RecordingBackend, TranscriptStore, sha256_text
from helpers.llm import make_request, message_json, ok


class CountingBackend(LLMBackend):
    """Replies ``reply <call_id>`` with a fixed usage, and counts its calls."""

    name = "counting"

    def __init__(self, fail_ids: tuple[str, ...] = ()) -> None:
        self.calls: list[str] = []
        self.fail_ids = fail_ids

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request.call_id)
        response = LLMResponse(
            text=f"reply {request.call_id}",
            stop_reason="end_turn",
            model=request.model,
            request_id=f"req-{len(self.calls)}",
            usage=Usage(input_tokens=100, output_tokens=10),
            cost_usd=0.5,
            elapsed_s=0.01,
            backend=self.name,
            raw={"echo": request.call_id},
        )
        if request.call_id in self.fail_ids:
            raise LLMCallFailed(f"counting {request.call_id}: cut at max_tokens", response=response)
        return response


@pytest.fixture
def store(tmp_path):
    return TranscriptStore(tmp_path / "transcripts")


def record_three(store: TranscriptStore, images: list[ImageInput] | None = None) -> CountingBackend:
    inner = CountingBackend()
    recording = RecordingBackend(inner, store)
    recording.complete(make_request("start", purpose="start", prompt="Start.", images=images))
    recording.complete(make_request("batch-001", prompt="Batch 1."))
    recording.complete(make_request("batch-002", prompt="Batch 2."))
    return inner


def test_each_call_is_one_numbered_json_file(store):
    record_three(store)
    names = sorted(p.name for p in store.folder.glob("*.json"))
    assert names == ["0001_start.json", "0002_batch-001.json", "0003_batch-002.json"]


def test_transcript_holds_fingerprint_prompt_response_usage_and_raw(store):
    record_three(store)
    data = json.loads((store.folder / "0002_batch-001.json").read_text())
    assert data["prompt"] == "Batch 1."
    assert data["fingerprint"]["prompt_sha256"] == sha256_text("Batch 1.")
    assert data["fingerprint"]["system_sha256"] == sha256_text("You are the exploration agent.")
    assert data["response"]["text"] == "reply batch-001"
    assert data["usage"]["input_tokens"] == 100
    assert data["cost_usd"] == 0.5
    assert data["raw"] == {"echo": "batch-001"}
    assert data["backend"] == "counting"
    assert data["ok"] is True


def test_images_are_stored_as_hashes_not_base64(store, png):
    path = png("slot0.png")
    record_three(store, images=[ImageInput(path=path, label="slot 0")])
    text = (store.folder / "0001_start.json").read_text()
    data = json.loads(text)
    assert data["images"][0]["label"] == "slot 0"
    assert data["images"][0]["sha256"] == data["fingerprint"]["image_sha256s"][0]
    assert base64.b64encode(path.read_bytes()).decode()[:40] not in text


def test_system_text_is_stored_once_by_hash(store):
    record_three(store)
    files = list((store.folder / "system").iterdir())
    assert len(files) == 1
    assert files[0].read_text() == "You are the exploration agent."


def test_anthropic_raw_response_is_the_message_model_dump(make_api_backend, store):
    backend, _ = make_api_backend(ok(message_json(text="hello")))
    RecordingBackend(backend, store).complete(make_request("start", purpose="start"))
    data = json.loads((store.folder / "0001_start.json").read_text())
    assert data["raw"]["id"] == "msg_01TEST"
    assert data["raw"]["content"][0]["text"] == "hello"
    assert data["raw"]["usage"]["input_tokens"] == 1200
    assert data["response"]["request_id"] == "req_ok_1"


def test_failed_call_is_recorded_with_its_error_and_billed_usage(store):
    recording = RecordingBackend(CountingBackend(fail_ids=("batch-001",)), store)
    with pytest.raises(LLMCallFailed):
        recording.complete(make_request("batch-001"))
    record = store.records()[0]
    assert record.ok is False
    assert "max_tokens" in record.error
    assert record.cost_usd == 0.5
    assert store.find("batch-001") is None


def test_resume_reuses_a_recorded_reply_instead_of_paying_again(store):
    record_three(store)
    inner = CountingBackend()
    resumed = RecordingBackend(inner, store)
    response = resumed.complete(make_request("batch-001", prompt="Batch 1."))
    assert inner.calls == []
    assert response.text == "reply batch-001"
    assert response.cost_usd == 0.0
    assert response.backend == "reused:counting"
    assert len(store.records()) == 3


def test_resume_pays_again_when_the_request_changed(store):
    record_three(store)
    inner = CountingBackend()
    RecordingBackend(inner, store).complete(make_request("batch-001", prompt="Batch 1, edited."))
    assert inner.calls == ["batch-001"]
    assert store.find("batch-001").prompt == "Batch 1, edited."


def test_replay_serves_recorded_replies_in_order(store):
    record_three(store)
    replay = ReplayBackend(store)
    texts = [
        replay.complete(make_request("start", purpose="start", prompt="Start.")).text,
        replay.complete(make_request("batch-001", prompt="Batch 1.")).text,
        replay.complete(make_request("batch-002", prompt="Batch 2.")).text,
    ]
    assert texts == ["reply start", "reply batch-001", "reply batch-002"]
    assert replay.remaining == 0


def test_replay_detects_prompt_drift_and_names_the_call_and_part(store):
    record_three(store)
    with pytest.raises(LLMCallFailed, match=r"'start' differs from transcript 0001 in prompt"):
        ReplayBackend(store).complete(make_request("start", purpose="start", prompt="Start, reworded."))


def test_replay_detects_a_changed_image(store, png):
    record_three(store, images=[ImageInput(path=png("s.png", seed=1), label="slot 0")])
    png("s.png", seed=2)  # same path, other pixels
    request = make_request(
        "start",
        purpose="start",
        prompt="Start.",
        images=[ImageInput(path=store.folder.parent / "s.png", label="slot 0")],
    )
    with pytest.raises(LLMCallFailed, match="in images"):
        ReplayBackend(store).complete(request)


def test_replay_allows_prompt_drift_when_asked(store):
    record_three(store)
    replay = ReplayBackend(store, allow_prompt_drift=True)
    response = replay.complete(make_request("start", purpose="start", prompt="Start, reworded.", system="New rules."))
    assert response.text == "reply start"


def test_replay_still_rejects_a_model_change_with_prompt_drift_allowed(store):
    record_three(store)
    with pytest.raises(LLMCallFailed, match="in model"):
        ReplayBackend(store, allow_prompt_drift=True).complete(
            make_request("start", purpose="start", prompt="Start.", model="claude-other")
        )


def test_strict_replay_rejects_a_call_out_of_order(store):
    record_three(store)
    with pytest.raises(LLMCallFailed, match="records 'start' next"):
        ReplayBackend(store).complete(make_request("batch-001", prompt="Batch 1."))


def test_running_out_of_transcripts_is_a_one_line_error(store):
    inner = CountingBackend()
    RecordingBackend(inner, store).complete(make_request("start", purpose="start", prompt="Start."))
    replay = ReplayBackend(store)
    replay.complete(make_request("start", purpose="start", prompt="Start."))
    with pytest.raises(LLMCallFailed, match="no recorded transcript left for call 'batch-001'") as info:
        replay.complete(make_request("batch-001"))
    assert "\n" not in str(info.value)


def test_replay_replays_a_recorded_failure(store):
    recording = RecordingBackend(CountingBackend(fail_ids=("batch-001",)), store)
    with pytest.raises(LLMCallFailed):
        recording.complete(make_request("batch-001"))
    with pytest.raises(LLMCallFailed, match="max_tokens"):
        ReplayBackend(store).complete(make_request("batch-001"))


@pytest.mark.fault("llm")
def test_corrupt_transcript_is_a_one_line_error_naming_the_file(store):
    record_three(store)
    (store.folder / "0002_batch-001.json").write_text('{"seq": "two"}')
    with pytest.raises(LLMCallFailed, match=r"0002_batch-001\.json: field") as info:
        store.records()
    assert "\n" not in str(info.value)
