"""Budget: price table, limits checked before each call, state restored from transcripts."""

from __future__ import annotations

import pytest

from agent.llm.base import BudgetExceeded, LLMBackend, LLMCallFailed, LLMConfigError, LLMRequest, LLMResponse, Usage
from agent.llm.budget import Budget, BudgetedBackend, cost_usd, price_for, validate_price_table
from agent.llm.transcripts import RecordingBackend, TranscriptStore
from helpers.llm import PRICES, make_request


class FixedBackend(LLMBackend):
    name = "fixed"

    def __init__(self, usage: Usage, cost: float, fail: bool = False) -> None:
        self.usage, self.cost, self.fail, self.calls = usage, cost, fail, 0

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        response = LLMResponse(
            text="ok", stop_reason="end_turn", model=request.model, request_id=None,
            usage=self.usage, cost_usd=self.cost, backend=self.name,
        )  # fmt: skip
        if self.fail:
            raise LLMCallFailed("fixed: refused", response=response)
        return response


def test_cost_is_usd_per_million_tokens_over_all_four_counts():
    usage = Usage(input_tokens=2_000_000, output_tokens=100_000, cache_read_input_tokens=1_000_000,
                  cache_creation_input_tokens=400_000)  # fmt: skip
    assert cost_usd("claude-cheap", usage, PRICES) == pytest.approx(2.0 + 0.5 + 0.1 + 0.5)


def test_price_lookup_uses_exact_then_longest_prefix_then_default():
    table = {**PRICES, "claude-cheap-4": {"input": 2.0, "output": 0, "cache_read": 0, "cache_write": 0}}
    assert price_for("claude-cheap", table)["input"] == 1.0
    assert price_for("claude-cheap-4-20250101", table)["input"] == 2.0
    assert price_for("claude-unknown", table)["input"] == 15.0


def test_price_table_without_default_rejects_unknown_model():
    with pytest.raises(LLMConfigError, match="no entry for model 'x'"):
        price_for("x", {"claude-cheap": PRICES["claude-cheap"]})


def test_price_table_entry_missing_a_price_is_rejected():
    with pytest.raises(LLMConfigError, match=r"price_per_mtok\.m: .*missing \['cache_write'\]"):
        validate_price_table({"m": {"input": 1.0, "output": 1.0, "cache_read": 1.0}})


def test_token_budget_refuses_the_next_call_once_spent():
    budget = Budget(max_tokens=1000)
    guarded = BudgetedBackend(FixedBackend(Usage(input_tokens=900, output_tokens=150), 0.0), budget)
    guarded.complete(make_request("batch-001"))
    with pytest.raises(BudgetExceeded, match="1050 tokens spent of budget_tokens 1000"):
        guarded.complete(make_request("batch-002"))
    assert guarded.inner.calls == 1


def test_unlimited_budget_never_refuses():
    guarded = BudgetedBackend(FixedBackend(Usage(input_tokens=10**9), 10**6), Budget())
    for i in range(3):
        guarded.complete(make_request(f"batch-{i:03d}"))
    assert guarded.budget.state.n_calls == 3


def test_a_failed_but_billed_call_counts_against_the_budget():
    budget = Budget(max_usd=1.0)
    guarded = BudgetedBackend(FixedBackend(Usage(output_tokens=10), 1.5, fail=True), budget)
    with pytest.raises(LLMCallFailed):
        guarded.complete(make_request("batch-001"))
    assert budget.spent_usd == 1.5
    with pytest.raises(BudgetExceeded):
        guarded.complete(make_request("batch-001-reask-1", purpose="reask"))


def test_budget_is_restored_from_recorded_transcripts(tmp_path):
    store = TranscriptStore(tmp_path / "t")
    recording = RecordingBackend(FixedBackend(Usage(input_tokens=100, output_tokens=20), 0.25), store)
    for call_id in ("start", "batch-001", "batch-002"):
        recording.complete(make_request(call_id, prompt=call_id))

    budget = Budget(max_usd=0.75)
    budget.restore(store)
    assert budget.spent_usd == pytest.approx(0.75)
    assert budget.spent_tokens == 360
    with pytest.raises(BudgetExceeded, match=r"\$0\.7500 spent of budget_usd \$0\.7500 over 3 calls"):
        budget.check_before_call("batch-003")
