"""Build the backend a run asked for, wrapped with budget and transcript recording.

Composition: ``RecordingBackend(BudgetedBackend(inner))`` so every paid call is checked against the
budget first, then recorded (failures too); a call already recorded with the same fingerprint is
served from its transcript without touching the budget (resume). Replay records nothing unless it
reads from another run's transcripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import httpx2

from agent.llm.base import LLMBackend, LLMConfigError
from agent.llm.budget import Budget, BudgetedBackend
from agent.llm.offline import OfflineBackend, OfflinePolicy
from agent.llm.replay import ReplayBackend
from agent.llm.transcripts import RecordingBackend, TranscriptStore
from experiment.config import ClaudeConfig

BackendName = Literal["anthropic", "claude-cli", "replay", "offline", "optuna"]
BACKEND_NAMES: tuple[str, ...] = ("anthropic", "claude-cli", "replay", "offline", "optuna")
CLI_HOME = "claude_home"  # the claude CLI's HOME in the run directory (claude.cli_home: run)


def _inner_backend(
    name: str,
    settings: ClaudeConfig,
    *,
    offline_policy: OfflinePolicy | None,
    http_client: httpx2.Client | None,
    claude_executable: str,
    run_dir: Path | None = None,
) -> LLMBackend:
    if name == "anthropic":
        from agent.llm.anthropic_backend import AnthropicBackend

        return AnthropicBackend(
            model=settings.model,
            max_tokens=settings.max_tokens,
            max_retries=settings.max_retries,
            timeout_s=settings.request_timeout_s,
            prompt_cache=settings.prompt_cache,
            outage_deadline_s=settings.outage_deadline_min * 60.0,
            price_table=settings.price_per_mtok,
            http_client=http_client,
        )
    if name == "claude-cli":
        from agent.llm.claude_cli import ClaudeCliBackend

        return ClaudeCliBackend(
            settings.model,
            settings.request_timeout_s,
            executable=claude_executable,
            home=None if settings.cli_home == "user" else (run_dir or Path.cwd()) / CLI_HOME,
            max_retries=settings.max_retries,
        )
    if name == "offline":
        if offline_policy is None:
            raise LLMConfigError("--llm offline: no offline policy was given to the backend factory")
        return OfflineBackend(offline_policy)
    if name == "optuna":
        if run_dir is None:
            raise LLMConfigError("--llm optuna: the backend factory needs the run directory (the study lives there)")
        from agent.llm.optuna_backend import OptunaBackend

        return OptunaBackend(run_dir)
    raise LLMConfigError(f"--llm: unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def make_backend(
    name: BackendName | str,
    settings: ClaudeConfig,
    *,
    transcripts_dir: str | Path,
    offline_policy: OfflinePolicy | None = None,
    replay_dir: str | Path | None = None,
    allow_prompt_drift: bool = False,
    budget: Budget | None = None,
    http_client: httpx2.Client | None = None,
    claude_executable: str = "claude",
) -> LLMBackend:
    """The run's backend. ``budget`` (made from settings and restored from the transcripts when omitted)
    is shared with the caller so it can report spend; ``http_client`` is for tests of the API backend."""
    store = TranscriptStore(transcripts_dir)
    if name == "replay":
        source = Path(replay_dir) if replay_dir is not None else store.folder
        if not source.is_dir():
            raise LLMConfigError(f"--llm replay: transcripts folder {source} does not exist")
        replay = ReplayBackend(TranscriptStore(source), strict=True, allow_prompt_drift=allow_prompt_drift)
        if source.resolve() == store.folder.resolve():
            return replay
        return RecordingBackend(replay, store, reuse=False)
    inner = _inner_backend(
        name,
        settings,
        offline_policy=offline_policy,
        http_client=http_client,
        claude_executable=claude_executable,
        run_dir=store.folder.parent,  # transcripts live in RUN_DIR/transcripts
    )
    if budget is None:
        budget = Budget(settings.budget_usd, settings.budget_tokens)
        budget.restore(store)
    return RecordingBackend(BudgetedBackend(inner, budget), store)


def preflight(backend: LLMBackend) -> list[str]:
    """Check, before any data generation or training, that the backend can answer at all.

    The API backend asks the Models API about the key and the model; the CLI backend makes one tiny
    call. Raises LLMConfigError (one line) when it cannot work; returns warnings (deprecated model,
    the CLI answering with another model). Replay and offline backends need no check.
    """
    inner: object = backend
    while not hasattr(inner, "preflight") and hasattr(inner, "inner"):
        inner = inner.inner
    check = getattr(inner, "preflight", None)
    if check is None:
        return []
    return list(check())
