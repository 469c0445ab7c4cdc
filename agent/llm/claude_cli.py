"""Backend that runs the ``claude`` CLI headless, for Claude Code users on a subscription (no API key).

The CLI runs with no tools at all (``--tools ""`` and ``--strict-mcp-config`` with no MCP config), one
turn, our system text in place of its own, the prompt on stdin, in an empty scratch folder, under a
timeout that kills its whole process group. Without tools it cannot open files, so images are not
sent: the prompt says so and lists their labels. Everything it prints is checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from agent.llm.base import LLMBackend, LLMCallFailed, LLMConfigError, LLMRequest, LLMResponse, Usage, one_line, scrub

MAX_ARG_BYTES = 100_000  # below Linux MAX_ARG_STRLEN (128 KiB); longer system text travels on stdin


def image_note(request: LLMRequest) -> str:
    """Paragraph telling the model which images exist but could not be attached."""
    if not request.images:
        return ""
    labels = "\n".join(f"- {image.label}" for image in request.images)
    return (
        "\n\nNote: this backend cannot attach images, so the following images are unavailable to you; "
        f"judge from the numbers above instead:\n{labels}\n"
    )


def build_argv(executable: str, request: LLMRequest) -> tuple[list[str], str]:
    """Command line and stdin text for one request."""
    argv = [
        executable,
        "-p",
        "--output-format",
        "json",
        "--model",
        request.model,
        "--tools",
        "",
        "--strict-mcp-config",
        "--max-turns",
        "1",
    ]
    stdin = request.prompt + image_note(request)
    if len(request.system.encode("utf-8")) <= MAX_ARG_BYTES:
        argv += ["--system-prompt", request.system]
    else:
        stdin = f"<instructions>\n{request.system}\n</instructions>\n\n{stdin}"
    return argv, stdin


def parse_result(stdout: str, where: str) -> dict[str, Any]:
    """The CLI's final JSON object (the whole output, or its last JSON line)."""
    candidates = [stdout.strip(), *reversed([line for line in stdout.splitlines() if line.strip()])]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    raise LLMCallFailed(f"{where}: output is not a JSON object: {one_line(stdout, 200)!r}")


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
    """Claude through ``claude -p --output-format json`` with no tools."""

    name = "claude-cli"

    def __init__(self, model: str, timeout_s: float, executable: str = "claude") -> None:
        resolved = shutil.which(executable)
        if resolved is None:
            raise LLMConfigError(
                f"claude CLI {executable!r} not found on PATH: install Claude Code, or run with "
                "--llm anthropic / offline / replay"
            )
        if timeout_s <= 0:
            raise LLMConfigError(f"claude-cli: timeout_s must be > 0, got {timeout_s}")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.executable = resolved

    def _run(self, argv: list[str], stdin: str, where: str) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="flyvis-claude-cli-") as scratch:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=scratch,
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
        t0 = time.monotonic()
        done = self._run(argv, stdin, where)
        elapsed = time.monotonic() - t0
        if done.returncode != 0 and not done.stdout.strip():
            tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            tail = scrub(tail, os.environ.get("ANTHROPIC_API_KEY"))
            raise LLMCallFailed(f"{where}: exit code {done.returncode}: {one_line(tail, 300)}")
        data = parse_result(done.stdout, where)
        response = self._to_response(request, data, elapsed)
        if data.get("is_error") or data.get("subtype", "success") != "success" or done.returncode != 0:
            reason = data.get("subtype") or f"exit code {done.returncode}"
            raise LLMCallFailed(f"{where}: {reason}: {one_line(response.text, 200)}", response=response)
        if response.stop_reason in ("max_tokens", "refusal"):
            raise LLMCallFailed(f"{where}: stop_reason {response.stop_reason}", response=response)
        if not response.text.strip():
            raise LLMCallFailed(f"{where}: empty reply", response=response)
        return response

    def _to_response(self, request: LLMRequest, data: dict[str, Any], elapsed: float) -> LLMResponse:
        result = data.get("result")
        cost = data.get("total_cost_usd", data.get("cost_usd", 0.0))
        return LLMResponse(
            text=result if isinstance(result, str) else "",
            stop_reason=data.get("stop_reason") or ("end_turn" if not data.get("is_error") else None),
            model=str(data.get("model") or request.model),
            request_id=data.get("session_id"),
            usage=usage_from(data),
            cost_usd=float(cost) if isinstance(cost, int | float) and cost >= 0 else 0.0,
            elapsed_s=elapsed,
            backend=self.name,
            raw=data,
        )
