"""The files of a run directory (PROTOCOL.md section 2): where each lives and how it is (re)written.

Everything here is derived from the journal and the slot folders, so a crashed step can simply be
applied again: each writer is idempotent and atomic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.profile import Profile
from agent.protocol import over_time
from agent.tree import best_node, block_span, render_ucb_scores, ucb_ranking
from experiment.atomic import atomic_write_json, atomic_write_text
from experiment.config import ClaudeConfig
from experiment.exploration import SlotResult, block_of, block_range
from memory.documents import (
    MemoryDocument,
    block_heading,
    format_user_input_ack,
    initial_memory,
    render_run_status,
    snapshot_memory,
)
from memory.variance import render_variance_table, variance_table

RUN_JSON = "run.json"
BASE_CONFIG = "base_config.yaml"
MEMORY = "memory.md"
ANALYSIS = "analysis.md"
UCB_SCORES = "ucb_scores.txt"
USER_INPUT = "user_input.md"


class RunFiles:
    """Paths and writers of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        info = self.read_run_info()
        self.name: str = info["name"] if info else "run"

    # ------------------------------------------------------------------ identity
    @property
    def run_json(self) -> Path:
        return self.dir / RUN_JSON

    @property
    def base_config(self) -> Path:
        return self.dir / BASE_CONFIG

    def read_run_info(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / RUN_JSON).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def write_run_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, info)
        self.name = info["name"]

    # ------------------------------------------------------------------ paths
    def slot_config(self, slot: int) -> Path:
        return self.dir / f"{self.name}_{slot:02d}.yaml"

    def iteration_config(self, iteration: int, slot: int) -> Path:
        return self.dir / "configs" / f"iter_{iteration:03d}_slot_{slot:02d}.yaml"

    def slot_dir(self, iteration: int, slot: int) -> Path:
        return self.dir / "slots" / f"iter_{iteration:03d}_slot_{slot:02d}"

    def data_dir(self, dataset: str) -> Path:
        return self.dir / "data" / dataset

    @property
    def memory(self) -> Path:
        return self.dir / MEMORY

    @property
    def analysis(self) -> Path:
        return self.dir / ANALYSIS

    @property
    def ucb_scores(self) -> Path:
        return self.dir / UCB_SCORES

    @property
    def tree_dir(self) -> Path:
        return self.dir / "exploration_tree"

    def block_tree_png(self, block: int) -> Path:
        return self.tree_dir / f"block_{block:02d}.png"

    @property
    def transcripts(self) -> Path:
        return self.dir / "transcripts"

    @property
    def slot_records(self) -> Path:
        return self.dir / "slot_records"

    # ------------------------------------------------------------------ memory.md
    def init_memory(self, instructions_name: str) -> None:
        if self.memory.exists():
            return
        doc = initial_memory(self.name, instructions_name)
        doc.set_controller_sections("(no runs yet)", "(no nodes yet)", "Iterations done: 0; no results yet.")
        doc.save(self.memory)

    def read_memory(self) -> str:
        return self.memory.read_text(encoding="utf-8") if self.memory.exists() else ""

    # ------------------------------------------------------------------ user input
    def read_user_input(self) -> str | None:
        path = self.dir / USER_INPUT
        if not path.exists():
            return None
        text = path.read_text(encoding="utf-8")
        return text if text.strip() else None

    def archive_user_input(self, batch: int) -> None:
        """Move a consumed user_input.md aside (kept, never deleted) so it is passed only once."""
        path = self.dir / USER_INPUT
        if path.exists():
            target = self.dir / "user_inputs" / f"after_batch_{batch:03d}.md"
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)

    # ------------------------------------------------------------------ analysis.md
    def write_analysis(self, text: str) -> None:
        if not self.analysis.exists() or self.analysis.read_text(encoding="utf-8") != text:
            atomic_write_text(self.analysis, text)

    # ------------------------------------------------------------------ block end
    def end_block(self, block: int) -> None:
        """Snapshot memory.md for the block. Its tree plot is the controller's to draw (agent.views.plots):
        the views read the run files, so the run files never import a view."""
        snapshot_memory(self.dir, block)

    # ------------------------------------------------------------------ summaries
    def batch_summary(self, results: list[SlotResult], batch: int) -> str:
        lines = [f"Batch {batch} summary ({self.dir}):"]
        for r in sorted((r for r in results if r.batch == batch), key=lambda r: r.slot):
            if r.metrics is None:
                lines.append(f"  iteration {r.iteration} slot {r.slot}: FAILED ({r.failure_reason})")
            else:
                m = r.metrics
                lines.append(
                    f"  iteration {r.iteration} slot {r.slot} [{r.strategy}] {r.mutation or '-'}: "
                    f"conn_R2={m.connectivity_R2:.3f} tau_R2={m.tau_R2:.3f} V_rest_R2={m.V_rest_R2:.3f}"
                )
        lines.append(f"  memory: {self.memory}   analysis: {self.analysis}   user input: {self.dir / USER_INPUT}")
        return "\n".join(lines)


def render_analysis(replies: Iterable[tuple[int, str]], name: str, n_iter_block: int, n_slots: int) -> str:
    """analysis.md from the accepted replies (``RunState.analysis_entries()``: source batch and entries text, in
    journal order): a title, then per batch reply its block heading and entries."""
    chunks = [f"# Analysis log: {name}\n"]
    for batch, entries in replies:
        if batch == 0 or not entries.strip():
            continue
        first = block_range(batch, n_slots)[0]  # a batch is a block of n_slots iterations
        block = block_of(first, n_iter_block)
        if batch == 1 or block_of(first - n_slots, n_iter_block) != block:
            chunks.append(block_heading(block, *block_range(block, n_iter_block)) + "\n")
        chunks.append(entries.strip("\n") + "\n")
    return "\n".join(chunks)


def render_memory(
    memory_text: str,
    results: list[SlotResult],
    memory_sections: dict[str, str],
    claude: ClaudeConfig,
    *,
    n_iterations: int,
    user_input: str | None,
    batch: int,
    profile: Profile | None = None,
) -> tuple[str, str | None]:
    """memory.md after a batch (LLM sections from the reply, controller sections recomputed), and the
    ucb_scores.txt text (None before the first result)."""
    doc = MemoryDocument.parse(memory_text)
    if memory_sections:
        doc.replace_llm_sections(memory_sections)
    ucb_text = None
    if results:
        block = block_of(max(r.iteration for r in results), claude.n_iter_block)
        first, last = block_span(results, block)
        ucb_text = render_ucb_scores(
            ucb_ranking(results, block, claude.ucb_c, claude.ucb_reward, profile), block, first, last, claude.ucb_c
        )
        variance_md = render_variance_table(variance_table(results))
    else:
        variance_md = "(no runs yet)"
    ack = None
    if user_input is not None:
        next_first = batch * claude.n_slots + 1  # the user input steers the batch after this one
        ack = format_user_input_ack(user_input, next_first if next_first <= n_iterations else 0)
    doc.set_controller_sections(
        variance_md,
        ucb_text.rstrip("\n") if ucb_text else "(no nodes yet)",
        render_run_status(
            results,
            n_iterations,
            claude.n_iter_block,
            best=best_node(results, profile),
            over_limit=[r for r in results if over_time(r, claude.time_limit_min)],
            time_limit_min=claude.time_limit_min,
        ),
        ack,
    )
    return doc.render(), ucb_text


def write_controller_files(
    files: RunFiles,
    results: list[SlotResult],
    memory_sections: dict[str, str],
    claude: ClaudeConfig,
    *,
    n_iterations: int,
    user_input: str | None,
    batch: int,
    profile: Profile | None = None,
) -> None:
    """Rewrite memory.md and ucb_scores.txt after an accepted reply (idempotent)."""
    memory_text, ucb_text = render_memory(
        files.read_memory(),
        results,
        memory_sections,
        claude,
        n_iterations=n_iterations,
        user_input=user_input,
        batch=batch,
        profile=profile,
    )
    atomic_write_text(files.memory, memory_text)
    if ucb_text is not None:
        atomic_write_text(files.ucb_scores, ucb_text)
