"""The controller's rewrite of memory.md: the Run Status section follows the protocol's rules."""

from __future__ import annotations

from agent.run_files import render_memory
from experiment.config import ClaudeConfig
from helpers.results import scenario
from memory.documents import MemoryDocument, initial_memory


def _run_status(time_limit_min: float) -> list[str]:
    claude = ClaudeConfig(n_iter_block=12, time_limit_min=time_limit_min)
    text, _ = render_memory(
        initial_memory("r", "i.md").render(), scenario(), {}, claude, n_iterations=48, user_input=None, batch=5
    )
    status = MemoryDocument.parse(text).section("Run Status")
    assert status is not None
    return status.splitlines()


def test_run_status_names_the_best_node_and_the_nodes_over_the_time_limit():
    lines = _run_status(time_limit_min=60)
    assert "Best node: 13 (connectivity_R2=0.9510)." in lines
    assert "Over the time limit (60 min): 14 (75.5 min)." in lines


def test_run_status_judges_the_time_limit_by_the_run_config():
    assert "Over the time limit (80 min): none." in _run_status(time_limit_min=80)
