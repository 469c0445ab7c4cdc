"""Backend that runs the ``claude`` CLI headless, for Claude Code users on a subscription (no API key).

The CLI runs with no tools at all (``--tools ""`` and ``--strict-mcp-config`` with no MCP config), one
turn, our system text in place of its own, in an empty scratch folder, under a timeout that kills its
whole process group. The user turn goes in on stdin as one ``stream-json`` message, so the images are
attached as content blocks, exactly as the API backend sends them. Everything it prints is checked.

Measured against the real CLI (``make test-integration``, Claude Code 2.1.332): it still adds its own
system blocks before ours and an environment note to the user turn, uses its own ``max_tokens`` (128k)
with adaptive thinking unless told otherwise, and may answer with another model than the one asked for
(named only in the result's ``modelUsage``). So the environment sets ``CLAUDE_CODE_MAX_OUTPUT_TOKENS``
to our max_tokens, turns thinking off, caps its retries (``CLAUDE_CODE_MAX_RETRIES``: by default it
retries a rejected key for minutes) and stops its other traffic; the response (and so the transcript)
names the model that really answered. Its home (``~/.claude*``: settings, session logs) is a folder of
the run unless ``home`` is None, which keeps the user's own home, where a subscription login lives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.llm.base import LLMBackend, LLMCallFailed, LLMConfigError, LLMRequest, LLMResponse, Usage, one_line, scrub

log = logging.getLogger(__name__)

MAX_ARG_BYTES = 100_000  # below Linux MAX_ARG_STRLEN (128 KiB); longer system text travels on stdin
PREFLIGHT_PROMPT = "Reply with the single word OK."
QUIET_ENV = {  # no update checks, telemetry, error reports or other look-ups: only the Messages API
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_THINKING": "1",
}


def build_argv(executable: str, request: LLMRequest) -> tuple[list[str], str]:
    """Command line and stdin (one stream-json user message: images, then the prompt) for one request."""
    from agent.llm.anthropic_backend import build_content

    argv = [
        executable,
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        request.model,
        "--tools",
        "",
        "--strict-mcp-config",
        "--max-turns",
        "1",
    ]
    content = build_content(request)
    if len(request.system.encode("utf-8")) <= MAX_ARG_BYTES:
        argv += ["--system-prompt", request.system]
    else:
        content.insert(0, {"type": "text", "text": f"<instructions>\n{request.system}\n</instructions>"})
    message = {"type": "user", "message": {"role": "user", "content": content}}
    return argv, json.dumps(message) + "\n"


def cli_env(request: LLMRequest, *, home: Path | None, max_retries: int) -> dict[str, str]:
    """The CLI's environment: ours plus the settings that keep it to one bounded call on 127.0.0.1 or the API."""
    env = {
        **os.environ,
        **QUIET_ENV,
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(request.max_tokens),
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }
    if home is not None:
        env["HOME"] = str(home)
        env["CLAUDE_CONFIG_DIR"] = str(home / ".claude")
        env.pop("XDG_CONFIG_HOME", None)
    return env


def parse_result(stdout: str, where: str) -> dict[str, Any]:
    """The CLI's final JSON object: the last ``"type": "result"`` line of a stream, else the last JSON object."""
    candidates = [stdout.strip(), *reversed([line for line in stdout.splitlines() if line.strip()])]
    objects = []
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            objects.append(data)
    for data in objects:
        if data.get("type") == "result":
            return data
    if objects:
        return objects[0]
    raise LLMCallFailed(f"{where}: output is not a JSON object: {one_line(stdout, 200)!r}")


def model_used(data: dict[str, Any], asked: str) -> str:
    """The model that really answered: the ``modelUsage`` entry with the most output tokens, else ``asked``."""
    usage = data.get("modelUsage")
    if isinstance(usage, dict) and usage:

        def output_tokens(name: str) -> float:
            entry = usage[name]
            value = entry.get("outputTokens", 0) if isinstance(entry, dict) else 0
            return value if isinstance(value, int | float) else 0

        return str(max(usage, key=output_tokens))
    model = data.get("model")
    return str(model) if model else asked


def usage_from(data: dict[str, Any]) -> Usage:
    raw = data.get("usage") or {}

    def count(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) and value >= 0 else 0

    return Usage(
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_read_input_tokens=count("cache_read_input_tokens"),
        cache_creation_input_tokens=count("cache_creation_input_tokens"),
    )


class ClaudeCliBackend(LLMBackend):
    """Claude through ``claude -p`` (stream-json in and out) with no tools.

    ``home``: the CLI's HOME for settings and session files (None: the user's own, for a subscription
    login); ``max_retries``: the CLI's own retries of a failed request.
    """

    name = "claude-cli"

    def __init__(
        self,
        model: str,
        timeout_s: float,
        executable: str = "claude",
        *,
        home: Path | None = None,
        max_retries: int = 5,
    ) -> None:
        resolved = shutil.which(executable)
        if resolved is None:
            raise LLMConfigError(
                f"claude CLI {executable!r} not found on PATH: install Claude Code, or run with "
                "--llm anthropic / offline / replay"
            )
        if timeout_s <= 0:
            raise LLMConfigError(f"claude-cli: timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise LLMConfigError(f"claude-cli: max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.executable = resolved
        self.home = Path(home).resolve() if home is not None else None
        self.max_retries = max_retries

    def _run(self, argv: list[str], stdin: str, env: dict[str, str], where: str) -> subprocess.CompletedProcess[str]:
        if self.home is not None:
            self.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="flyvis-claude-cli-") as scratch:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=scratch,
                env=env,
                start_new_session=True,
            )
            try:
                stdout, stderr = proc.communicate(stdin, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise LLMCallFailed(f"{where}: no reply within {self.timeout_s:.0f}s (process killed)") from None
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

    def complete(self, request: LLMRequest) -> LLMResponse:
        where = f"claude-cli {request.call_id}"
        argv, stdin = build_argv(self.executable, request)
        env = cli_env(request, home=self.home, max_retries=self.max_retries)
        t0 = time.monotonic()
        done = self._run(argv, stdin, env, where)
        elapsed = time.monotonic() - t0
        secret = os.environ.get("ANTHROPIC_API_KEY")
        if done.returncode != 0 and not done.stdout.strip():
            tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise LLMCallFailed(f"{where}: exit code {done.returncode}: {one_line(scrub(tail, secret), 300)}")
        data = parse_result(done.stdout, where)
        response = self._to_response(request, data, elapsed)
        status = data.get("api_error_status")
        if status in (401, 403):
            raise LLMCallFailed(
                scrub(
                    f"{where}: authentication failed (HTTP {status} {data.get('api_error_type') or ''}): "
                    f"{one_line(response.text, 150)}; check ANTHROPIC_API_KEY, or set claude.cli_home: user "
                    "to use your Claude Code login",
                    secret,
                ),
                response=response,
            )
        if data.get("is_error") or data.get("subtype", "success") != "success" or done.returncode != 0:
            subtype = data.get("subtype")
            reason = subtype if subtype and subtype != "success" else f"error (exit code {done.returncode})"
            if status:
                reason = f"HTTP {status} {data.get('api_error_type') or ''}".strip()
            hint = ""
            if "not logged in" in response.text.lower() or "/login" in response.text:
                where_home = "its own home in the run" if self.home is not None else "your home"
                hint = (
                    f"; the CLI found no login in {where_home}: set claude.cli_home: user to use your Claude Code "
                    "login, or export ANTHROPIC_API_KEY"
                )
            text = one_line(scrub(response.text, secret), 200)
            raise LLMCallFailed(f"{where}: {reason}: {text}{hint}", response=response)
        if response.stop_reason in ("max_tokens", "refusal"):
            raise LLMCallFailed(f"{where}: stop_reason {response.stop_reason}", response=response)
        if not response.text.strip():
            raise LLMCallFailed(f"{where}: empty reply", response=response)
        if response.model != request.model:
            log.warning("%s: asked for model %s, the CLI answered with %s", where, request.model, response.model)
        return response

    def preflight(self) -> list[str]:
        """One tiny call before the run spends compute: LLMConfigError (one line) when the CLI cannot
        answer; a warning when another model than claude.model answered."""
        request = LLMRequest(
            call_id="preflight",
            purpose="start",
            system="Answer in one word.",
            prompt=PREFLIGHT_PROMPT,
            model=self.model,
            max_tokens=256,
        )
        try:
            response = self.complete(request)
        except LLMCallFailed as err:
            raise LLMConfigError(f"preflight: {err}") from None
        if response.model != self.model:
            return [
                f"claude.model: asked for {self.model}, the claude CLI answers with {response.model} "
                "(transcripts record the model that answered)"
            ]
        return []

    def _to_response(self, request: LLMRequest, data: dict[str, Any], elapsed: float) -> LLMResponse:
        result = data.get("result")
        cost = data.get("total_cost_usd", data.get("cost_usd", 0.0))
        return LLMResponse(
            text=result if isinstance(result, str) else "",
            stop_reason=data.get("stop_reason") or ("end_turn" if not data.get("is_error") else None),
            model=model_used(data, request.model),
            request_id=data.get("session_id"),
            usage=usage_from(data),
            cost_usd=float(cost) if isinstance(cost, int | float) and cost >= 0 else 0.0,
            elapsed_s=elapsed,
            backend=self.name,
            raw=data,
        )
