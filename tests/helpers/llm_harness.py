"""The LLM-backend contract harness: every backend in agent/llm behind one object the contract suite drives.

Each harness builds fresh backends (``make``), counts how often the provider behind them was asked (``calls``)
and breaks the provider behind them (``break_provider``): from then on every call and every preflight fails,
and where a remote provider answers, its error text carries the API key, as a careless server's would.
Nothing leaves the machine: the API backend runs the real anthropic SDK on a scripted HTTP transport, the CLI
backend runs a fake ``claude`` on PATH (tests/helpers/fake_claude.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from agent.config_policy import base_trainable
from agent.llm.base import LLMBackend, LLMCallFailed, LLMRequest
from agent.llm.offline import OfflineBackend
from agent.llm.transcripts import RecordingBackend, TranscriptStore
from agent.reply_check import ReplyContext
from experiment.config import load_experiment
from helpers.fake_claude import install_fake_claude
from helpers.llm import API_KEY, PRICES, ScriptedAPI, api_error, make_request, ok

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "flyvis_tiny.yaml"
MODEL = "claude-test"
RECORDED_CALLS = ("start", "batch-001", "batch-002")  # what the replay harness has transcripts of
BACKENDS = ("anthropic", "claude-cli", "offline", "optuna", "replay")


def contract_request(call_id: str = "batch-001") -> LLMRequest:
    """The request every backend gets: the same text for the same call id; the START reply context rides along
    (only the offline-family policies read it; it is never sent nor hashed)."""
    ctx = ReplyContext(
        is_start=True,
        next_iterations=[1, 2, 3, 4],
        next_starts_block=True,
        block=1,
        base_trainable=base_trainable(load_experiment(TINY)),
    )
    request = make_request(call_id, prompt=f"Plan the next batch ({call_id}).", model=MODEL, purpose="start")
    return request.model_copy(update={"context": {"reply_context": ctx.model_dump(mode="json")}})


def offline_reply(request: LLMRequest) -> str:
    return f"## Iter 1: converged\nreply to {request.call_id}"


@dataclass
class LLMHarness:
    """One backend under the contract. ``pays``: its replies carry tokens and cost; ``break_provider``: from then
    on the provider fails (the API, the CLI, or, for the in-process backends, the policy or the recording)."""

    name: str
    pays: bool
    make: Callable[[], LLMBackend]
    calls: Callable[[], int]
    break_provider: Callable[[], None]
    has_preflight: bool = False


def anthropic_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LLMHarness:
    from agent.llm.anthropic_backend import AnthropicBackend

    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    broken = {"yes": False}

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.startswith("/v1/models"):
            if broken["yes"]:
                return api_error(401, "authentication_error", f"invalid x-api-key {API_KEY}", retry_after_ms=None)
            info = {"type": "model", "id": MODEL, "display_name": MODEL, "created_at": "2026-01-01T00:00:00Z"}
            return httpx2.Response(200, json={**info, "lifecycle": "active"})
        if broken["yes"]:
            return api_error(400, "invalid_request_error", f"bad request from key {API_KEY}", retry_after_ms=None)
        return ok()

    api = ScriptedAPI(answer)

    def make() -> LLMBackend:
        return AnthropicBackend(
            model=MODEL,
            max_tokens=4000,
            max_retries=0,
            timeout_s=30.0,
            outage_deadline_s=0.0,
            price_table=PRICES,
            http_client=api.client(),
        )

    return LLMHarness(
        name="anthropic",
        pays=True,
        make=make,
        calls=lambda: sum(r.url.path == "/v1/messages" for r in api.requests),
        break_provider=lambda: broken.update(yes=True),
        has_preflight=True,
    )


def claude_cli_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LLMHarness:
    from agent.llm.claude_cli import ClaudeCliBackend

    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    install_fake_claude(tmp_path / "claude", monkeypatch)
    counter = tmp_path / "claude" / "calls.txt"
    monkeypatch.setenv("FAKE_CLAUDE_CALLS", str(counter))
    return LLMHarness(
        name="claude-cli",
        pays=True,
        make=lambda: ClaudeCliBackend(MODEL, timeout_s=30, home=tmp_path / "claude_home", max_retries=0),
        calls=lambda: len(counter.read_text().splitlines()) if counter.exists() else 0,
        break_provider=lambda: monkeypatch.setenv("FAKE_CLAUDE_MODE", "leak"),
        has_preflight=True,
    )


def offline_harness() -> LLMHarness:
    asked: list[str] = []
    broken = {"yes": False}

    def policy(request: LLMRequest) -> str:
        asked.append(request.call_id)
        return "" if broken["yes"] else offline_reply(request)

    return LLMHarness(
        name="offline",
        pays=False,
        make=lambda: OfflineBackend(policy),
        calls=lambda: len(asked),
        break_provider=lambda: broken.update(yes=True),
    )


def optuna_harness(tmp_path: Path) -> LLMHarness:
    from agent.llm.optuna_backend import OptunaBackend

    asked: list[str] = []
    broken = {"yes": False}

    def make() -> LLMBackend:
        backend = OptunaBackend(tmp_path / "run", seed=0)
        policy = backend.policy

        def counted(request: LLMRequest) -> str:
            asked.append(request.call_id)
            if broken["yes"]:  # the policy cannot read the request: no reply context
                request = request.model_copy(update={"context": {}})
            return policy(request)

        backend.policy = counted
        return backend

    return LLMHarness(
        name="optuna",
        pays=False,
        make=make,
        calls=lambda: len(asked),
        break_provider=lambda: broken.update(yes=True),
    )


def replay_harness(tmp_path: Path) -> LLMHarness:
    """Replays (non-strict: any recorded call, once) transcripts an offline run recorded of RECORDED_CALLS;
    a broken provider means the recorded calls themselves failed."""
    from agent.llm.replay import ReplayBackend

    broken = {"yes": False}
    made: list[ReplayBackend] = []

    def make() -> LLMBackend:
        store = TranscriptStore(tmp_path / f"recorded-{len(made)}")
        recording = RecordingBackend(OfflineBackend(lambda r: "" if broken["yes"] else offline_reply(r)), store)
        for call_id in RECORDED_CALLS:
            try:
                recording.complete(contract_request(call_id))
            except LLMCallFailed:
                assert broken["yes"], f"recording {call_id} failed"
        replay = ReplayBackend(store, strict=False)
        made.append(replay)
        return replay

    return LLMHarness(
        name="replay",
        pays=False,
        make=make,
        calls=lambda: sum(len(RECORDED_CALLS) - r.remaining for r in made),
        break_provider=lambda: broken.update(yes=True),
    )


def make_harness(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LLMHarness:
    """The harness of ``backend`` (one of BACKENDS)."""
    if backend == "anthropic":
        return anthropic_harness(tmp_path, monkeypatch)
    if backend == "claude-cli":
        return claude_cli_harness(tmp_path, monkeypatch)
    if backend == "offline":
        return offline_harness()
    if backend == "optuna":
        return optuna_harness(tmp_path)
    if backend == "replay":
        return replay_harness(tmp_path)
    raise ValueError(f"no LLM harness for backend {backend!r}; choose one of {', '.join(BACKENDS)}")
