"""Helpers for the LLM tests: a scripted Anthropic wire (httpx2.MockTransport), PNGs, requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
from PIL import Image

from agent.llm.base import ImageInput, LLMRequest

API_KEY = "fake-test-key-SECRET-0123456789abcdef"  # not a real key format, so secret scanners stay quiet
PRICES = {
    "default": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
    "claude-cheap": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
}


def message_json(
    text: str = "## Iter 1: converged",
    *,
    stop_reason: str = "end_turn",
    model: str = "claude-test",
    input_tokens: int = 1200,
    output_tokens: int = 300,
    cache_read: int = 0,
    cache_write: int = 0,
) -> dict[str, Any]:
    """A Messages API success body."""
    content = [{"type": "text", "text": text}] if text is not None else []
    return {
        "id": "msg_01TEST",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    }


def ok(body: dict[str, Any] | None = None, request_id: str = "req_ok_1") -> httpx2.Response:
    return httpx2.Response(200, headers={"request-id": request_id}, json=body or message_json())


def api_error(status: int, kind: str, message: str = "try later", retry_after_ms: str | None = "1") -> httpx2.Response:
    headers = {"request-id": f"req_err_{status}"}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    return httpx2.Response(status, headers=headers, json={"type": "error", "error": {"type": kind, "message": message}})


class ScriptedAPI:
    """A fake Anthropic endpoint: answers each HTTP request with the next scripted item.

    Items are ``httpx2.Response`` objects, exceptions (raised, as a broken connection would), or callables
    of the request. The last item repeats once the script runs out.
    """

    def __init__(self, *script: httpx2.Response | Exception | Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.script = list(script)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        if callable(item) and not isinstance(item, httpx2.Response):
            return item(request)
        return item

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))


def write_png(path: Path, width: int = 32, height: int = 24, seed: int = 0) -> Path:
    """A small deterministic RGB PNG."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGB").save(path, format="PNG")
    return path


def make_request(
    call_id: str = "batch-001",
    *,
    prompt: str = "Analyse batch 1.",
    system: str = "You are the exploration agent.",
    images: list[ImageInput] | None = None,
    model: str = "claude-test",
    max_tokens: int = 4000,
    purpose: str = "batch",
) -> LLMRequest:
    return LLMRequest(
        call_id=call_id,
        purpose=purpose,  # type: ignore[arg-type]
        system=system,
        prompt=prompt,
        images=images or [],
        model=model,
        max_tokens=max_tokens,
    )
