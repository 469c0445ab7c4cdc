"""agent.protocol: each rule stated once, and what the LLM is told, checked against and the offline policy does follow it.

Uses the rules fixtures of conftest.py: block 1 (iterations 1-12, base defaults) and batch 4 (iterations 13-16,
block 2); slot 0 of batch 4 (iteration 13) measured connectivity_R2 = 0.912.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent import protocol
from agent.llm.offline_policy import OfflinePlanner
from agent.prompts import (
    BatchPromptInput,
    StartPromptInput,
    load_instructions,
    render_batch_prompt,
    render_start_prompt,
)
from agent.reply import ReplyContext, parse_reply, validate_reply
from experiment.exploration import SlotResult
from memory import variance
from memory.documents import initial_memory
from memory.variance import variance_table

INSTRUCTIONS = "instruction_flyvis_62_1_gs_alternate.md"


def _memory() -> str:
    return initial_memory("demo", INSTRUCTIONS).render()


def _batch_prompt(results: list[SlotResult]) -> str:
    """What the LLM receives after batch 4: the system text and the batch prompt."""
    ctx = BatchPromptInput(run_name="demo", results=results, batch_start=13, n_iterations=48, memory_text=_memory())
    return load_instructions(INSTRUCTIONS).system_text + render_batch_prompt(ctx)


def _start_prompt() -> str:
    """What the LLM receives at PARALLEL START: the system text and the start prompt."""
    ctx = StartPromptInput(
        run_name="demo",
        n_iterations=48,
        base_config_name="demo.yaml",
        base_config_text="dataset: demo\n",
        config_files=[f"demo_{s:02d}.yaml" for s in range(4)],
        memory_text=_memory(),
    )
    return load_instructions(INSTRUCTIONS).system_text + render_start_prompt(ctx)


def test_patched_status_threshold_changes_prompt_check_and_offline_policy_together(
    monkeypatch: pytest.MonkeyPatch,
    block1: list[SlotResult],
    batch4: list[SlotResult],
    valid_reply: str,
    make_ctx: Callable[..., ReplyContext],
):
    node13 = batch4[0]

    def observe() -> tuple[bool, list[str], str]:
        prompt = _batch_prompt([*block1, *batch4])
        slot0 = prompt[prompt.index("### Slot 0 (iteration 13)") :]
        told_converged = slot0.splitlines()[1] == "Entry status: converged"
        errors = validate_reply(parse_reply(valid_reply), make_ctx())
        offline_head = OfflinePlanner(make_ctx()).entry(node13).splitlines()[0]
        return told_converged, errors, offline_head

    assert observe() == (True, [], "## Iter 13: converged")
    monkeypatch.setattr(protocol, "CONVERGED", 0.95)
    told_converged, errors, offline_head = observe()
    assert not told_converged
    assert "connectivity_R2 > 0.95, `partial` for 0.3-0.95" in _batch_prompt([*block1, *batch4])
    assert errors == [
        "Iter 13: status 'converged' but measured connectivity_R2=0.912 is 'partial' "
        "(converged > 0.95, partial 0.3-0.95, failed < 0.3)"
    ]
    assert offline_head == "## Iter 13: partial"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _stated_rules(rows_need: int) -> dict[str, tuple[str, list[str]]]:
    """rule -> (which prompt: start/batch/both, the texts that state it), all built from agent.protocol."""
    coupled = [f"`{k}` = {offset} + embedding_dim" for k, offset in protocol.COUPLED.items()]
    ranges = [f"from {low:g} to {high:g}" for low, high in protocol.EXTRA_RANGES.values()]
    range_names = [
        "`coeff_*`" if k.split(".", 1)[1].startswith("coeff_") else f"`{k.split('.', 1)[1]}`"
        for k in protocol.EXTRA_RANGES
    ]
    growth = [k.split(".", 1)[1] for k in protocol.GROWTH_KEYS]
    return {
        "status thresholds": (
            "both",
            [
                f"> {protocol.CONVERGED:g}",
                f"{protocol.PARTIAL:g}-{protocol.CONVERGED:g}",
                f"below {protocol.PARTIAL:g}",
            ],
        ),
        "config line labels": ("both", [f"{label}=" for label, _ in protocol.CONFIG_LINE_KEYS]),
        "baseline batches": ("start", [f"defaults for {protocol.BASELINE_BATCHES} batches"]),
        "replicate quota": ("batch", [protocol.replicate_rule_text(), f"at least {rows_need} of the 4 configs"]),
        "blocked keys": (
            "both",
            [f"`{k}" for k in protocol.BLOCKED_TOP] + [f"`{k.split('.', 1)[1]}`" for k in protocol.BLOCKED_KEYS],
        ),
        "ranges": ("both", ranges + range_names),
        "coupled sizes": ("both", coupled),
        "growth keys (system text)": ("both", [f"`{name}`" for name in growth]),
        "growth keys (over-time line)": ("batch", [f"must not grow {', '.join(growth[:-1])} or {growth[-1]}"]),
        "time limit": (
            "batch",
            [f"OVER TIME LIMIT ({protocol.TIME_LIMIT_MIN:g} min)", f"{protocol.TIME_LIMIT_MIN:g} minutes"],
        ),
        "block size": ("both", [f"/{protocol.N_ITER_BLOCK} within block"]),
        "UCB constant": ("batch", [f"c={protocol.UCB_C:g}"]),
        "replicate stopping rule": ("batch", [protocol.stopping_rule_text(), "| Enough runs? |"]),
    }


def test_every_enforced_rule_is_stated_in_the_prompt_the_llm_receives(
    block1: list[SlotResult], batch4: list[SlotResult]
):
    batch4[1].over_time_limit = True  # node 14 over the time limit: the growth rule applies to its children
    results = [*block1, *batch4]
    prompts = {"start": _flat(_start_prompt()), "batch": _flat(_batch_prompt(results))}
    missing = [
        f"{rule} ({where}): {text!r}"
        for rule, (which, texts) in _stated_rules(protocol.replicates_required(variance_table(results))).items()
        for where in (("start", "batch") if which == "both" else (which,))
        for text in texts
        if _flat(text) not in prompts[where]
    ]
    assert missing == []


def test_the_shipped_instruction_files_state_the_numbers_the_protocol_enforces():
    """The instruction files are the user's prose; every number they repeat must be the enforced one."""
    instructions = load_instructions(INSTRUCTIONS)
    base, parallel = _flat(instructions.base_text), _flat(instructions.parallel_text)
    robust = variance.ROBUST_RULES
    stated = {
        "base": [
            f"`converged`: > {protocol.CONVERGED:g}",
            f"`partial`: {protocol.PARTIAL:g} to {protocol.CONVERGED:g}",
            f"`failed`: < {protocol.PARTIAL:g}",
            f"**robust** (needs >= {variance.ROBUST_MIN_RUNS} runs)",
            f"conn_R2 CV < {robust['conn'][0]:g}% and min > {robust['conn'][1]:.2f}",
            f"tau_R2 CV < {robust['tau'][0]:g}% and min > {robust['tau'][1]:.2f}",
            f"V_rest_R2 CV < {robust['vrest'][0]:g}% and min > {robust['vrest'][1]:.2f}",
            f"cluster CV < {robust['cluster'][0]:g}% and min > {robust['cluster'][1]:.2f}",
            f"any CV > {variance.FRAGILE_CV:g}%",
        ],
        "parallel": [
            f"At least {protocol.GROWTH_REPLICATES} of the 4 slots are replicates until each of the top "
            f"{protocol.TOP_CONFIGS} configs of the variance table has >= {protocol.TOP_MIN_RUNS} runs",
            f"at least {protocol.STEADY_REPLICATES} replicate slot per batch",
            f"has >= {protocol.ENOUGH_RUNS} runs",
            f"the std of the CV estimate below {protocol.CV_STD_MAX:g} percentage points",
            f"({protocol.TIME_LIMIT_MIN:g} minutes unless the prompt says otherwise)",
            *(
                f"`{key.split('.', 1)[1]}`"
                for key in protocol.GROWTH_KEYS
                if "hidden" not in key and "n_layers" not in key
            ),
        ],
    }
    texts = {"base": base, "parallel": parallel}
    missing = [f"{where}: {text!r}" for where, items in stated.items() for text in items if text not in texts[where]]
    assert missing == []


def test_the_stopping_rule_marks_the_configs_with_enough_runs_in_the_prompt(
    monkeypatch: pytest.MonkeyPatch, block1: list[SlotResult], batch4: list[SlotResult]
):
    """C1 (12 baseline runs) is far from a determined CV; a patched threshold flips the mark the prompt shows."""
    results = [*block1, *batch4]
    c1 = variance_table(results)[0]
    assert c1.runs >= protocol.ENOUGH_RUNS and c1.verdict in protocol.CLEAR_VERDICTS
    line = next(ln for ln in _batch_prompt(results).splitlines() if ln.startswith("| C1 | ") and "pp |" in ln)
    est = c1.cv_estimate("conn")
    assert line == (
        f"| C1 | {c1.runs} | {c1.conn_cv:.1f}% | {est.std:.1f} pp | {est.low:.1f}-{est.high:.1f}% "
        f"| no: CV std {est.std:.1f} >= 2 pp |"
    )
    assert not protocol.has_enough_runs(c1)
    monkeypatch.setattr(protocol, "CV_STD_MAX", est.std + 0.1)
    assert protocol.has_enough_runs(c1)
    assert line.rsplit("|", 2)[0] + "| yes |" in _batch_prompt(results)
