"""Fixtures for the LLM tests (helpers live in helpers/llm.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.llm.anthropic_backend import AnthropicBackend
from helpers.llm import API_KEY, PRICES, ScriptedAPI, write_png
from helpers.llm_harness import BACKENDS, LLMHarness, make_harness


@pytest.fixture
def make_api_backend(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[AnthropicBackend, ScriptedAPI]]:
    """Build an AnthropicBackend on a scripted wire; outage waits are tiny so tests stay fast."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)

    def build(*script: Any, **kwargs: Any) -> tuple[AnthropicBackend, ScriptedAPI]:
        api = ScriptedAPI(*script)
        options: dict[str, Any] = {
            "model": "claude-test",
            "max_tokens": 4000,
            "max_retries": 5,
            "timeout_s": 30.0,
            "outage_deadline_s": 0.0,
            "price_table": PRICES,
            "outage_backoff_s": (0.001, 0.01),
        }
        options.update(kwargs)
        backend = AnthropicBackend(http_client=api.client(), **options)
        return backend, api

    return build


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LLMHarness:
    """Each LLM backend behind the contract harness (helpers/llm_harness.py): a fresh one per test."""
    return make_harness(request.param, tmp_path, monkeypatch)


@pytest.fixture
def png(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "slot.png", width: int = 32, height: int = 24, seed: int = 0) -> Path:
        return write_png(tmp_path / name, width, height, seed)

    return make
