"""LLM backends (Anthropic API, claude CLI, offline policy, replay), transcripts and the run budget."""

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
