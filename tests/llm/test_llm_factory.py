"""make_backend and the offline backend: composition of budget, recording, replay."""

from __future__ import annotations

import pytest

from agent.llm.base import BudgetExceeded, LLMCallFailed, LLMConfigError
from agent.llm.factory import make_backend
from agent.llm.offline import OfflineBackend
from agent.llm.transcripts import TranscriptStore
from experiment.config import ClaudeConfig
from helpers.llm import API_KEY, ScriptedAPI, make_request, ok


def policy(request):
    return f"offline reply to {request.call_id} ({request.context.get('batch', '-')})"


def test_offline_backend_returns_the_policy_text_with_zero_usage():
    request = make_request("batch-003")
    request.context["batch"] = 3
    response = OfflineBackend(policy).complete(request)
    assert response.text == "offline reply to batch-003 (3)"
    assert response.usage.total_tokens == 0
    assert response.cost_usd == 0.0
    assert response.backend == "offline"


@pytest.mark.fault("llm")
def test_offline_policy_returning_nothing_is_a_failed_call():
    with pytest.raises(LLMCallFailed, match="empty reply"):
        OfflineBackend(lambda request: "").complete(make_request())


def test_make_backend_offline_records_every_call(tmp_path):
    backend = make_backend("offline", ClaudeConfig(), transcripts_dir=tmp_path / "t", offline_policy=policy)
    backend.complete(make_request("start", purpose="start"))
    backend.complete(make_request("batch-001"))
    assert [r.call_id for r in TranscriptStore(tmp_path / "t").records()] == ["start", "batch-001"]


def test_make_backend_offline_without_a_policy_is_a_config_error(tmp_path):
    with pytest.raises(LLMConfigError, match="no offline policy"):
        make_backend("offline", ClaudeConfig(), transcripts_dir=tmp_path / "t")


def test_make_backend_anthropic_without_a_key_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY is not set"):
        make_backend("anthropic", ClaudeConfig(), transcripts_dir=tmp_path / "t")


def test_make_backend_unknown_name_is_a_config_error(tmp_path):
    with pytest.raises(LLMConfigError, match="unknown backend 'gpt'"):
        make_backend("gpt", ClaudeConfig(), transcripts_dir=tmp_path / "t")


def test_make_backend_anthropic_uses_settings_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    api = ScriptedAPI(ok())
    settings = ClaudeConfig(model="claude-test", prompt_cache="1h")
    backend = make_backend("anthropic", settings, transcripts_dir=tmp_path / "t", http_client=api.client())
    response = backend.complete(make_request("start", purpose="start"))
    assert response.cost_usd == pytest.approx((1200 * 15 + 300 * 75) / 1e6)
    assert api.body()["system"][0]["cache_control"]["ttl"] == "1h"
    assert TranscriptStore(tmp_path / "t").find("start").response.request_id == "req_ok_1"


def test_resumed_run_keeps_counting_the_budget_from_its_transcripts(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    settings = ClaudeConfig(model="claude-test", budget_usd=0.05)
    first = make_backend("anthropic", settings, transcripts_dir=tmp_path / "t", http_client=ScriptedAPI(ok()).client())
    first.complete(make_request("start", purpose="start"))  # $0.0405
    first.complete(make_request("batch-001"))  # $0.081 in total

    api = ScriptedAPI(ok())
    resumed = make_backend("anthropic", settings, transcripts_dir=tmp_path / "t", http_client=api.client())
    assert resumed.complete(make_request("batch-001")).backend == "reused:anthropic"
    with pytest.raises(BudgetExceeded, match="batch-002 not sent"):
        resumed.complete(make_request("batch-002"))
    assert api.requests == []


def test_make_backend_replay_serves_another_runs_transcripts_and_records_them(tmp_path):
    old = make_backend("offline", ClaudeConfig(), transcripts_dir=tmp_path / "old", offline_policy=policy)
    old.complete(make_request("start", purpose="start"))
    replay = make_backend("replay", ClaudeConfig(), transcripts_dir=tmp_path / "new", replay_dir=tmp_path / "old")
    assert replay.complete(make_request("start", purpose="start")).text == "offline reply to start (-)"
    assert [r.backend for r in TranscriptStore(tmp_path / "new").records()] == ["replay:offline"]


def test_make_backend_replay_of_a_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(LLMConfigError, match="does not exist"):
        make_backend("replay", ClaudeConfig(), transcripts_dir=tmp_path / "t", replay_dir=tmp_path / "none")
