"""ClaudeCliBackend against a fake ``claude`` executable on PATH."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest
from llm_helpers import make_request

from agent.llm.base import ImageInput, LLMCallFailed, LLMConfigError
from agent.llm.claude_cli import ClaudeCliBackend

FAKE = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys, time
    mode = os.environ.get("FAKE_CLAUDE_MODE", "ok")
    stdin = sys.stdin.read()
    with open(os.environ["FAKE_CLAUDE_LOG"], "w") as fh:
        json.dump({{"argv": sys.argv[1:], "stdin": stdin, "cwd": os.getcwd()}}, fh)
    if mode == "sleep":
        time.sleep(30)
    if mode == "garbage":
        print("Welcome to Claude Code!")
        sys.exit(0)
    if mode == "crash":
        print("Error: not logged in; run claude login", file=sys.stderr)
        sys.exit(1)
    result = {{
        "type": "result", "subtype": "success", "is_error": False, "duration_ms": 1234, "num_turns": 1,
        "result": "## Iter 1: converged", "session_id": "sess-42", "total_cost_usd": 0.0123,
        "usage": {{"input_tokens": 500, "output_tokens": 80, "cache_read_input_tokens": 10,
                   "cache_creation_input_tokens": 5}},
    }}
    if mode == "error":
        result.update(subtype="error_during_execution", is_error=True, result="API Error: overloaded")
    if mode == "empty":
        result.update(result="")
    print(json.dumps(result))
    """
)


@pytest.fixture
def fake_claude(tmp_path, monkeypatch):
    """Put a fake ``claude`` first on PATH; return the path of the log it writes (argv, stdin, cwd)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "fake_claude_log.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "ok")
    return log


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
    assert argv[:3] == ["-p", "--output-format", "json"]
    assert argv[argv.index("--tools") + 1] == ""
    assert "--strict-mcp-config" in argv
    assert argv[argv.index("--model") + 1] == "claude-test"
    assert argv[argv.index("--system-prompt") + 1] == "Rules."
    assert seen["stdin"] == "Analyse."
    assert not Path(seen["cwd"]).exists()  # an empty scratch folder, removed afterwards


def test_cli_tells_the_model_which_images_are_unavailable(fake_claude, png):
    images = [
        ImageInput(path=png("a.png"), label="slot 0 activity"),
        ImageInput(path=png("b.png"), label="slot 1 activity"),
    ]
    ClaudeCliBackend("claude-test", timeout_s=30).complete(make_request(prompt="Analyse.", images=images))
    stdin = read_log(fake_claude)["stdin"]
    assert stdin.startswith("Analyse.")
    assert "cannot attach images" in stdin
    assert "- slot 0 activity" in stdin and "- slot 1 activity" in stdin
    assert str(images[0].path) not in stdin


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
