"""ClaudeCliBackend against a fake ``claude`` executable on PATH."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from agent.llm.base import ImageInput, LLMCallFailed, LLMConfigError
from agent.llm.claude_cli import ClaudeCliBackend
from helpers.fake_claude import install_fake_claude
from helpers.llm import make_request


@pytest.fixture
def fake_claude(tmp_path, monkeypatch):
    """Put a fake ``claude`` first on PATH; return the path of the log it writes (argv, stdin, cwd)."""
    return install_fake_claude(tmp_path, monkeypatch)


def read_log(log: Path) -> dict:
    return json.loads(log.read_text())


def test_cli_reply_text_usage_cost_and_session_are_parsed(fake_claude):
    response = ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())
    assert response.text == "## Iter 1: converged"
    assert response.usage.input_tokens == 500
    assert response.usage.output_tokens == 80
    assert response.usage.cache_read_input_tokens == 10
    assert response.cost_usd == pytest.approx(0.0123)
    assert response.request_id == "sess-42"
    assert response.backend == "claude-cli"
    assert response.raw["num_turns"] == 1


def test_cli_runs_headless_with_no_tools_and_the_prompt_on_stdin(fake_claude, tmp_path):
    ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request(prompt="Analyse.", system="Rules."))
    seen = read_log(fake_claude)
    argv = seen["argv"]
    assert argv[:6] == ["-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
    assert argv[argv.index("--tools") + 1] == ""
    assert "--strict-mcp-config" in argv
    assert argv[argv.index("--model") + 1] == "claude-test"
    assert argv[argv.index("--system-prompt") + 1] == "Rules."
    message = json.loads(seen["stdin"])
    assert message["type"] == "user"
    assert message["message"]["content"] == [{"type": "text", "text": "Analyse."}]
    assert not Path(seen["cwd"]).exists()  # an empty scratch folder, removed afterwards


def test_cli_attaches_the_images_before_the_prompt(fake_claude, png):
    images = [
        ImageInput(path=png("a.png"), label="slot 0 activity"),
        ImageInput(path=png("b.png", seed=1), label="slot 1 activity"),
    ]
    ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request(prompt="Analyse.", images=images))
    content = json.loads(read_log(fake_claude)["stdin"])["message"]["content"]
    assert [block["type"] for block in content] == ["text", "image", "text", "image", "text"]
    assert content[0]["text"] == "Image: slot 0 activity" and content[-1]["text"] == "Analyse."
    assert content[1]["source"]["media_type"] == "image/png"
    assert base64.b64decode(content[1]["source"]["data"]) == images[0].path.read_bytes()


def test_cli_environment_bounds_the_call_and_keeps_it_off_other_hosts(fake_claude, tmp_path):
    home = tmp_path / "run" / "claude_home"
    ClaudeCliBackend("claude-test", timeout_s=30, home=home, max_retries=2).complete(make_request(max_tokens=3000))
    env = read_log(fake_claude)["env"]
    assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "3000"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "2"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CODE_DISABLE_THINKING"] == "1"
    assert env["HOME"] == str(home.resolve()) and home.is_dir()


def test_cli_without_a_home_keeps_the_users_own(fake_claude, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())
    assert read_log(fake_claude)["env"]["HOME"] == str(tmp_path / "me")


def test_cli_response_names_the_model_that_really_answered(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "swap")
    response = ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())
    assert response.model == "claude-other-1"


@pytest.mark.fault("llm")
def test_cli_rejected_key_fails_saying_so(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "auth")
    with pytest.raises(LLMCallFailed, match=r"authentication failed \(HTTP 401 authentication_error\)") as info:
        ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())
    assert "ANTHROPIC_API_KEY" in str(info.value) and "cli_home: user" in str(info.value)


@pytest.mark.fault("llm")
def test_cli_without_a_login_in_the_run_home_says_how_to_use_yours(fake_claude, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "nologin")
    with pytest.raises(LLMCallFailed) as info:
        ClaudeCliBackend("claude-test", timeout_s=30, home=tmp_path / "h").complete(make_request())
    message = str(info.value)
    assert message.startswith("claude-cli batch-001: error (exit code 0): Not logged in")
    assert "set claude.cli_home: user" in message and "\n" not in message


@pytest.mark.fault("llm")
def test_cli_timeout_kills_the_process_and_fails(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "sleep")
    t0 = time.monotonic()
    with pytest.raises(LLMCallFailed, match=r"no reply within 1s"):
        ClaudeCliBackend("claude-test", timeout_s=1).complete(make_request())
    assert time.monotonic() - t0 < 10


def test_missing_cli_executable_is_a_config_error():
    with pytest.raises(LLMConfigError, match="not found on PATH"):
        ClaudeCliBackend("claude-test", timeout_s=30, executable="claude-does-not-exist-xyz")


@pytest.mark.fault("llm")
def test_cli_error_result_fails_with_its_subtype(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "error")
    with pytest.raises(LLMCallFailed, match="error_during_execution: API Error: overloaded") as info:
        ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())
    assert info.value.response.cost_usd == pytest.approx(0.0123)


@pytest.mark.fault("llm")
def test_cli_empty_result_fails(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "empty")
    with pytest.raises(LLMCallFailed, match="empty reply"):
        ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())


@pytest.mark.fault("llm")
def test_cli_output_that_is_not_json_fails(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "garbage")
    with pytest.raises(LLMCallFailed, match="not a JSON object"):
        ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())


@pytest.mark.fault("llm")
def test_cli_nonzero_exit_reports_the_last_stderr_line(fake_claude, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "crash")
    with pytest.raises(LLMCallFailed, match="exit code 1: Error: not logged in"):
        ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request())
