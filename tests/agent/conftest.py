"""Fixtures for the rules tests: a base config, SlotResult lists of a small run, and a valid reply.

The run: block 1 = batches 1-3 (iterations 1-12) ran the base defaults; batch 4 (iterations 13-16)
opened block 2 with two mutations from root and two replicates. The valid reply answers batch 4.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config_policy import SlotTemplate, Trainable, apply_overlay, format_mutation, load_slot_template
from agent.reply_check import ReplyContext
from experiment.exploration import ROOT, Parent, SlotResult
from experiment.records import R2Row
from helpers.results import slot_result
from memory.variance import variance_table

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / "configs" / "flyvis_62_1_gs_alternate.yaml"


def _rows(peak: float, final: float) -> list[R2Row]:
    """An R2 log whose peak is at iteration 2560 (W-phase) and whose final value is ``final``."""
    return [
        R2Row(epoch=0, iteration=640, connectivity_r2=peak / 2, phase="W"),
        R2Row(epoch=0, iteration=1280, connectivity_r2=peak - 0.1, phase="W"),
        R2Row(epoch=0, iteration=1920, connectivity_r2=peak - 0.12, phase="V_rest"),
        R2Row(epoch=0, iteration=2560, connectivity_r2=peak, phase="W"),
        R2Row(epoch=0, iteration=3200, connectivity_r2=final, phase="V_rest"),
    ]


def make_result(
    iteration: int,
    trainable: Trainable,
    *,
    conn: float | None = 0.9,
    parent: Parent = ROOT,
    replicate_of: int | None = None,
    strategy: str = "baseline",
    n_iter_block: int = 12,
    minutes: float = 12.5,
    over_time: bool = False,
) -> SlotResult:
    """One node of this folder's run (the metrics the reply fixtures quote); ``conn=None`` makes a failed slot."""
    return slot_result(
        iteration,
        trainable=trainable,
        conn=conn if conn is not None else 0.0,
        failed=conn is None,
        tau=0.6 + 0.01 * (iteration % 7),
        vrest=0.1 + 0.005 * iteration,
        cluster=0.5,
        test_r2=0.8,
        pearson=0.95,
        minutes=minutes,
        rows=None if conn is None else _rows(conn + 0.02, conn),
        failure_reason="CUDA out of memory",
        parent=parent,
        replicate_of=replicate_of,
        strategy=strategy,
        mutation="",
        n_iter_block=n_iter_block,
        over_time_limit=over_time,
    )


@pytest.fixture
def template() -> SlotTemplate:
    return load_slot_template(BASE_CONFIG)


@pytest.fixture
def base(template: SlotTemplate) -> Trainable:
    return copy.deepcopy(template.trainable)


@pytest.fixture
def block1(base: Trainable) -> list[SlotResult]:
    """Iterations 1-12: the base defaults, conn_R2 0.31..0.42 (partial)."""
    return [make_result(i, base, conn=0.30 + 0.01 * i) for i in range(1, 13)]


@pytest.fixture
def batch4(base: Trainable) -> list[SlotResult]:
    """Iterations 13-16 (block 2, all parents root): two mutations, two replicates (one failed)."""
    c13 = apply_overlay(base, {"training": {"n_alternations": 6}}, "t")
    c14 = apply_overlay(base, {"training": {"alternate_lr_W": 1e-7}}, "t")
    results = [
        make_result(13, c13, conn=0.912, strategy="explore"),
        make_result(14, c14, conn=0.55, strategy="exploit"),
        make_result(15, base, conn=None, replicate_of=3, strategy="robustness-check"),
        make_result(16, base, conn=0.25, replicate_of=7, strategy="robustness-check"),
    ]
    for r in results:
        r.mutation = format_mutation(base, r.trainable, parent_id=r.parent, replicate_of=r.replicate_of)
    return results


@pytest.fixture
def make_ctx(base: Trainable, block1: list[SlotResult], batch4: list[SlotResult]) -> Callable[..., ReplyContext]:
    """Context of the reply to batch 4 (next batch 17-20 in block 2); keywords override fields."""

    def build(**overrides: Any) -> ReplyContext:
        fields: dict[str, Any] = {
            "is_start": False,
            "batch_results": batch4,
            "all_results": [*block1, *batch4],
            "next_iterations": [17, 18, 19, 20],
            "next_starts_block": False,
            "block": 2,
            "base_trainable": base,
            "n_iter_block": 12,
            "baseline_batches": 3,
            "time_limit_min": 60.0,
        }
        fields.update(overrides)
        return ReplyContext(**fields)

    return build


@pytest.fixture
def start_ctx(base: Trainable) -> ReplyContext:
    return ReplyContext(
        is_start=True, next_iterations=[1, 2, 3, 4], next_starts_block=True, block=1, base_trainable=base
    )


ENTRIES = """\
## Iter 13: converged
Node: id=13, parent=root
Mode/Strategy: explore
Config: lr_W=6E-4, lr=1.2E-3, lr_emb=1.55E-3, n_alt=6, vrest_ratio=0.5, alt_lr_W=6E-7, alt_lr_edge=1.2E-6, alt_lr_update=1.2E-6, alt_lr_emb=1.55E-6
Metrics: connectivity_R2=0.912, tau_R2=0.66, V_rest_R2=0.165, cluster_accuracy=0.5, test_R2=0.8, test_pearson=0.95, training_time_min=12.5
R2 trajectory: peak=0.932 at iter 2560, final=0.912, trend=decaying
Embedding: two loose clusters
Mutation: n_alternations: 4 -> 6
Parent rule: root (new block)
Observation: R2 dips during V_rest-phases
Variance update: {v13}
Next: parent=13

## Iter 14: partial
Node: id=14, parent=root
Mode/Strategy: exploit
Config: lr_W=6E-4, lr=1.2E-3, lr_emb=1.55E-3, n_alt=4, vrest_ratio=0.5, alt_lr_W=1E-7, alt_lr_edge=1.2E-6, alt_lr_update=1.2E-6, alt_lr_emb=1.55E-6
Metrics: connectivity_R2=0.550, tau_R2=0.60, V_rest_R2=0.170, cluster_accuracy=0.500, test_R2=0.800, test_pearson=0.950, training_time_min=12.50
R2 trajectory: peak=0.570 at iter 2560, final=0.550, trend=decaying
Embedding: no structure
Mutation: alternate_lr_W: 6e-07 -> 1e-07
Parent rule: root (new block)
Observation: lower alt_lr_W hurt
Variance update: {v14}
Next: parent=13

## Iter 15: failed
Node: id=15, parent=root
Mode/Strategy: robustness-check
Metrics: n/a
R2 trajectory: n/a
Mutation: [none] — robustness re-run of Node 3
Observation: slot failed (CUDA out of memory)
Next: parent=13

## Iter 16: failed
Node: id=16, parent=root
Mode/Strategy: robustness-check
Config: lr_W=6E-4, lr=1.2E-3, lr_emb=1.55E-3, n_alt=4, vrest_ratio=0.5, alt_lr_W=6E-7, alt_lr_edge=1.2E-6, alt_lr_update=1.2E-6, alt_lr_emb=1.55E-6
Metrics: connectivity_R2=0.25, tau_R2=0.62, V_rest_R2=0.18, cluster_accuracy=0.5, test_R2=0.8, test_pearson=0.95, training_time_min=12.5
R2 trajectory: peak=0.27 at iter 2560 (W), final=0.25, trend=decaying
Embedding: collapsed
Mutation: [none] — robustness re-run of Node 7
Parent rule: replicate of the baseline
Observation: baseline variance is large
Variance update: {v16}
Next: parent=root
"""

MEMORY = """\
### Knowledge Base
| param | effect |
|---|---|
| n_alternations | 6 better than 4 (1 run) |

### Current Block
Block 2: hypothesis: more alternations help.
"""

CONFIGS = """\
<config slot="0" parent="13" strategy="exploit">
training:
  alternate_vrest_ratio: 0.3
</config>
<config slot="1" parent="14" strategy="explore">
training:
  n_alternations: 8
</config>
<config slot="2" parent="13" replicate="13" strategy="robustness-check">
</config>
<config slot="3" parent="root" replicate="7" strategy="robustness-check">
</config>
"""


def variance_line(results: list[SlotResult], iteration: int) -> str:
    row = next(r for r in variance_table(results) if iteration in r.iterations)
    return f"{row.config_id} now has {row.runs} runs, CV(conn_R2)={row.conn_cv:.1f}%, CV(V_rest_R2)={row.vrest_cv:.1f}%"


@pytest.fixture
def valid_parts(block1: list[SlotResult], batch4: list[SlotResult]) -> dict[str, str]:
    """The three parts of a valid reply to batch 4 (edit one to make an invalid reply)."""
    results = [*block1, *batch4]
    entries = ENTRIES.format(**{f"v{i}": variance_line(results, i) for i in (13, 14, 16)})
    return {"entries": entries, "memory": MEMORY, "configs": CONFIGS}


def assemble(parts: dict[str, str]) -> str:
    return (
        "Analysis of batch 4.\n\n"
        f"<entries>\n{parts['entries']}</entries>\n\n<memory>\n{parts['memory']}</memory>\n\n{parts['configs']}"
    )


@pytest.fixture
def valid_reply(valid_parts: dict[str, str]) -> str:
    return assemble(valid_parts)


START_REPLY = """\
Plan: 12 baseline runs first.
<memory>
### Current Block
Block 1: variance baseline of the alternate defaults.
</memory>
<config slot="0" parent="root" strategy="baseline">
</config>
<config slot="1" parent="root" strategy="baseline">
</config>
<config slot="2" parent="root" strategy="baseline">
</config>
<config slot="3" parent="root" strategy="baseline">
</config>
"""


@pytest.fixture
def assemble_reply() -> Callable[[dict[str, str]], str]:
    return assemble


@pytest.fixture
def start_reply() -> str:
    return START_REPLY


@pytest.fixture
def result_factory() -> Callable[..., SlotResult]:
    return make_result
