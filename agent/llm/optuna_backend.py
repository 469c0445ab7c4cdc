"""Optuna backend: the Optuna policy (agent.llm.optuna_policy) stands in for the model, like the offline one."""

from __future__ import annotations

from pathlib import Path

from agent.llm.offline import OfflineBackend


class OptunaBackend(OfflineBackend):
    """Replies from an Optuna study kept in the run directory; zero usage and cost."""

    name = "optuna"

    def __init__(self, run_dir: str | Path, seed: int | None = None) -> None:
        from agent.llm.optuna_policy import OptunaPolicy

        super().__init__(OptunaPolicy(run_dir, seed))
