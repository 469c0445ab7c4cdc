"""LLM backends (API, claude CLI, replay, and the offline and Optuna policies standing in for a model), transcripts, budget."""

from agent.llm.base import (
    BudgetExceeded,
    ImageInput,
    LLMBackend,
    LLMCallFailed,
    LLMConfigError,
    LLMError,
    LLMRequest,
    LLMResponse,
    Usage,
)

__all__ = [
    "BudgetExceeded",
    "ImageInput",
    "LLMBackend",
    "LLMCallFailed",
    "LLMConfigError",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "Usage",
]
