"""Anthropic Messages API backend (SDK 2.x on httpx2), the only module that imports ``anthropic``.

Two retry layers: the SDK retries each request itself (``max_retries``, honouring ``retry-after``);
around the whole call, tenacity keeps retrying overload, rate-limit, 5xx and connection failures
until a total outage deadline. 400/401/403/404 and other client errors are never retried. A reply
that stopped on ``max_tokens`` or ``refusal``, or has no text, is a failed call. The API key never
appears in a message, log line, transcript or exception.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import time
from typing import Any, Literal

import anthropic
import httpx2
from PIL import Image
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity import wait_exponential as _wait_exponential

from agent.llm.base import (
    ImageInput,
    LLMBackend,
    LLMCallFailed,
    LLMConfigError,
    LLMRequest,
    LLMResponse,
    Usage,
    one_line,
    scrub,
)
from agent.llm.budget import PriceTable, cost_usd, price_for, validate_price_table

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 1_150_000  # ~1,600 tokens per image; larger images are downscaled
OK_STOP_REASONS = {"end_turn", "stop_sequence"}
NEVER_RETRY_STATUS = {400, 401, 403, 404}
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "default": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
}
MISSING_KEY = "ANTHROPIC_API_KEY is not set: export it, or run with --llm claude-cli / offline / replay"
PromptCache = Literal["off", "5m", "1h"]


def encode_image(image: ImageInput, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[str, tuple[int, int]]:
    """Base64 PNG of ``image``, downscaled (aspect kept) when over ``max_pixels``; returns (data, size)."""
    try:
        raw = image.path.read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            width, height = im.size
            if width * height <= max_pixels and im.format == "PNG":
                return base64.b64encode(raw).decode("ascii"), (width, height)
            scale = min(1.0, math.sqrt(max_pixels / (width * height)))
            size = (max(1, int(width * scale)), max(1, int(height * scale)))
            out = im.resize(size, Image.Resampling.LANCZOS) if scale < 1.0 else im.copy()
    except FileNotFoundError:
        raise LLMCallFailed(f"image {image.label!r}: file not found: {image.path}") from None
    except OSError as err:
        raise LLMCallFailed(f"image {image.label!r}: {image.path} is not a readable image: {one_line(err)}") from None
    if out.mode not in ("RGB", "RGBA", "L", "LA"):
        out = out.convert("RGBA")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), size


def build_content(request: LLMRequest, max_pixels: int = MAX_IMAGE_PIXELS) -> list[dict[str, Any]]:
    """User content: each image (after a one-line label) first, then the prompt text."""
    blocks: list[dict[str, Any]] = []
    for image in request.images:
        data, _ = encode_image(image, max_pixels)
        blocks.append({"type": "text", "text": f"Image: {image.label}"})
        blocks.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}})
    blocks.append({"type": "text", "text": request.prompt})
    return blocks


def build_system(system: str, prompt_cache: PromptCache) -> list[dict[str, Any]]:
    """System text as one block, marked for prompt caching unless caching is off."""
    block: dict[str, Any] = {"type": "text", "text": system}
    if prompt_cache != "off":
        block["cache_control"] = {"type": "ephemeral", "ttl": prompt_cache}
    return [block]


def is_transient(err: BaseException) -> bool:
    """Worth retrying over a long outage: overload, rate limit, 5xx, timeouts and connection failures."""
    if isinstance(err, anthropic.APIStatusError):
        status = err.status_code
        return status not in NEVER_RETRY_STATUS and (status >= 500 or status in (429, 529))
    return isinstance(err, anthropic.APIConnectionError)


def retry_after_s(err: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, factor in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * factor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def sdk_deprecations() -> dict[str, str]:
    """The installed SDK's own table of deprecated models and their end-of-life dates (empty if it has none)."""
    try:
        from anthropic._data import DEPRECATED_MODELS
    except ImportError:
        return {}
    return dict(DEPRECATED_MODELS)


def usage_of(message: Any) -> Usage:
    u = message.usage
    return Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_input_tokens=u.cache_read_input_tokens or 0,
        cache_creation_input_tokens=u.cache_creation_input_tokens or 0,
    )


class AnthropicBackend(LLMBackend):
    """Claude through the Anthropic Messages API. ``model`` and ``max_tokens`` are the settings the run's
    requests carry (each request's own values are the ones sent); the price table is checked for them."""

    name = "anthropic"

    def __init__(
        self,
        model: str,
        max_tokens: int,
        api_key: str | None = None,
        max_retries: int = 5,
        timeout_s: float = 600.0,
        prompt_cache: PromptCache = "off",
        outage_deadline_s: float = 3600.0,
        price_table: PriceTable | None = None,
        http_client: httpx2.Client | None = None,
        *,
        base_url: str | None = None,
        outage_backoff_s: tuple[float, float] = (10.0, 300.0),
        max_image_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        if not key or not key.strip():
            raise LLMConfigError(MISSING_KEY)
        if prompt_cache not in ("off", "5m", "1h"):
            raise LLMConfigError(f"claude.prompt_cache: must be off, 5m or 1h, got {prompt_cache!r}")
        if timeout_s <= 0 or outage_deadline_s < 0 or max_retries < 0:
            raise LLMConfigError("anthropic backend: timeout_s must be > 0, outage_deadline_s and max_retries >= 0")
        self.model = model
        self.max_tokens = max_tokens
        self.prompt_cache: PromptCache = prompt_cache
        self.timeout_s = float(timeout_s)
        self.outage_deadline_s = float(outage_deadline_s)
        self.outage_backoff_s = outage_backoff_s
        self.max_image_pixels = max_image_pixels
        self.price_table: PriceTable = dict(price_table) if price_table is not None else DEFAULT_PRICES
        validate_price_table(self.price_table)
        price_for(model, self.price_table)
        self._key = key
        self.client = anthropic.Anthropic(
            api_key=key, base_url=base_url, max_retries=max_retries, timeout=self.timeout_s, http_client=http_client
        )

    def __repr__(self) -> str:
        return f"AnthropicBackend(model={self.model!r}, prompt_cache={self.prompt_cache!r})"

    def close(self) -> None:
        self.client.close()

    # -- the preflight --------------------------------------------------------------------------
    def preflight(self) -> list[str]:
        """Ask the Models API about the key and ``claude.model`` before the run spends compute.

        LLMConfigError (one line) when the key is rejected, the API cannot be reached, or the model is
        unknown or retired (naming a current model); a warning when the model is deprecated.
        """
        try:
            info = self.client.models.retrieve(self.model, timeout=min(self.timeout_s, 60.0))
        except anthropic.APIStatusError as err:
            if err.status_code in (401, 403):
                raise LLMConfigError(
                    self._clean(f"preflight: the API rejected ANTHROPIC_API_KEY ({self._describe(err)})")
                ) from None
            if err.status_code == 404:
                raise LLMConfigError(
                    f"claude.model: {self.model!r} is not a model the API knows (misspelt or retired); "
                    f"use a current model such as {self._current_model()}"
                ) from None
            raise LLMConfigError(self._clean(f"preflight: Models API: {self._describe(err)}")) from None
        except anthropic.APIConnectionError as err:
            raise LLMConfigError(self._clean(f"preflight: cannot reach the API: {self._describe(err)}")) from None
        lifecycle = getattr(info, "lifecycle", None)
        retires = getattr(info, "retires_at", None)
        when = f" on {retires:%Y-%m-%d}" if retires is not None else ""
        if lifecycle == "retired":
            raise LLMConfigError(
                f"claude.model: {self.model!r} was retired{when}; use a current model such as {self._current_model()}"
            )
        eol = sdk_deprecations().get(self.model)
        if lifecycle == "deprecated" or eol:
            when = when or (f" on {eol}" if eol else "")
            return [
                f"claude.model: {self.model} is deprecated and retires{when}; "
                f"switch to a current model such as {self._current_model()}"
            ]
        return []

    def _current_model(self) -> str:
        """The newest active model of the configured model's line (opus, sonnet, ...), else the newest active
        one, from the Models API; the project's default when the list cannot be read."""
        from experiment.config import ClaudeConfig

        fallback = str(ClaudeConfig.model_fields["model"].default)
        line = next((name for name in ("opus", "sonnet", "haiku") if name in self.model), None)
        try:
            active = [m for m in self.client.models.list(limit=100) if getattr(m, "lifecycle", "active") == "active"]
        except anthropic.AnthropicError:
            return fallback
        same_line = [m for m in active if line is not None and getattr(m, "line", None) == line]
        best = (same_line or active or [None])[0]
        return best.id if best is not None else fallback

    # -- the call -------------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> LLMResponse:
        content = build_content(request, self.max_image_pixels)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": content}],
            "timeout": self.timeout_s,
        }
        if request.system:
            kwargs["system"] = build_system(request.system, self.prompt_cache)
        t0 = time.monotonic()
        message = self._send_through_outages(request.call_id, kwargs)
        return self._to_response(request, message, time.monotonic() - t0)

    def _wait(self, retry_state: RetryCallState) -> float:
        """Exponential backoff, or the server's retry-after when given, never past the outage deadline."""
        low, high = self.outage_backoff_s
        wait = _wait_exponential(multiplier=max(low, 1e-6), min=low, max=high)(retry_state)
        outcome = retry_state.outcome
        asked = retry_after_s(outcome.exception() if outcome is not None else None)
        if asked is not None:
            wait = asked
        remaining = self.outage_deadline_s - retry_state.seconds_since_start
        return max(0.0, min(wait, remaining))

    def _send_through_outages(self, call_id: str, kwargs: dict[str, Any]) -> Any:
        stop = stop_after_delay(self.outage_deadline_s) if self.outage_deadline_s > 0 else stop_after_attempt(1)
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop,
            wait=self._wait,
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "anthropic %s: transient failure (%s), retrying in %.1fs",
                call_id,
                self._clean(self._describe(rs.outcome.exception())) if rs.outcome else "?",
                rs.upcoming_sleep,
            ),
        )
        t0 = time.monotonic()
        try:
            return retrying(self.client.messages.create, **kwargs)
        except anthropic.AnthropicError as err:
            attempts = retrying.statistics.get("attempt_number", 1)
            prefix = f"anthropic {call_id}: "
            if is_transient(err):
                prefix += (
                    f"still failing after {attempts} attempt(s) over {time.monotonic() - t0:.1f}s "
                    f"(outage deadline {self.outage_deadline_s:.0f}s): "
                )
            raise LLMCallFailed(self._clean(prefix + self._describe(err))) from None

    def _describe(self, err: BaseException | None) -> str:
        if isinstance(err, anthropic.APIStatusError):
            detail = err.api_message or err.message
            kind = f" {err.type}" if err.type else ""
            return f"HTTP {err.status_code}{kind}: {detail} (request-id {err.request_id})"
        if isinstance(err, anthropic.APITimeoutError):
            return f"request timed out after {self.timeout_s:.0f}s"
        if isinstance(err, anthropic.APIConnectionError):
            cause = err.__cause__
            return f"connection error ({type(cause).__name__ if cause else 'unknown'}: {cause or err.message})"
        return f"{type(err).__name__}: {err}"

    def _clean(self, text: str) -> str:
        return one_line(scrub(text, self._key), limit=600)

    # -- the reply ------------------------------------------------------------------------------
    def _to_response(self, request: LLMRequest, message: Any, elapsed_s: float) -> LLMResponse:
        usage = usage_of(message)
        text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
        response = LLMResponse(
            text=text,
            stop_reason=message.stop_reason,
            model=message.model,
            request_id=getattr(message, "_request_id", None),
            usage=usage,
            cost_usd=cost_usd(request.model, usage, self.price_table),
            elapsed_s=elapsed_s,
            backend=self.name,
            raw=message.model_dump(mode="json"),
        )
        log.info(
            "anthropic %s: %s, %d in / %d out tokens (cache read %d, write %d), $%.4f, %.1fs",
            request.call_id,
            response.stop_reason,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
            response.cost_usd,
            elapsed_s,
        )
        where = f"anthropic {request.call_id} (request-id {response.request_id})"
        if message.stop_reason == "max_tokens":
            raise LLMCallFailed(
                f"{where}: reply cut at max_tokens={request.max_tokens} ({usage.output_tokens} tokens out); "
                "raise claude.max_tokens or ask for a shorter reply",
                response=response,
            )
        if message.stop_reason == "refusal":
            raise LLMCallFailed(f"{where}: the model refused to answer", response=response)
        if message.stop_reason not in OK_STOP_REASONS:
            raise LLMCallFailed(f"{where}: unexpected stop_reason {message.stop_reason!r}", response=response)
        if not text.strip():
            raise LLMCallFailed(f"{where}: empty reply (no text content)", response=response)
        return response
