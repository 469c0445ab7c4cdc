"""Preflight before any compute: the Models API checks the key and claude.model (mocked wire), the default
model is one the installed SDK knows and has not deprecated."""

from __future__ import annotations

from typing import Any, get_args

import httpx2
import pytest

from agent.llm.base import LLMConfigError
from agent.llm.factory import make_backend, preflight
from experiment.config import ClaudeConfig
from helpers.llm import api_error


def model_info(model_id: str, lifecycle: str = "active", line: str | None = "opus", **extra: Any) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": "2026-01-01T00:00:00Z",
        "lifecycle": lifecycle,
        "line": line,
        **extra,
    }


CATALOGUE = [
    model_info("claude-opus-5-5"),
    model_info("claude-sonnet-5-5", line="sonnet"),
    model_info("claude-opus-4-5", "deprecated", retires_at="2027-01-22T00:00:00Z"),
    model_info("claude-opus-4-1", "retired", retires_at="2026-01-05T00:00:00Z"),
]


def models_api(request: httpx2.Request) -> httpx2.Response:
    """GET /v1/models/{id} and GET /v1/models from CATALOGUE; 404 for an unknown id."""
    path = request.url.path
    if path == "/v1/models":
        return httpx2.Response(200, json={"data": CATALOGUE, "has_more": False, "first_id": None, "last_id": None})
    model_id = path.rsplit("/", 1)[-1]
    for info in CATALOGUE:
        if info["id"] == model_id:
            return httpx2.Response(200, json=info)
    return api_error(404, "not_found_error", f"model: {model_id}", retry_after_ms=None)


def checked(make_api_backend, model: str, *script: Any, **options: Any) -> tuple[list[str], Any]:
    backend, api = make_api_backend(*(script or (models_api,)), model=model, **options)
    return backend.preflight(), api


def test_active_model_passes_after_one_models_api_request(make_api_backend) -> None:
    warnings, api = checked(make_api_backend, "claude-opus-5-5")
    assert warnings == []
    assert [r.url.path for r in api.requests] == ["/v1/models/claude-opus-5-5"]
    assert api.requests[0].method == "GET"


def test_unknown_model_stops_with_one_line_naming_a_current_model(make_api_backend) -> None:
    with pytest.raises(LLMConfigError) as err:
        checked(make_api_backend, "claude-opus-9-typo")
    message = str(err.value)
    assert message.startswith("claude.model: 'claude-opus-9-typo' is not a model the API knows")
    assert "claude-opus-5-5" in message and "\n" not in message


def test_retired_model_stops_naming_the_newest_model_of_its_line(make_api_backend) -> None:
    with pytest.raises(LLMConfigError, match=r"'claude-opus-4-1' was retired on 2026-01-05; .* claude-opus-5-5$"):
        checked(make_api_backend, "claude-opus-4-1")


def test_deprecated_model_is_a_warning_with_its_retirement_date(make_api_backend) -> None:
    warnings, _ = checked(make_api_backend, "claude-opus-4-5")
    assert len(warnings) == 1
    assert "deprecated and retires on 2027-01-22" in warnings[0] and "claude-opus-5-5" in warnings[0]


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_stops_before_any_compute_without_showing_the_key(make_api_backend, status: int) -> None:
    kind = "authentication_error" if status == 401 else "permission_error"
    with pytest.raises(LLMConfigError, match=rf"the API rejected ANTHROPIC_API_KEY \(HTTP {status}") as err:
        checked(make_api_backend, "claude-opus-5-5", api_error(status, kind, "invalid x-api-key", retry_after_ms=None))
    assert "SECRET" not in str(err.value)


def test_unreachable_api_is_one_line(make_api_backend) -> None:
    with pytest.raises(LLMConfigError, match=r"^preflight: cannot reach the API: connection error"):
        checked(make_api_backend, "claude-opus-5-5", httpx2.ConnectError("connection refused"), max_retries=0)


def test_preflight_finds_the_api_backend_inside_the_run_wrappers(make_api_backend, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-test-key-SECRET-0123456789abcdef")
    settings = ClaudeConfig(model="claude-opus-4-1", price_per_mtok={"default": dict.fromkeys(
        ("input", "output", "cache_read", "cache_write"), 1.0)})  # fmt: skip
    client = httpx2.Client(transport=httpx2.MockTransport(models_api))
    backend = make_backend("anthropic", settings, transcripts_dir=tmp_path / "transcripts", http_client=client)
    with pytest.raises(LLMConfigError, match="was retired"):
        preflight(backend)


def test_default_model_is_known_to_the_installed_sdk_and_not_deprecated() -> None:
    from anthropic._data import DEPRECATED_MODELS
    from anthropic.types import Model

    default = ClaudeConfig().model
    known = set(get_args(get_args(Model)[0]))
    assert default in known
    assert default not in DEPRECATED_MODELS
