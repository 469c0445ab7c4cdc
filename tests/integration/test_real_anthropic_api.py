"""The anthropic backend over real TCP (SDK 2.x, httpx2) against the fake Messages and Models API on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from PIL import Image

from agent.llm.anthropic_backend import AnthropicBackend
from agent.llm.base import BudgetExceeded, ImageInput, LLMCallFailed, LLMConfigError, LLMRequest
from agent.llm.factory import make_backend, preflight
from experiment.config import ClaudeConfig
from helpers.fake_anthropic import FakeAnthropic, Step

pytestmark = pytest.mark.real

PRICES = {"default": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75}}


def request(call_id: str = "batch-001", images: list[ImageInput] | None = None) -> LLMRequest:
    return LLMRequest(
        call_id=call_id,
        purpose="batch",
        system="You are the exploration agent.",
        prompt="Analyse batch 1.",
        images=images or [],
        model="claude-opus-5-5",
        max_tokens=4000,
    )


def api_backend(fake_api: FakeAnthropic, **kwargs: object) -> AnthropicBackend:
    options: dict[str, object] = {
        "model": "claude-opus-5-5",
        "max_tokens": 4000,
        "max_retries": 3,
        "timeout_s": 30.0,
        "outage_deadline_s": 0.0,
        "price_table": PRICES,
        "base_url": fake_api.url,
    }
    options.update(kwargs)
    return AnthropicBackend(**options)  # type: ignore[arg-type]


def test_images_go_over_tcp_as_base64_png_blocks_before_the_text(fake_api, tmp_path: Path) -> None:
    path = tmp_path / "activity.png"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(path, format="PNG")
    api_backend(fake_api).complete(request(images=[ImageInput(path=path, label="slot 0 activity")]))
    (sent,) = fake_api.messages()
    content = sent.body["messages"][0]["content"]
    assert [block["type"] for block in content] == ["text", "image", "text"]
    assert base64.b64decode(content[1]["source"]["data"]) == path.read_bytes()
    key = sent.headers.get("x-api-key") or sent.headers.get("authorization", "").removeprefix("Bearer ")
    assert key == "fake-integration-key-0123456789"


def test_overloaded_529_is_retried_by_the_sdk_until_it_succeeds(fake_api) -> None:
    fake_api.push(Step(status=529, message="Overloaded"), Step(status=529, message="Overloaded"), Step(text="done"))
    response = api_backend(fake_api).complete(request())
    assert response.text == "done"
    assert len(fake_api.messages()) == 3


def test_a_rejected_key_is_not_retried(fake_api) -> None:
    fake_api.api_keys = {"the-only-good-key"}
    with pytest.raises(LLMCallFailed, match="HTTP 401 authentication_error"):
        api_backend(fake_api).complete(request())
    assert len(fake_api.messages()) == 1


def test_slow_answer_past_the_timeout_fails_in_one_line(fake_api) -> None:
    fake_api.push(Step(text="too late", delay_s=5))
    with pytest.raises(LLMCallFailed, match="request timed out after 1s") as err:
        api_backend(fake_api, timeout_s=1.0, max_retries=0).complete(request())
    assert "\n" not in str(err.value)


def test_usage_and_cost_are_recorded_and_the_budget_stops_the_next_call(fake_api, tmp_path: Path) -> None:
    settings = ClaudeConfig(model="claude-opus-5-5", budget_usd=0.05, price_per_mtok=PRICES, max_retries=1)
    fake_api.push(Step(text="first", input_tokens=2000, output_tokens=400))
    llm = make_backend("anthropic", settings, transcripts_dir=tmp_path / "transcripts")
    response = llm.complete(request("batch-001"))
    expected = (2000 * 15.0 + 400 * 75.0) / 1e6  # $0.06: over the $0.05 budget
    assert response.usage.input_tokens == 2000 and response.usage.output_tokens == 400
    assert response.cost_usd == pytest.approx(expected)
    (transcript,) = (tmp_path / "transcripts").glob("*.json")
    record = json.loads(transcript.read_text())
    assert record["usage"]["input_tokens"] == 2000 and record["cost_usd"] == pytest.approx(expected)
    assert record["response"]["request_id"].startswith("req_fake_")
    with pytest.raises(BudgetExceeded, match="batch-002 not sent"):
        llm.complete(request("batch-002"))
    assert len(fake_api.messages()) == 1


def test_preflight_accepts_a_current_model(fake_api) -> None:
    assert api_backend(fake_api).preflight() == []
    assert [r.path for r in fake_api.log] == ["/v1/models/claude-opus-5-5"]


def test_preflight_stops_on_a_retired_model_naming_a_current_one(fake_api, tmp_path: Path) -> None:
    settings = ClaudeConfig(model="claude-opus-4-1", price_per_mtok=PRICES)
    llm = make_backend("anthropic", settings, transcripts_dir=tmp_path / "transcripts")
    with pytest.raises(LLMConfigError, match=r"'claude-opus-4-1' was retired on 2026-01-05; .*claude-opus-5-5$"):
        preflight(llm)
    assert fake_api.messages() == []  # nothing was paid for


def test_preflight_warns_on_a_deprecated_model(fake_api) -> None:
    (warning,) = api_backend(fake_api, model="claude-sonnet-4-5").preflight()
    assert "deprecated and retires on 2026-11-30" in warning and "claude-sonnet-5-5" in warning


def test_preflight_stops_on_an_unknown_model_and_on_a_rejected_key(fake_api) -> None:
    with pytest.raises(LLMConfigError, match="'claude-nonesuch' is not a model the API knows"):
        api_backend(fake_api, model="claude-nonesuch").preflight()
    fake_api.api_keys = {"the-only-good-key"}
    with pytest.raises(LLMConfigError, match=r"the API rejected ANTHROPIC_API_KEY \(HTTP 401"):
        api_backend(fake_api).preflight()
