"""The API key never appears in a run's files, the CLI output, the logs, the report or the status page.

A short exploration runs in-process with the real Anthropic backend on a mocked wire (httpx2
MockTransport): an overload and an authentication error that echo the key, a refusal, then valid
replies written by the offline policy for the request being sent. The run stops twice (exit 4) and
resumes to the end.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest

from agent import run as agent_run
from agent.llm.anthropic_backend import AnthropicBackend
from agent.llm.base import LLMRequest
from agent.llm.factory import make_backend
from agent.llm.offline_policy import offline_policy
from agent.rebuild import differing_files
from agent.views.report import build_report
from agent.views.status import main as status_main
from helpers.fault_run import agent_argv, invoke
from helpers.llm import api_error

pytestmark = pytest.mark.fault("secrets")

SECRET = "sk-" + "ant-api03-FAULTTEST-" + "k3y9" * 10  # split so the literal never looks like a committed key


def message(text: str, stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-1",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 900, "output_tokens": 400},
    }


class MockMessagesAPI:
    """The Messages endpoint: per call id, scripted responses first, then the offline policy's reply to the
    request being sent (the backend wrapper records each LLMRequest before it goes on the wire)."""

    def __init__(self, script: dict[str, list[Callable[[], httpx2.Response]]]) -> None:
        self.script = script
        self.requests: list[LLMRequest] = []
        self.wire: list[httpx2.Request] = []

    def __call__(self, http: httpx2.Request) -> httpx2.Response:
        if http.url.path.startswith("/v1/models/"):  # the preflight's Models API look-up of claude.model
            model_id = http.url.path.rsplit("/", 1)[-1]
            info = {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2026-01-01T00:00:00Z"}
            return httpx2.Response(200, json={**info, "lifecycle": "active"})
        self.wire.append(http)
        request = self.requests[-1]
        queue = self.script.get(request.call_id)
        if queue:
            return queue.pop(0)()
        return httpx2.Response(
            200, headers={"request-id": f"req_ok_{len(self.wire)}"}, json=message(offline_policy(request))
        )


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> SimpleNamespace:
    api = MockMessagesAPI(
        {
            "start": [lambda: api_error(529, "overloaded_error", f"overloaded; key {SECRET} rate limited")],
            "batch-001": [
                lambda: api_error(401, "authentication_error", f"invalid x-api-key: {SECRET}"),
                lambda: httpx2.Response(200, json=message("I can't help with that.", stop_reason="refusal")),
            ],
        }
    )
    original = AnthropicBackend.complete

    def recording_complete(self: AnthropicBackend, request: LLMRequest) -> Any:
        api.requests.append(request)
        return original(self, request)

    records = Records()
    loggers = [logging.getLogger(name) for name in ("agent", "anthropic", "httpx2", "tenacity")]
    run_dir = tmp_path_factory.mktemp("secrets") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANTHROPIC_API_KEY", SECRET)
        mp.setattr(AnthropicBackend, "complete", recording_complete)
        client = httpx2.Client(transport=httpx2.MockTransport(api))
        mp.setattr(agent_run, "make_backend", functools.partial(make_backend, http_client=client))
        for logger in loggers:  # everything down to DEBUG, kept out of pytest's own log capture
            mp.setattr(logger, "level", logging.DEBUG)
            mp.setattr(logger, "propagate", False)
            mp.setattr(logger, "handlers", [records])
        runs = [invoke(agent_argv(run_dir, tiny_config, llm="anthropic"))]
        runs += [invoke(agent_argv(run_dir, tiny_config, "--resume", llm="anthropic")) for _ in range(2)]
        report = build_report(run_dir).read_text(encoding="utf-8")
        status_out = io.StringIO()
        with redirect_stdout(status_out):
            status_main([str(run_dir)])
    return SimpleNamespace(
        run_dir=run_dir, api=api, runs=runs, logs="\n".join(records.lines), report=report, status=status_out.getvalue()
    )


def test_key_went_on_the_wire_so_the_run_really_held_it(secret_run) -> None:
    wire = secret_run.api.wire
    assert len(wire) == 5 and all(SECRET in " ".join(http.headers.values()) for http in wire)


def test_overload_auth_error_and_refusal_stop_resumably_and_the_run_completes(secret_run) -> None:
    assert [r.code for r in secret_run.runs] == [agent_run.EXIT_LLM, agent_run.EXIT_LLM, 0], secret_run.runs[-1].err
    assert "HTTP 401 authentication_error" in secret_run.runs[0].last_err_line()
    assert "refused" in secret_run.runs[1].last_err_line()
    assert differing_files(secret_run.run_dir) == []


def test_key_is_in_no_file_of_the_run_directory(secret_run) -> None:
    files = [p for p in secret_run.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "journal.jsonl" for p in files) and any(p.parent.name == "transcripts" for p in files)
    leaking = [str(p.relative_to(secret_run.run_dir)) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaking == []


def test_key_is_redacted_from_the_cli_output(secret_run) -> None:
    assert "[REDACTED]" in secret_run.runs[0].err  # the 401 echoed it: the scrubbed message was printed
    for run in secret_run.runs:
        assert SECRET not in run.out and SECRET not in run.err


def test_key_is_in_no_log_record(secret_run) -> None:
    # the SDK's DEBUG records (request options, the 529 retry) were captured; the retry wording varies with the
    # SDK's logger state, so only "Retrying" is required
    assert "Request options" in secret_run.logs and "Retrying" in secret_run.logs
    assert SECRET not in secret_run.logs


def test_key_is_in_neither_the_report_nor_the_status_page(secret_run) -> None:
    assert "<html" in secret_run.report.lower() and secret_run.status.strip()
    assert SECRET not in secret_run.report and SECRET not in secret_run.status
