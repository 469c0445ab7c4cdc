"""Run budget in USD and tokens, checked before every call, restorable from the transcripts.

A resumed run sums the costs of the calls it already recorded, so a budget spans the whole run,
not one process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from agent.llm.base import BudgetExceeded, LLMBackend, LLMCallFailed, LLMConfigError, LLMRequest, LLMResponse, Usage

if TYPE_CHECKING:
    from agent.llm.transcripts import TranscriptStore

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
PriceTable = Mapping[str, Mapping[str, float]]


def price_for(model: str, table: PriceTable) -> Mapping[str, float]:
    """Prices of ``model``: exact name, else the longest table key it starts with, else ``default``."""
    if model in table:
        return table[model]
    prefixes = [key for key in table if key != "default" and model.startswith(key)]
    if prefixes:
        return table[max(prefixes, key=len)]
    if "default" in table:
        return table["default"]
    raise LLMConfigError(f"price_per_mtok: no entry for model {model!r} and no 'default' entry")


def validate_price_table(table: PriceTable) -> None:
    """Every entry names the four prices as finite non-negative USD per million tokens."""
    for model, prices in table.items():
        missing = [field for field in PRICE_FIELDS if field not in prices]
        unknown = [field for field in prices if field not in PRICE_FIELDS]
        if missing or unknown:
            raise LLMConfigError(
                f"price_per_mtok.{model}: must have exactly {', '.join(PRICE_FIELDS)} "
                f"(missing {missing or 'none'}, unknown {unknown or 'none'})"
            )
        for field, value in prices.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise LLMConfigError(f"price_per_mtok.{model}.{field}: must be a finite number >= 0, got {value!r}")


def cost_usd(model: str, usage: Usage, table: PriceTable) -> float:
    """USD cost of ``usage`` on ``model`` from a table of USD per million tokens."""
    prices = price_for(model, table)
    total = (
        usage.input_tokens * prices["input"]
        + usage.output_tokens * prices["output"]
        + usage.cache_read_input_tokens * prices["cache_read"]
        + usage.cache_creation_input_tokens * prices["cache_write"]
    )
    return total / 1_000_000


class BudgetState(BaseModel):
    """What has been spent so far and the limits (``None`` = unlimited)."""

    model_config = ConfigDict(extra="forbid")

    max_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    spent_usd: float = Field(0.0, ge=0)
    spent_tokens: int = Field(0, ge=0)
    n_calls: int = Field(0, ge=0)


class Budget:
    """Counts spend and refuses the next call once a limit is reached."""

    def __init__(self, max_usd: float | None = None, max_tokens: int | None = None) -> None:
        self.state = BudgetState(max_usd=max_usd, max_tokens=max_tokens)

    @property
    def spent_usd(self) -> float:
        return self.state.spent_usd

    @property
    def spent_tokens(self) -> int:
        return self.state.spent_tokens

    def check_before_call(self, call_id: str = "next call") -> None:
        """Raise ``BudgetExceeded`` if a limit is already reached."""
        s = self.state
        if s.max_usd is not None and s.spent_usd >= s.max_usd:
            raise BudgetExceeded(
                f"budget: ${s.spent_usd:.4f} spent of budget_usd ${s.max_usd:.4f} over {s.n_calls} calls; "
                f"{call_id} not sent (raise claude.budget_usd to continue)"
            )
        if s.max_tokens is not None and s.spent_tokens >= s.max_tokens:
            raise BudgetExceeded(
                f"budget: {s.spent_tokens} tokens spent of budget_tokens {s.max_tokens} over {s.n_calls} calls; "
                f"{call_id} not sent (raise claude.budget_tokens to continue)"
            )

    def add(self, usage: Usage, cost: float) -> None:
        """Count one finished (or failed but billed) call."""
        self.state = self.state.model_copy(
            update={
                "spent_usd": self.state.spent_usd + max(cost, 0.0),
                "spent_tokens": self.state.spent_tokens + usage.total_tokens,
                "n_calls": self.state.n_calls + 1,
            }
        )

    def restore(self, store: TranscriptStore) -> None:
        """Start from what the recorded transcripts already spent (resume keeps counting)."""
        records = store.records()
        self.state = self.state.model_copy(
            update={
                "spent_usd": sum(r.cost_usd for r in records),
                "spent_tokens": sum(r.usage.total_tokens for r in records),
                "n_calls": len(records),
            }
        )


class BudgetedBackend(LLMBackend):
    """Checks the budget before each call of ``inner`` and counts what it cost, failed calls included."""

    def __init__(self, inner: LLMBackend, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget
        self.name = inner.name

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.budget.check_before_call(request.call_id)
        try:
            response = self.inner.complete(request)
        except LLMCallFailed as err:
            if err.response is not None:
                self.budget.add(err.response.usage, err.response.cost_usd)
            raise
        self.budget.add(response.usage, response.cost_usd)
        return response
