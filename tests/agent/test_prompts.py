"""Instruction loading, system text, start / batch / re-ask prompts (golden files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config_policy import normalize_trainable
from agent.prompts import (
    BatchPromptInput,
    PromptError,
    StartPromptInput,
    load_instructions,
    metrics_line,
    render_batch_prompt,
    render_reask_prompt,
    render_start_prompt,
    trajectory_lines,
)
from agent.reply import ReplyContext, parse_reply, validate_reply
from experiment.records import Metrics, R2Row
from helpers.golden import assert_golden
from helpers.results import default_trainable, scenario, slot_result
from memory.documents import MemoryDocument, initial_memory

INSTRUCTIONS = "instruction_flyvis_62_1_gs_alternate.md"
BASE_CONFIG = "dataset: demo\ntraining:\n  alternate_training: true\n  n_alternations: 4\n"


def _memory() -> str:
    return initial_memory("demo", INSTRUCTIONS).render()


def _batch_ctx(batch_start: int, upto: int, **kw) -> BatchPromptInput:
    results = [r for r in scenario() if r.iteration <= upto]
    return BatchPromptInput(
        run_name="demo", results=results, batch_start=batch_start, n_iterations=48, memory_text=_memory(), **kw
    )


def test_load_instructions_by_name_builds_system_text_from_three_files():
    ins = load_instructions(INSTRUCTIONS)
    assert ins.parallel_path.endswith("instruction_flyvis_62_1_gs_alternate_parallel.md")
    assert ins.system_text.index("# Exploration instructions") < ins.system_text.index("# Parallel mode")
    assert ins.system_text.index("# Parallel mode") < ins.system_text.index("## Reply format")
    assert load_instructions(INSTRUCTIONS.removesuffix(".md")).system_text == ins.system_text


def test_load_instructions_from_a_path_needs_the_parallel_file(tmp_path: Path):
    base = tmp_path / "mine.md"
    base.write_text("base rules\n")
    with pytest.raises(PromptError, match=r"mine_parallel\.md"):
        load_instructions(base)
    (tmp_path / "mine_parallel.md").write_text("parallel rules\n")
    assert load_instructions(base).system_text.startswith("base rules\n\nparallel rules\n\n## Reply format")


def test_unknown_instruction_name_is_one_clear_error():
    with pytest.raises(PromptError, match="instruction file not found"):
        load_instructions("no_such_instructions")


def test_parallel_instructions_carry_the_addendum_rules():
    text = load_instructions(INSTRUCTIONS).parallel_text
    for rule in (
        "DIFFERENT results",
        "never change it",
        "Never change `alternate_training: true`",
        "At least 2 of the 4 slots are replicates",
        "Mutation: [none] — robustness re-run of Node X",
        ">= 4 runs",
        "NEVER `id+1`",
        "Healthy:",
        "Unhealthy:",
        "`## Iter N: failed`",
        "60 minutes",
        "12 baseline runs",
        "| Config ID | Runs | conn_R2 (mean +/- std) | CV | R2 trend |",
    ):
        assert rule in text, rule


def test_start_prompt_matches_golden():
    ctx = StartPromptInput(
        run_name="demo",
        n_iterations=48,
        base_config_name="flyvis_demo.yaml",
        base_config_text=BASE_CONFIG,
        config_files=[f"demo_{s:02d}.yaml" for s in range(4)],
        memory_text=_memory(),
    )
    text = render_start_prompt(ctx)
    assert text.startswith("PARALLEL START\n")
    assert "Batch iterations 1-4 / 48" in text and "Block info: block 1, iterations 1-4/12 within block" in text
    assert_golden("start_prompt.md", text)


def test_block_end_batch_prompt_matches_golden():
    text = render_batch_prompt(_batch_ctx(9, 12))
    assert "Block info: block 1, iterations 9-12/12 within block\n>>> BLOCK END <<<" in text
    assert "The next batch starts block 2" in text
    assert_golden("batch_prompt_block_end.md", text)


def test_mid_block_batch_prompt_matches_golden():
    text = render_batch_prompt(_batch_ctx(17, 20, user_input="Please try n_alternations 8."))
    assert "Block info: block 2, iterations 5-8/12 within block\n" in text
    assert ">>> BLOCK END <<<" not in text
    assert_golden("batch_prompt_block2.md", text)


def test_batch_prompt_flags_failed_and_over_time_slots():
    text = render_batch_prompt(_batch_ctx(13, 16))
    assert "### Slot 2 (iteration 15) [FAILED] CUDA out of memory (last log line)" in text
    assert "training_time_min=75.5000\nTraining time: 75.5 min — OVER TIME LIMIT (60 min)" in text
    assert "Over the time limit: node(s) 14." in text


def test_batch_prompt_carries_the_current_memory_text():
    ctx = _batch_ctx(1, 4)
    ctx.memory_text = ctx.memory_text.replace("(none yet)", "HUMAN EDIT: keep vrest_ratio at 0.5", 1)
    assert "HUMAN EDIT: keep vrest_ratio at 0.5" in render_batch_prompt(ctx)


def test_batch_prompt_names_images_in_attachment_order():
    text = render_batch_prompt(_batch_ctx(13, 16, image_slots=[3, 0]))
    assert "1. slot 3 (iteration 16): panel.png\n2. slot 0 (iteration 13): panel.png" in text


def test_batch_prompt_describes_the_panel_as_the_source_of_the_embedding_line():
    text = render_batch_prompt(_batch_ctx(13, 16, image_slots=[0]))
    assert "- panel.png: the trained slot on one page: top row the embedding a coloured by true cell type" in text
    assert "activity.png:" not in text


def test_batch_prompt_describes_the_activity_image_as_data_not_model_output():
    text = render_batch_prompt(_batch_ctx(13, 16, attached=[(0, "activity")]))
    assert "activity.png: the slot's training data as simulated, before any training" in text
    assert "shows nothing about the trained model" in text
    assert "true vs simulated" not in text


def test_batch_prompt_lists_extra_images_in_attachment_order_and_describes_each_kind():
    text = render_batch_prompt(_batch_ctx(13, 16, attached=[(0, "activity"), (0, "w_scatter"), (1, "rollout")]))
    assert (
        "1. slot 0 (iteration 13): activity.png\n2. slot 0 (iteration 13): W_corrected.png\n"
        "3. slot 1 (iteration 14): rollout.png\n" in text
    )
    assert "- W_corrected.png: the trained model's corrected weights W* (y) against the true W (x)" in text
    assert "- rollout.png: the trained model's autonomous test rollout (dashed)" in text


def test_diverged_rollout_gets_its_own_line_and_the_floored_test_r2():
    ctx = _batch_ctx(13, 16)
    r = next(r for r in ctx.results if r.iteration == 13)
    assert r.metrics is not None
    r.metrics = r.metrics.model_copy(update={"test_R2": -1.0, "rollout_diverged": True})
    text = render_batch_prompt(ctx)
    block = text.split("### Slot 0 (iteration 13)")[1].split("### Slot 1")[0]
    assert "test_R2=-1.0000" in block
    assert (
        "Test rollout: DIVERGED (the autonomous rollout reached the +-100 voltage clamp; test_R2 is floored at -1)"
        in block
    )
    assert text.count("Test rollout: DIVERGED") == 1


def test_baseline_batches_demand_defaults_and_later_batches_demand_replicates():
    assert "batch 2 of 3 baseline batches" in render_batch_prompt(_batch_ctx(1, 4))
    assert "at least 2 of the 4 configs are replicates" in render_batch_prompt(_batch_ctx(13, 16))


def test_last_batch_says_configs_are_not_run():
    results = [slot_result(i) for i in range(1, 5)]
    ctx = BatchPromptInput(run_name="r", results=results, batch_start=1, n_iterations=4, memory_text="m")
    assert "This was the last batch of the run" in render_batch_prompt(ctx)


def test_batch_start_without_result_is_rejected():
    with pytest.raises(ValueError, match="batch_start"):
        BatchPromptInput(run_name="r", results=[slot_result(1)], batch_start=5, n_iterations=8, memory_text="m")


def test_reask_prompt_carries_the_answered_prompt_errors_and_previous_reply_verbatim():
    """A stateless API call sees the batch results again, then the rejection."""
    text = render_reask_prompt(
        ["entry 5: Metrics: connectivity_R2=0.9 but measured 0.949", "slot 2: $bad"], "old $reply", "BATCH $prompt\n"
    )
    assert text.startswith("BATCH $prompt\n\n---\n\nREPLY REJECTED\n")
    assert "- entry 5: Metrics: connectivity_R2=0.9 but measured 0.949\n- slot 2: $bad" in text
    assert "<previous_reply>\nold $reply\n</previous_reply>" in text
    with pytest.raises(PromptError):
        render_reask_prompt([], "x", "p")


def test_batch_prompt_does_not_repeat_memorys_tables_but_keeps_llm_sections():
    doc = MemoryDocument.parse(_memory()).set_controller_sections("TABLE-X", "UCB-Y", "STATUS-Z")
    doc.replace_llm_sections({"Open Questions": "Q-LLM"})
    ctx = _batch_ctx(1, 4)
    ctx.memory_text = doc.render()
    text = render_batch_prompt(ctx)
    assert "TABLE-X" not in text and "UCB-Y" not in text
    assert "STATUS-Z" in text and "Q-LLM" in text


def _reply_copied_from(prompt: str, configs: str) -> str:
    """A reply whose entries copy every line the batch prompt offers for copying."""
    entries = []
    for block in prompt.split("### Slot ")[1:]:
        lines = dict(line.split(": ", 1) for line in block.split("\n\n")[0].splitlines()[1:] if ": " in line)
        node = lines["Node"].split(",")[0].removeprefix("id=")
        entries.append(
            "\n".join(
                [
                    f"## Iter {node}: {lines['Entry status']}",
                    *(f"{k}: {lines[k]}" for k in ("Node", "Mode/Strategy", "Config", "Metrics", "R2 trajectory")),
                    "Embedding: clusters visible",
                    f"Mutation: {lines['Mutation']}",
                    "Parent rule: highest UCB",
                    "Observation: as expected",
                    f"Variance update: {lines['Variance update']}",
                    "Next: parent=root",
                ]
            )
        )
    memory = "### Current Block\nHypothesis: n_alternations 6 helps.\n"
    return f"<entries>\n{chr(10).join(entries)}\n</entries>\n<memory>\n{memory}</memory>\n{configs}"


@pytest.mark.parametrize("batch_start", [13, 17])
def test_lines_copied_from_the_batch_prompt_pass_the_reply_validator(batch_start):
    results = [r for r in scenario() if r.iteration < batch_start + 4]
    prompt = render_batch_prompt(_batch_ctx(batch_start, batch_start + 3))
    configs = (
        '<config slot="0" parent="13" strategy="exploit">\ntraining:\n  n_alternations: 8\n</config>\n'
        '<config slot="1" parent="13" replicate="13" strategy="robustness-check">\n</config>\n'
        '<config slot="2" parent="14" replicate="14" strategy="robustness-check">\n</config>\n'
        '<config slot="3" parent="root" replicate="1" strategy="robustness-check">\n</config>\n'
    )
    ctx = ReplyContext(
        is_start=False,
        batch_results=results[-4:],
        all_results=results,
        next_iterations=list(range(batch_start + 4, batch_start + 8)),
        next_starts_block=False,
        block=2,
        base_trainable=normalize_trainable(default_trainable()),
    )
    assert validate_reply(parse_reply(_reply_copied_from(prompt, configs)), ctx) == []


def test_a_floored_test_r2_round_trips_through_the_metrics_line(valid_parts, assemble_reply, make_ctx, batch4):
    # an older record of a diverged rollout (test_R2 = -1.27e15) reads back floored; copying the printed
    # Metrics line passes the reply check
    r13 = batch4[0]
    assert r13.metrics is not None
    old = {**r13.metrics.model_dump(exclude={"rollout_diverged"}), "test_R2": -1.27e15}
    r13.metrics = Metrics.model_validate(old)
    line = metrics_line(r13)
    assert "test_R2=-1.0000," in line
    entries = valid_parts["entries"].replace("test_R2=0.8,", "test_R2=-1.0000,", 1)
    reply = parse_reply(assemble_reply({**valid_parts, "entries": entries}))
    assert [e for e in validate_reply(reply, make_ctx()) if "test_R2" in e] == []


def test_a_standard_training_trajectory_gets_no_phase_accounting() -> None:
    rows = [R2Row(epoch=0, iteration=it, connectivity_r2=r) for it, r in ((100, 0.2), (200, 0.5), (300, 0.6))]
    line, detail = trajectory_lines(slot_result(1, rows=rows))
    assert line == "R2 trajectory: peak=0.6000 at iter 300, final=0.6000, trend=rising"
    assert detail == "R2 points: 3 checkpoints, the last at iter 300 (one training phase)"
    phased = [r.model_copy(update={"phase": p}) for r, p in zip(rows, ("W", "W", "V_rest"), strict=True)]
    assert trajectory_lines(slot_result(1, rows=phased))[1].startswith("R2 phases: peak in phase V_rest")
