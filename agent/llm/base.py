"""The LLM boundary: request/response models, the error family and the backend interface.

The exploration loop talks to every model provider (Anthropic API, the ``claude`` CLI, replayed
transcripts, the offline policy) through ``LLMBackend.complete``; nothing else of a provider leaks out.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CALL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REDACTED = "[REDACTED]"


class ImageInput(BaseModel):
    """A PNG on disk shown to the model, with the label the prompt refers to it by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    label: str


class LLMRequest(BaseModel):
    """One exchange the loop asks for. ``context`` feeds the offline policy only: never sent, never hashed."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    purpose: Literal["start", "batch", "reask"]
    system: str
    prompt: str
    images: list[ImageInput] = Field(default_factory=list)
    model: str
    max_tokens: int = Field(ge=1)
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("call_id")
    @classmethod
    def _call_id_is_a_file_name(cls, value: str) -> str:
        if not CALL_ID_PATTERN.match(value):
            raise ValueError(f"call_id {value!r} must match {CALL_ID_PATTERN.pattern} (it names a transcript file)")
        return value


class Usage(BaseModel):
    """Token counts of one call, as the provider bills them."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cache_read_input_tokens: int = Field(0, ge=0)
    cache_creation_input_tokens: int = Field(0, ge=0)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
        )


class LLMResponse(BaseModel):
    """What the loop gets back. ``raw`` is the provider's own response (JSON-able) for the transcript."""

    model_config = ConfigDict(extra="forbid")

    text: str
    stop_reason: str | None
    model: str
    request_id: str | None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = Field(0.0, ge=0)
    elapsed_s: float = Field(0.0, ge=0)
    backend: str
    raw: Any = None


class LLMError(RuntimeError):
    """Any LLM failure; the message is one line and never carries a secret."""


class LLMConfigError(LLMError):
    """The backend cannot work at all (no API key, no executable, bad settings): raised before any compute."""


class LLMCallFailed(LLMError):
    """One call produced no usable reply. ``response`` holds what came back, if anything (its tokens were paid)."""

    def __init__(self, message: str, *, response: LLMResponse | None = None, raw: Any = None) -> None:
        super().__init__(message)
        self.response = response
        self.raw = raw if raw is not None or response is None else response.raw


class BudgetExceeded(LLMError):
    """The run's USD or token budget is spent; raised before a call, so nothing more is paid."""


class LLMBackend(ABC):
    """A model provider behind one method."""

    name: str = "abstract"

    @abstractmethod
    def complete(self, request: LLMRequest) -> LLMResponse:
        """Send ``request``; return a usable reply or raise an ``LLMError``."""


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace so an error message stays on one line, and cap its length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def scrub(text: str, *secrets: str | None) -> str:
    """Replace every non-trivial secret in ``text`` with a marker."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text
