"""AnthropicBackend through the real anthropic SDK, with only the HTTP transport scripted."""

from __future__ import annotations

import base64
import io
import logging
import time

import httpx2
import pytest
from PIL import Image

from agent.llm.anthropic_backend import AnthropicBackend
from agent.llm.base import BudgetExceeded, ImageInput, LLMCallFailed, LLMConfigError
from agent.llm.budget import Budget, BudgetedBackend
from agent.llm.transcripts import RecordingBackend, TranscriptStore
from helpers.llm import API_KEY, api_error, make_request, message_json, ok


def test_images_are_base64_png_blocks_placed_before_the_text(make_api_backend, png):
    backend, api = make_api_backend(ok())
    images = [
        ImageInput(path=png("a.png", seed=1), label="slot 0"),
        ImageInput(path=png("b.png", seed=2), label="slot 1"),
    ]
    backend.complete(make_request(images=images, prompt="Analyse the batch."))

    content = api.body()["messages"][0]["content"]
    kinds = [block["type"] for block in content]
    assert kinds == ["text", "image", "text", "image", "text"]
    assert content[-1]["text"] == "Analyse the batch."
    assert content[0]["text"].endswith("slot 0")
    for block, image in zip((content[1], content[3]), images, strict=True):
        assert block["source"]["type"] == "base64"
        assert block["source"]["media_type"] == "image/png"
        assert base64.b64decode(block["source"]["data"]) == image.path.read_bytes()


def test_image_over_the_pixel_limit_is_downscaled(make_api_backend, png):
    backend, api = make_api_backend(ok())
    big = ImageInput(path=png("big.png", width=1600, height=1000), label="big")
    backend.complete(make_request(images=[big]))

    data = base64.b64decode(api.body()["messages"][0]["content"][1]["source"]["data"])
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        assert im.width * im.height <= 1_150_000
        assert abs(im.width / im.height - 1.6) < 0.01


def test_missing_image_fails_before_any_http_request(make_api_backend, tmp_path):
    backend, api = make_api_backend(ok())
    with pytest.raises(LLMCallFailed, match="not found"):
        backend.complete(make_request(images=[ImageInput(path=tmp_path / "nope.png", label="slot 2")]))
    assert api.requests == []


@pytest.mark.parametrize(("cache", "expected"), [("off", None), ("5m", "5m"), ("1h", "1h")])
def test_system_block_carries_cache_control_per_setting(make_api_backend, cache, expected):
    backend, api = make_api_backend(ok(), prompt_cache=cache)
    backend.complete(make_request(system="Protocol text."))

    system = api.body()["system"]
    assert system[0]["text"] == "Protocol text."
    if expected is None:
        assert "cache_control" not in system[0]
    else:
        assert system[0]["cache_control"] == {"type": "ephemeral", "ttl": expected}


@pytest.mark.fault("llm")
def test_overloaded_529_then_success_is_retried_honouring_a_tiny_retry_after(make_api_backend):
    backend, api = make_api_backend(api_error(529, "overloaded_error", retry_after_ms="1"), ok())
    t0 = time.monotonic()
    response = backend.complete(make_request())
    elapsed = time.monotonic() - t0

    assert response.text == "## Iter 1: converged"
    assert len(api.requests) == 2
    assert elapsed < 0.35  # the SDK's own first backoff is >= 0.375 s: retry-after (1 ms) was used


@pytest.mark.parametrize("status", [400, 401, 403, 404])
@pytest.mark.fault("llm")
def test_client_errors_are_never_retried(make_api_backend, status):
    backend, api = make_api_backend(api_error(status, "invalid_request_error", "bad"), ok(), outage_deadline_s=5.0)
    with pytest.raises(LLMCallFailed, match=f"HTTP {status}"):
        backend.complete(make_request())
    assert len(api.requests) == 1


@pytest.mark.fault("llm")
def test_rate_limit_429_sequence_is_retried_until_success(make_api_backend):
    backend, api = make_api_backend(*[api_error(429, "rate_limit_error")] * 3, ok())
    response = backend.complete(make_request())
    assert response.stop_reason == "end_turn"
    assert len(api.requests) == 4


@pytest.mark.fault("llm")
def test_timeout_and_connection_reset_sequence_is_retried(make_api_backend, monkeypatch):
    backend, api = make_api_backend(
        httpx2.ReadTimeout("read timed out"), httpx2.ConnectError("connection reset by peer"), ok()
    )
    monkeypatch.setattr(backend.client, "_calculate_retry_timeout", lambda *args, **kwargs: 0.001)
    response = backend.complete(make_request())
    assert response.text
    assert len(api.requests) == 3


@pytest.mark.fault("llm")
def test_outage_layer_keeps_retrying_after_the_sdk_gives_up(make_api_backend):
    backend, api = make_api_backend(
        *[api_error(529, "overloaded_error")] * 5, ok(), max_retries=1, outage_deadline_s=5.0
    )
    response = backend.complete(make_request())
    assert response.text
    assert len(api.requests) == 6  # 3 SDK rounds of 2 attempts each


@pytest.mark.fault("llm")
def test_outage_past_the_deadline_fails_with_one_line(make_api_backend):
    backend, api = make_api_backend(
        api_error(503, "api_error", "unavailable"), max_retries=0, outage_deadline_s=0.3, outage_backoff_s=(0.05, 0.05)
    )
    t0 = time.monotonic()
    with pytest.raises(LLMCallFailed, match="still failing after") as info:
        backend.complete(make_request())
    assert time.monotonic() - t0 < 2.0
    assert len(api.requests) >= 3
    assert "\n" not in str(info.value)


def test_usage_cost_and_request_id_are_recorded(make_api_backend):
    body = message_json(model="claude-cheap", input_tokens=1000, output_tokens=200, cache_read=4000, cache_write=800)
    backend, _ = make_api_backend(ok(body, request_id="req_abc"), model="claude-cheap")
    response = backend.complete(make_request(model="claude-cheap"))

    assert response.usage.input_tokens == 1000
    assert response.usage.output_tokens == 200
    assert response.usage.cache_read_input_tokens == 4000
    assert response.usage.cache_creation_input_tokens == 800
    assert response.cost_usd == pytest.approx((1000 * 1.0 + 200 * 5.0 + 4000 * 0.1 + 800 * 1.25) / 1e6)
    assert response.request_id == "req_abc"
    assert response.raw["id"] == "msg_01TEST"
    assert response.backend == "anthropic"


@pytest.mark.parametrize(("stop_reason", "says"), [("max_tokens", "cut at max_tokens"), ("refusal", "refused")])
@pytest.mark.fault("llm")
def test_max_tokens_and_refusal_stop_reasons_fail_with_usage_kept(make_api_backend, stop_reason, says):
    backend, _ = make_api_backend(ok(message_json(stop_reason=stop_reason)))
    with pytest.raises(LLMCallFailed, match=says) as info:
        backend.complete(make_request())
    assert info.value.response is not None
    assert info.value.response.usage.output_tokens == 300


@pytest.mark.fault("llm")
def test_empty_reply_fails(make_api_backend):
    backend, _ = make_api_backend(ok(message_json(text="  \n")))
    with pytest.raises(LLMCallFailed, match="empty reply"):
        backend.complete(make_request())


def test_missing_api_key_is_a_config_error_at_construction(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY is not set"):
        AnthropicBackend(model="claude-test", max_tokens=1000)


@pytest.mark.fault("secrets")
def test_api_key_never_appears_in_errors_transcripts_or_logs(make_api_backend, tmp_path, caplog):
    echo = api_error(401, "authentication_error", f"invalid x-api-key {API_KEY}", retry_after_ms=None)
    backend, api = make_api_backend(ok(), echo)
    recording = RecordingBackend(backend, TranscriptStore(tmp_path / "transcripts"))
    caplog.set_level(logging.DEBUG)

    recording.complete(make_request("batch-001"))
    with pytest.raises(LLMCallFailed) as info:
        recording.complete(make_request("batch-002"))

    assert API_KEY in api.requests[0].headers.get("authorization", "") + api.requests[0].headers.get("x-api-key", "")
    assert API_KEY not in str(info.value)
    assert "[REDACTED]" in str(info.value)
    assert API_KEY not in caplog.text
    for path in (tmp_path / "transcripts").rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text()


def test_budget_stops_the_call_before_any_http_request(make_api_backend):
    backend, api = make_api_backend(ok())
    budget = Budget(max_usd=0.01)
    guarded = BudgetedBackend(backend, budget)
    guarded.complete(make_request("batch-001"))  # 1200*15 + 300*75 per Mtok = $0.0405 > $0.01
    assert budget.spent_usd == pytest.approx(0.0405)

    with pytest.raises(BudgetExceeded, match="batch-002 not sent"):
        guarded.complete(make_request("batch-002"))
    assert len(api.requests) == 1


def test_outage_layer_waits_as_long_as_retry_after_says_not_its_own_backoff(make_api_backend):
    backend, api = make_api_backend(
        api_error(529, "overloaded_error", retry_after_ms="1"),
        ok(),
        max_retries=0,
        outage_deadline_s=10.0,
        outage_backoff_s=(2.0, 2.0),
    )
    t0 = time.monotonic()
    backend.complete(make_request())
    assert time.monotonic() - t0 < 1.0
    assert len(api.requests) == 2


@pytest.mark.fault("secrets")
def test_api_key_is_scrubbed_from_outage_retry_log_lines(make_api_backend, caplog):
    echo = api_error(529, "overloaded_error", f"overloaded for key {API_KEY}", retry_after_ms="1")
    backend, _ = make_api_backend(echo, ok(), max_retries=0, outage_deadline_s=5.0)
    caplog.set_level(logging.DEBUG)
    backend.complete(make_request())
    assert "retrying in" in caplog.text
    assert API_KEY not in caplog.text
