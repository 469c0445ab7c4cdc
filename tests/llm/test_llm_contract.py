"""The LLM-backend contract (agent/llm/base.py): what every backend promises the exploration loop.

``backend`` runs each test once per backend (anthropic through the real SDK on a scripted HTTP transport,
claude-cli through a fake ``claude``, offline, optuna, replay); see helpers/llm_harness.py. A behaviour that
cannot happen to a backend is skipped with the reason.
"""

from __future__ import annotations

import pytest

from agent.llm.base import BudgetExceeded, LLMCallFailed, LLMConfigError, LLMError, LLMResponse, Usage
from agent.llm.budget import Budget, BudgetedBackend
from agent.llm.factory import preflight
from agent.llm.transcripts import RecordingBackend, TranscriptStore
from helpers.llm import API_KEY
from helpers.llm_harness import LLMHarness, contract_request

OK_STOP_REASONS = ("end_turn", "stop_sequence")


def broken(harness: LLMHarness) -> LLMHarness:
    """The harness with its provider failing."""
    harness.break_provider()
    return harness


def named_by(response: LLMResponse, harness: LLMHarness) -> bool:
    """The response names the backend that answered (replay adds the recorded backend: ``replay:offline``)."""
    return response.backend == harness.name or response.backend.startswith(f"{harness.name}:")


def test_a_reply_has_text_the_model_asked_for_and_names_its_backend(backend: LLMHarness) -> None:
    request = contract_request()
    made = backend.make()
    response = made.complete(request)
    assert isinstance(response, LLMResponse)
    assert response.text.strip()
    assert response.model == request.model
    assert response.stop_reason in OK_STOP_REASONS
    assert made.name == backend.name
    assert named_by(response, backend), response.backend
    assert backend.calls() == 1


def test_usage_and_cost_are_filled_for_a_paid_call_and_zero_for_a_free_one(backend: LLMHarness) -> None:
    response = backend.make().complete(contract_request())
    if backend.pays:
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        assert response.cost_usd > 0
    else:
        assert response.usage == Usage()
        assert response.cost_usd == 0.0
    assert response.elapsed_s >= 0


def test_the_run_wrappers_keep_the_backend_name(backend: LLMHarness, tmp_path) -> None:
    wrapped = RecordingBackend(BudgetedBackend(backend.make(), Budget()), TranscriptStore(tmp_path / "transcripts"))
    assert wrapped.name == backend.name


def test_a_call_is_recorded_in_the_transcripts_as_answered(backend: LLMHarness, tmp_path) -> None:
    store = TranscriptStore(tmp_path / "transcripts")
    response = RecordingBackend(backend.make(), store).complete(contract_request("batch-001"))
    (record,) = store.records()
    assert record.ok and record.call_id == "batch-001"
    assert record.backend == response.backend
    assert record.response is not None and record.response.text == response.text
    assert record.usage == response.usage
    assert record.cost_usd == pytest.approx(response.cost_usd)


def test_a_call_is_counted_by_the_budget(backend: LLMHarness) -> None:
    budget = Budget()
    response = BudgetedBackend(backend.make(), budget).complete(contract_request())
    assert budget.state.n_calls == 1
    assert budget.spent_usd == pytest.approx(response.cost_usd)
    assert budget.spent_tokens == response.usage.total_tokens


def test_a_spent_budget_stops_the_call_before_the_backend_is_asked(backend: LLMHarness) -> None:
    with pytest.raises(BudgetExceeded, match="batch-001 not sent"):
        BudgetedBackend(backend.make(), Budget(max_usd=0.0)).complete(contract_request("batch-001"))
    assert backend.calls() == 0


@pytest.mark.fault("llm")
def test_a_provider_error_is_an_llm_call_failed_with_one_line_naming_the_call(backend: LLMHarness) -> None:
    made = broken(backend).make()
    with pytest.raises(LLMError) as info:
        made.complete(contract_request("batch-002"))
    assert isinstance(info.value, LLMCallFailed), type(info.value).__name__
    message = str(info.value)
    assert message.strip() and "\n" not in message
    assert "batch-002" in message


@pytest.mark.fault("llm")
def test_a_failed_call_is_recorded_in_the_transcripts_as_failed(backend: LLMHarness, tmp_path) -> None:
    store = TranscriptStore(tmp_path / "transcripts")
    made = broken(backend).make()
    with pytest.raises(LLMCallFailed) as info:
        RecordingBackend(made, store).complete(contract_request("batch-002"))
    (record,) = store.records()
    assert not record.ok and record.call_id == "batch-002"
    assert record.error == str(info.value)


@pytest.mark.fault("secrets")
def test_an_error_never_shows_the_api_key_the_provider_echoed(backend: LLMHarness, tmp_path) -> None:
    if backend.name not in ("anthropic", "claude-cli"):
        pytest.skip(f"{backend.name}: talks to no provider, so no provider text can carry the key")
    store = TranscriptStore(tmp_path / "transcripts")
    made = broken(backend).make()
    with pytest.raises(LLMCallFailed) as info:
        RecordingBackend(made, store).complete(contract_request())
    assert API_KEY not in str(info.value)
    assert "[REDACTED]" in str(info.value)
    assert all(API_KEY not in path.read_text() for path in store.folder.rglob("*.json"))


def test_preflight_passes_a_working_backend_without_using_the_runs_transcripts(backend: LLMHarness, tmp_path) -> None:
    store = TranscriptStore(tmp_path / "transcripts")
    wrapped = RecordingBackend(BudgetedBackend(backend.make(), Budget()), store)
    assert preflight(wrapped) == []
    assert store.records() == []
    assert wrapped.complete(contract_request("batch-001")).text.strip()


def test_preflight_of_a_backend_that_cannot_answer_is_a_one_line_config_error(backend: LLMHarness) -> None:
    assert backend.has_preflight == hasattr(backend.make(), "preflight")  # the harness's flag is the backend's truth
    if not backend.has_preflight:
        pytest.skip(f"{backend.name}: needs nothing outside the process, so it has no preflight")
    made = broken(backend).make()
    with pytest.raises(LLMConfigError) as info:
        preflight(made)
    assert "\n" not in str(info.value) and API_KEY not in str(info.value)


# ------------------------------------------------------------------ in-process policies keep the contract too


def test_an_offline_policy_that_raises_fails_the_call_in_one_line() -> None:
    from agent.llm.offline import OfflineBackend

    def policy(request):  # a policy bug: reads a key the request lacks
        return request.context["missing"]

    with pytest.raises(LLMCallFailed) as err:
        OfflineBackend(policy).complete(contract_request())
    assert str(err.value) == "offline batch-001: the policy failed: KeyError: 'missing'"


def test_the_optuna_policy_given_no_reply_context_fails_the_call_in_one_line(tmp_path) -> None:
    from agent.llm.optuna_backend import OptunaBackend

    request = contract_request().model_copy(update={"context": {}})
    with pytest.raises(LLMCallFailed) as err:
        OptunaBackend(tmp_path / "run", seed=0).complete(request)
    assert str(err.value).startswith("optuna batch-001: the policy failed: ") and "\n" not in str(err.value)
