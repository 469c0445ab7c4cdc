"""Fixtures: a synthetic run directory for the plots / report / status / live tests.

The run: 16 iterations, 4 slots, ``n_iter_block`` 8 (so two blocks). Batches 1-2 run the base config;
batch 3 opens block 2 with two mutations from root and two replicates; batch 4 mutates node 17-ish
children and has one failed slot. Every file is written with the project's own writers and models
(Journal, write_metrics, write_status, format_r2_row, MemoryDocument), so a schema change there breaks
these tests instead of silently drifting from them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.config_policy import format_mutation, load_slot_template
from agent.events import parse_event
from agent.journal import Journal
from agent.run_files import RunFiles, render_analysis
from agent.run_state import RunState
from experiment.atomic import atomic_write_text
from experiment.exploration import ROOT, SlotResult
from experiment.records import (
    R2_HEADER,
    R2_LOG,
    SLOT_LOG,
    R2Row,
    SlotStatus,
    format_r2_row,
    write_metrics,
    write_status,
)
from helpers.results import slot_result
from memory.documents import initial_memory

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "flyvis_tiny.yaml"
NAME = "synth"
N_ITER = 16
N_SLOTS = 4
N_ITER_BLOCK = 8
BUDGET = 20.0
COST_PER_CALL = 0.75

# iteration -> (parent, replicate_of, n_alternations, conn or None for a failed slot)
PLAN: dict[int, tuple[Any, int | None, int, float | None]] = {
    **{it: (ROOT, None, 4, 0.80 + 0.01 * it) for it in range(1, 9)},
    9: (ROOT, None, 6, 0.91),
    10: (ROOT, None, 8, 0.85),
    11: (ROOT, None, 4, 0.88),  # a baseline re-run from root in the new block
    12: (9, 9, 6, 0.93),
    13: (12, None, 2, 0.70),
    14: (9, None, 8, None),
    15: (12, 12, 6, 0.92),
    16: (10, 10, 8, 0.86),
}


def r2_rows(conn: float) -> list[R2Row]:
    """Four checkpoints alternating W / V_rest phases, ending at ``conn`` (peak before the end)."""
    pts = [(100, 0.4 * conn, "W"), (200, 0.9 * conn, "V_rest"), (300, conn + 0.02, "W"), (400, conn, "V_rest")]
    return [R2Row(epoch=0, iteration=i, connectivity_r2=v, phase=p) for i, v, p in pts]


def cut_at(events: list[tuple[str, dict[str, Any]]], type_: str, **match: Any) -> list[tuple[str, dict[str, Any]]]:
    """The events up to (excluding) the first one of ``type_`` matching ``match``."""
    for k, (t, data) in enumerate(events):
        if t == type_ and all(data.get(key) == v for key, v in match.items()):
            return events[:k]
    raise AssertionError(f"no {type_} event matching {match}")


class SyntheticRun:
    """Builds the run directory step by step; ``events`` is the full journal in controller order.

    Tests reach the module's helpers and constants through this object (test modules do not import conftest).
    """

    budget = BUDGET
    cost_per_call = COST_PER_CALL
    cut_at = staticmethod(cut_at)
    r2_rows = staticmethod(r2_rows)

    def __init__(self, root: Path) -> None:
        self.dir = root / "run"
        self.dir.mkdir(parents=True)
        self.files = RunFiles(self.dir)
        text = TINY.read_text(encoding="utf-8").replace("n_iter_block: 12", f"n_iter_block: {N_ITER_BLOCK}")
        text = text.replace("max_reasks: 2", f"max_reasks: 2\n  budget_usd: {BUDGET}")
        atomic_write_text(self.files.base_config, text)
        self.template = load_slot_template(self.files.base_config)
        self.files.write_run_info(
            {"name": NAME, "instructions": "instr.md", "config": str(TINY), "n_iterations": N_ITER, "llm": "offline"}
        )
        self.results = [self._result(it) for it in sorted(PLAN)]

    # ------------------------------------------------------------------ models
    def trainable(self, n_alt: int) -> dict[str, dict[str, Any]]:
        t = copy.deepcopy(self.template.trainable)
        t["training"]["n_alternations"] = n_alt
        return t

    def _result(self, it: int) -> SlotResult:
        parent, rep, n_alt, conn = PLAN[it]
        parent_t = self.template.trainable if parent == ROOT else self.trainable(PLAN[parent][2])
        return slot_result(
            it,
            n_slots=N_SLOTS,
            n_iter_block=N_ITER_BLOCK,
            parent=parent,
            replicate_of=rep,
            strategy="baseline" if it <= 8 else ("robustness-check" if rep else "exploit"),
            mutation=format_mutation(parent_t, self.trainable(n_alt), parent_id=parent, replicate_of=rep),
            trainable=self.trainable(n_alt),
            failed=conn is None,
            failure_reason="TrainingFailed: loss is NaN at step 120",
            conn=conn or 0.0,
            tau=0.9,
            vrest=0.3 + 0.01 * it,
            cluster=0.7,
            test_r2=0.8,
            pearson=0.95,
            minutes=2.0 + it / 10,
            rows=r2_rows(conn) if conn is not None else None,
        )

    def planned(self, batch: int) -> list[dict[str, Any]]:
        keys = ("iteration", "slot", "batch", "block", "parent", "replicate_of", "strategy", "trainable", "mutation")
        return [
            {k: v for k, v in r.model_dump(mode="json").items() if k in keys} for r in self.results if r.batch == batch
        ]

    # ------------------------------------------------------------------ events
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        ev: list[tuple[str, dict[str, Any]]] = [
            ("run_started", {"name": NAME, "n_iterations": N_ITER, "n_slots": N_SLOTS, "llm": "offline"})
        ]
        n_batches = N_ITER // N_SLOTS
        for batch in range(n_batches + 1):
            for r in (r for r in self.results if r.batch == batch):
                ev.append(("slot_submitted", {"iteration": r.iteration, "slot": r.slot, "handle": self._handle(r)}))
            for r in (r for r in self.results if r.batch == batch):
                ev.append(("slot_finished", {"iteration": r.iteration, "result": r.model_dump(mode="json")}))
            call = "start" if batch == 0 else f"batch-{batch:03d}"
            ev.append(("memory_read", {"batch": batch, "text": "mem", "user_input": None}))
            ev.append(("llm_response", self._llm(batch, call)))
            ev.append(
                (
                    "reply_accepted",
                    {
                        "source_batch": batch,
                        "for_batch": batch + 1,
                        "call_id": call,
                        "entries": "" if batch == 0 else self._entries(batch),
                        "memory": {},
                        "planned": self.planned(batch + 1),
                    },
                )
            )
            if batch < n_batches:
                ev.append(("configs_applied", {"batch": batch + 1}))
            ev.append(("analysis_applied", {"batch": batch}))
        ev.append(("run_finished", {"n_iterations": N_ITER}))
        return ev

    def _handle(self, r: SlotResult) -> dict[str, Any]:
        out = self.files.slot_dir(r.iteration, r.slot)
        return {"backend": "local", "job_id": "1", "name": out.name, "out_dir": str(out), "submitted_at": "2025"}

    @staticmethod
    def _llm(batch: int, call_id: str) -> dict[str, Any]:
        usage = {
            "input_tokens": 1000,
            "output_tokens": 500,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        return {
            "batch": batch,
            "call_id": call_id,
            "text": "reply",
            "backend": "offline",
            "usage": usage,
            "cost_usd": COST_PER_CALL,
            "request_id": None,
        }

    def _entries(self, batch: int) -> str:
        return "\n\n".join(
            f"## Iter {r.iteration}: {'failed' if r.status == 'failed' else 'converged'}\n"
            f"Node: id={r.iteration}, parent={r.parent}\nMutation: {r.mutation}\nNext: parent={r.iteration}"
            for r in self.results
            if r.batch == batch
        )

    # ------------------------------------------------------------------ writing
    def write(self, events: list[tuple[str, dict[str, Any]]]) -> Journal:
        """Write the journal and the files those events imply (slot folders, memory.md, analysis.md)."""
        journal = Journal(self.dir)
        for type_, data in events:
            journal.append(parse_event({"type": type_, **data}))
            if type_ == "slot_finished":
                self.write_slot(SlotResult.model_validate(data["result"]))
        doc = initial_memory(NAME, "instr.md")
        doc.set_controller_sections("| Config ID |\n|---|\n| C1 |", "Node 1: UCB=1.0", "Iterations done: 16/16.")
        doc.save(self.files.memory)
        self.files.write_analysis(
            render_analysis(RunState.from_events(journal.events).analysis_entries(), NAME, N_ITER_BLOCK, N_SLOTS)
        )
        return journal

    def write_slot(self, r: SlotResult) -> Path:
        out = self.files.slot_dir(r.iteration, r.slot)
        out.mkdir(parents=True, exist_ok=True)
        ok = r.status == "completed"
        write_status(
            out,
            SlotStatus(
                state="succeeded" if ok else "failed",
                exit_code=0 if ok else 1,
                started_at="2025-01-01T00:00:00+00:00",
                ended_at="2025-01-01T00:03:00+00:00",
            ),
        )
        if ok and r.metrics is not None:
            write_metrics(out, r.metrics)
            atomic_write_text(out / R2_LOG, R2_HEADER + "\n" + "".join(map(format_r2_row, r2_rows(r.conn_r2))))
            write_tiny_png(out / "activity.png")
        atomic_write_text(out / SLOT_LOG, "simulate: done\ntrain: 400/400 (100%) 12s conn_R2=0.9\n")
        return out

    def write_running(self, iteration: int, slot: int, done: int, total: int, seconds: int) -> Path:
        """A slot still training: status running, slot.log with a progress line."""
        out = self.files.slot_dir(iteration, slot)
        out.mkdir(parents=True, exist_ok=True)
        write_status(out, SlotStatus(state="running", started_at="2025-01-01T00:00:00+00:00"))
        pct = 100 * done // total
        atomic_write_text(out / SLOT_LOG, f"generating data\ntrain: {done}/{total} ({pct}%) {seconds}s conn_R2=0.5\n")
        return out


def write_tiny_png(path: Path) -> None:
    """An 8x8 PNG written by matplotlib (no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.imsave(path, np.linspace(0, 1, 64).reshape(8, 8))


@pytest.fixture
def synth(tmp_path: Path) -> SyntheticRun:
    """A run directory with run.json and base_config.yaml only; tests write the journal they need."""
    return SyntheticRun(tmp_path)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    """The whole 16-iteration run written once; tests must not modify it."""
    run = SyntheticRun(tmp_path_factory.mktemp("finished"))
    run.write(run.events())
    return run
