"""Offline backend: a deterministic policy function stands in for the model (demo, CI, no network)."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.llm.base import LLMBackend, LLMCallFailed, LLMError, LLMRequest, LLMResponse, Usage, one_line

OfflinePolicy = Callable[[LLMRequest], str]


class OfflineBackend(LLMBackend):
    """Returns ``policy(request)`` as the reply, with zero usage and cost."""

    name = "offline"

    def __init__(self, policy: OfflinePolicy) -> None:
        self.policy = policy

    def complete(self, request: LLMRequest) -> LLMResponse:
        t0 = time.monotonic()
        try:
            text = self.policy(request)
        except LLMError:
            raise
        except Exception as err:  # a policy bug or a request it cannot read: the base class's one error type
            detail = one_line(f"{type(err).__name__}: {err}")
            raise LLMCallFailed(f"{self.name} {request.call_id}: the policy failed: {detail}") from err
        if not isinstance(text, str) or not text.strip():
            raise LLMCallFailed(f"offline {request.call_id}: the offline policy returned an empty reply")
        return LLMResponse(
            text=text,
            stop_reason="end_turn",
            model=request.model,
            request_id=None,
            usage=Usage(),
            cost_usd=0.0,
            elapsed_s=time.monotonic() - t0,
            backend=self.name,
            raw={"policy": getattr(self.policy, "__qualname__", type(self.policy).__name__), "text": text},
        )
