"""The claude-cli backend driving the real Claude Code CLI against the fake Messages API on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from agent.llm.base import ImageInput, LLMCallFailed, LLMConfigError, LLMRequest
from agent.llm.claude_cli import ClaudeCliBackend, cli_env
from agent.llm.factory import CLI_HOME, make_backend, preflight
from experiment.config import ClaudeConfig
from helpers.fake_anthropic import FakeAnthropic, Step

pytestmark = pytest.mark.real

SYSTEM = "You are the flyvis exploration agent. MARKER-SYSTEM-7f3a"
PROMPT = "Analyse batch 1. MARKER-PROMPT-19c2"


def request(
    model: str = "claude-opus-5-5", images: list[ImageInput] | None = None, max_tokens: int = 3000
) -> LLMRequest:
    return LLMRequest(
        call_id="batch-001",
        purpose="batch",
        system=SYSTEM,
        prompt=PROMPT,
        images=images or [],
        model=model,
        max_tokens=max_tokens,
    )


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (24, 16), colour).save(path, format="PNG")
    return path


def backend(claude_cli: str, tmp_path: Path, **kwargs: object) -> ClaudeCliBackend:
    options: dict[str, object] = {"home": tmp_path / "run" / CLI_HOME, "max_retries": 1}
    options.update(kwargs)
    return ClaudeCliBackend("claude-opus-5-5", timeout_s=120, executable=claude_cli, **options)  # type: ignore[arg-type]


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the user's own home: the CLI must leave it alone unless told otherwise."""
    home = tmp_path / "user_home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    return home


@pytest.fixture
def proxied(fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """Any request to another host goes through the fake server as a proxy, which logs and refuses it."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, fake_api.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return fake_api


def sent(fake_api: FakeAnthropic) -> dict:
    (message,) = fake_api.messages()
    return message.body


def test_our_system_text_and_images_reach_the_request(claude_cli, fake_api, tmp_path, user_home) -> None:
    images = [
        ImageInput(path=png(tmp_path / "a.png", (200, 10, 10)), label="slot 0 activity"),
        ImageInput(path=png(tmp_path / "b.png", (10, 200, 10)), label="slot 1 activity"),
    ]
    fake_api.push(Step(text="## Iter 1: converged"))
    response = backend(claude_cli, tmp_path).complete(request(images=images))
    assert response.text == "## Iter 1: converged"
    body = sent(fake_api)
    assert body["stream"] is True
    assert any(block.get("text") == SYSTEM for block in body["system"])  # the CLI adds its own blocks before ours
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]
    sent_images = [base64.b64decode(b["source"]["data"]) for b in user if b["type"] == "image"]
    assert sent_images == [image.path.read_bytes() for image in images]
    assert any(b["type"] == "text" and PROMPT in b["text"] for b in user)  # the CLI may append its own note
    labels = [b["text"] for b in user if b["type"] == "text" and b["text"].startswith("Image: ")]
    assert labels == ["Image: slot 0 activity", "Image: slot 1 activity"]


def test_max_tokens_is_ours_and_thinking_is_off(claude_cli, fake_api, tmp_path, user_home) -> None:
    backend(claude_cli, tmp_path).complete(request(max_tokens=3000))
    body = sent(fake_api)
    assert body["max_tokens"] == 3000
    assert body.get("thinking") in (None, {"type": "disabled"})


def test_transcript_records_the_model_that_really_answered(claude_cli, fake_api, tmp_path, user_home) -> None:
    settings = ClaudeConfig(model="claude-opus-4-1", max_retries=1)
    run = tmp_path / "run"
    llm = make_backend("claude-cli", settings, transcripts_dir=run / "transcripts", claude_executable=claude_cli)
    response = llm.complete(request(model="claude-opus-4-1"))
    on_the_wire = sent(fake_api)["model"]
    assert response.model == on_the_wire  # whatever the CLI sent, not what we asked for
    (transcript,) = (run / "transcripts").glob("*.json")
    record = json.loads(transcript.read_text())
    assert record["response"]["model"] == on_the_wire
    assert record["model"] == "claude-opus-4-1"  # and what we asked for stays beside it


def test_a_rejected_key_fails_fast_saying_so(claude_cli, fake_api, tmp_path, user_home) -> None:
    fake_api.api_keys = {"the-only-good-key"}
    t0 = time.monotonic()
    with pytest.raises(LLMCallFailed) as err:
        backend(claude_cli, tmp_path, max_retries=1).complete(request())
    elapsed = time.monotonic() - t0
    assert "authentication failed (HTTP 401" in str(err.value) and "ANTHROPIC_API_KEY" in str(err.value)
    assert "\n" not in str(err.value)
    assert elapsed < 30, f"took {elapsed:.0f}s"
    assert len(fake_api.messages()) <= 2  # CLAUDE_CODE_MAX_RETRIES=1: one try, one retry


def test_preflight_passes_with_one_tiny_call_and_stops_on_a_bad_key(claude_cli, fake_api, tmp_path, user_home) -> None:
    assert backend(claude_cli, tmp_path).preflight() == []
    (call,) = fake_api.messages()
    assert call.body["max_tokens"] == 256
    fake_api.api_keys = {"the-only-good-key"}
    with pytest.raises(LLMConfigError, match=r"^preflight: claude-cli preflight: authentication failed"):
        backend(claude_cli, tmp_path).preflight()


def test_preflight_through_the_run_wrappers_warns_when_another_model_answers(
    claude_cli, fake_api, tmp_path, user_home
) -> None:
    settings = ClaudeConfig(model="claude-opus-4-1", max_retries=1)
    run = tmp_path / "run"
    llm = make_backend("claude-cli", settings, transcripts_dir=run / "transcripts", claude_executable=claude_cli)
    warnings = preflight(llm)
    on_the_wire = sent(fake_api)["model"]
    if on_the_wire == "claude-opus-4-1":
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"answers with {on_the_wire}" in warnings[0]
    assert not list((run / "transcripts").glob("*.json"))  # the preflight is not a run call


def test_no_traffic_leaves_127_0_0_1(claude_cli, proxied, tmp_path, user_home) -> None:
    backend(claude_cli, tmp_path).complete(request())
    time.sleep(1.0)  # anything the CLI sends after its answer
    assert [r.method for r in proxied.log if r.method == "CONNECT"] == []
    hosts = {r.headers.get("host") for r in proxied.log}
    assert hosts == {proxied.url.removeprefix("http://")}
    env = cli_env(request(), home=tmp_path / "h", max_retries=1)
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and env["DISABLE_TELEMETRY"] == "1"


def test_cli_home_and_session_files_go_to_the_run_not_the_users_home(claude_cli, fake_api, tmp_path, user_home) -> None:
    settings = ClaudeConfig(max_retries=1)
    run = tmp_path / "run"
    llm = make_backend("claude-cli", settings, transcripts_dir=run / "transcripts", claude_executable=claude_cli)
    llm.complete(request())
    assert list(user_home.iterdir()) == []
    written = [p.relative_to(run / CLI_HOME) for p in (run / CLI_HOME).rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in written), written  # the CLI's session log
    key = os.environ["ANTHROPIC_API_KEY"]
    assert [p for p in written if key in (run / CLI_HOME / p).read_text(errors="replace")] == []


def test_cli_home_user_keeps_the_users_own_home(claude_cli, fake_api, tmp_path, user_home) -> None:
    settings = ClaudeConfig(max_retries=1, cli_home="user")
    run = tmp_path / "run"
    llm = make_backend("claude-cli", settings, transcripts_dir=run / "transcripts", claude_executable=claude_cli)
    llm.complete(request())
    assert any(p.name.startswith(".claude") for p in user_home.iterdir())
    assert not (run / CLI_HOME).exists()


def test_overloaded_529_is_retried_by_the_cli(claude_cli, fake_api, tmp_path, user_home) -> None:
    fake_api.push(Step(status=529, message="Overloaded"), Step(text="after the overload"))
    response = backend(claude_cli, tmp_path, max_retries=2).complete(request())
    assert response.text == "after the overload"
    assert len(fake_api.messages()) == 2


def test_a_slow_answer_past_the_timeout_kills_the_cli(claude_cli, fake_api, tmp_path, user_home) -> None:
    fake_api.push(Step(text="too late", delay_s=20))
    slow = ClaudeCliBackend("claude-opus-5-5", timeout_s=5, executable=claude_cli, home=tmp_path / "h", max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(LLMCallFailed, match=r"no reply within 5s"):
        slow.complete(request())
    assert time.monotonic() - t0 < 15
