"""The reply validator: every check of PROTOCOL.md section 4 and the addendum's strategy rules."""

from __future__ import annotations

import pytest

from agent.reply import ReplyRejected, check_reply, classify, parse_reply, resolve_proposals, validate_reply
from helpers.replies import errors_of


def edited(parts, assemble_reply, part, old, new, count=1):
    assert old in parts[part], f"fixture text lacks {old!r}"
    changed = dict(parts)
    changed[part] = parts[part].replace(old, new, count)
    return assemble_reply(changed)


# ---------------------------------------------------------------------------------------------- whole replies


def test_valid_reply_passes(valid_reply, make_ctx):
    assert errors_of(valid_reply, make_ctx()) == []


def test_start_reply_with_defaults_passes(start_reply, start_ctx):
    assert errors_of(start_reply, start_ctx) == []


def test_bad_reply_is_rejected_with_precise_messages_and_corrected_reply_passes(valid_parts, assemble_reply, make_ctx):
    bad = dict(valid_parts)
    bad["configs"] = bad["configs"].replace(
        "  alternate_vrest_ratio: 0.3\n",
        "  alternate_vrest_ratio: 0.3\n  learning_rate_W_start: 1.0e-3\nsimulation:\n  n_frames: 1000\ndataset: other\n",
    )
    bad["entries"] = (
        bad["entries"]
        .replace("Mutation: n_alternations: 4 -> 6", "Mutation: n_alternations: 4 -> 8")
        .replace("connectivity_R2=0.912,", "connectivity_R2=0.95,")
        .replace("training_time_min=12.50", "training_time_min=12.50, foo_R2=0.3")
    )
    errors = errors_of(assemble_reply(bad), make_ctx())
    expected = [
        "config slot 0: training.learning_rate_W_start: 0.0006 -> 0.001: blocked (active-phase learning rates are fixed)",
        "config slot 0: simulation.n_frames: blocked (simulation parameters are fixed)",
        "config slot 0: dataset: blocked (the dataset field routes the slot's data and is fixed per slot)",
        "Iter 13: Mutation: says 'n_alternations: 4 -> 8' but the config differs from the base config "
        "(parent root) by 'n_alternations: 4 -> 6'",
        "Iter 13: Metrics: connectivity_R2=0.95 but measured 0.912",
        "Iter 14: Metrics: 'foo_R2' is not a measured metric (hallucinated metric)",
    ]
    assert sorted(errors) == sorted(expected)
    with pytest.raises(ReplyRejected) as exc:
        check_reply(assemble_reply(bad), make_ctx())
    assert exc.value.errors == errors
    assert errors_of(assemble_reply(valid_parts), make_ctx()) == []


# ---------------------------------------------------------------------------------------------- entries


def test_start_reply_with_entries_is_rejected(start_reply, start_ctx):
    text = start_reply + "<entries>\n## Iter 1: converged\nNode: id=1, parent=root\n</entries>\n"
    assert any("PARALLEL START" in e for e in errors_of(text, start_ctx))


def test_missing_entries_block_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = assemble_reply(valid_parts).replace("<entries>", "").replace("</entries>", "")
    assert "<entries>: missing; write one '## Iter N:' entry for each of iterations 13-16" in errors_of(
        text, make_ctx()
    )


@pytest.mark.fault("reply")
def test_missing_iteration_is_rejected(valid_parts, assemble_reply, make_ctx):
    entries = valid_parts["entries"]
    cut = entries[: entries.index("## Iter 16")]
    errors = errors_of(assemble_reply({**valid_parts, "entries": cut}), make_ctx())
    assert errors == ["Iter 16: entry missing"]


@pytest.mark.fault("reply")
def test_duplicate_iteration_is_rejected(valid_parts, assemble_reply, make_ctx):
    entries = valid_parts["entries"]
    first = entries[: entries.index("## Iter 14")]
    errors = errors_of(assemble_reply({**valid_parts, "entries": entries + "\n" + first}), make_ctx())
    assert "Iter 13: entry given twice" in errors


@pytest.mark.fault("reply")
def test_foreign_iteration_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "## Iter 16: failed", "## Iter 17: failed")
    errors = errors_of(text, make_ctx())
    assert "Iter 17: not an iteration of this batch (expected 13-16)" in errors
    assert "Iter 16: entry missing" in errors


def test_entries_out_of_order_are_rejected(valid_parts, assemble_reply, make_ctx):
    entries = valid_parts["entries"]
    i14, i15 = entries.index("## Iter 14"), entries.index("## Iter 15")
    swapped = entries[i14:i15] + entries[:i14] + entries[i15:]
    errors = errors_of(assemble_reply({**valid_parts, "entries": swapped}), make_ctx())
    assert errors == ["<entries>: entries must be in iteration order (13, 14, 15, 16)"]


def test_node_parent_must_match_the_recorded_parent(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "Node: id=14, parent=root", "Node: id=14, parent=3")
    assert errors_of(text, make_ctx()) == ["Iter 14: Node: parent=3 but the slot was proposed with parent=root"]


def test_node_id_must_match_the_entry(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "Node: id=14,", "Node: id=41,")
    assert errors_of(text, make_ctx()) == ["Iter 14: Node: id=41 but this entry is node 14"]


def test_node_parent_outside_the_block_is_rejected(valid_parts, assemble_reply, make_ctx, batch4):
    batch4[1].parent = 3  # recorded parent from block 1: a controller bug the check must also catch
    text = edited(valid_parts, assemble_reply, "entries", "Node: id=14, parent=root", "Node: id=14, parent=3")
    assert "Iter 14: Node: parent=3 is not a node of block 2" in errors_of(text, make_ctx())


def test_missing_line_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "Embedding: no structure\n", "")
    assert errors_of(text, make_ctx()) == ["Iter 14: missing 'Embedding:' line"]


def test_status_must_match_measured_classification(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "## Iter 14: partial", "## Iter 14: converged")
    assert errors_of(text, make_ctx()) == [
        "Iter 14: status 'converged' but measured connectivity_R2=0.55 is 'partial' "
        "(converged > 0.8, partial 0.3-0.8, failed < 0.3)"
    ]


def test_failed_slot_must_be_written_failed(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "## Iter 15: failed", "## Iter 15: partial")
    assert errors_of(text, make_ctx()) == ["Iter 15: status 'partial' but the slot failed; write 'failed'"]


@pytest.mark.parametrize(("conn", "word"), [(0.81, "converged"), (0.8, "partial"), (0.3, "partial"), (0.29, "failed")])
def test_classification_thresholds(batch4, conn, word):
    batch4[0].metrics.connectivity_R2 = conn
    assert classify(batch4[0]) == word


def test_strategy_must_match_the_proposal(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "Mode/Strategy: exploit", "Mode/Strategy: explore")
    assert errors_of(text, make_ctx()) == [
        "Iter 14: Mode/Strategy: says 'explore' but the slot was proposed as 'exploit'"
    ]


def test_config_line_must_match_the_config(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "n_alt=6,", "n_alt=8,")
    assert errors_of(text, make_ctx()) == ["Iter 13: Config: n_alt=8 but the config has 6"]


def test_metric_within_tolerance_is_accepted(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "connectivity_R2=0.912,", "connectivity_R2=0.9125,")
    assert errors_of(text, make_ctx()) == []


def test_metric_with_too_few_decimals_is_rejected(valid_parts, assemble_reply, make_ctx):
    # rounding tolerance is capped: '1' or '0.91' cannot stand for a measured 0.912
    text = edited(valid_parts, assemble_reply, "entries", "connectivity_R2=0.912,", "connectivity_R2=0.91,")
    assert errors_of(text, make_ctx()) == ["Iter 13: Metrics: connectivity_R2=0.91 but measured 0.912"]


def test_missing_metric_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts,
        assemble_reply,
        "entries",
        ", test_R2=0.8, test_pearson=0.95, training_time_min=12.5\n",
        ", test_R2=0.8, test_pearson=0.95\n",
    )
    assert errors_of(text, make_ctx()) == ["Iter 13: Metrics: training_time_min missing"]


def test_metrics_for_a_failed_slot_are_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "Metrics: n/a", "Metrics: connectivity_R2=0.5")
    assert errors_of(text, make_ctx()) == [
        "Iter 15: Metrics: the slot failed and nothing was measured; write 'Metrics: n/a'"
    ]


@pytest.mark.fault("reply")
def test_non_finite_metric_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "tau_R2=0.66,", "tau_R2=nan,")
    errors = errors_of(text, make_ctx())
    assert "Iter 13: Metrics: tau_R2: 'nan' is not a finite number" in errors


def test_wrong_mutation_names_the_real_diff(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts, assemble_reply, "entries", "alternate_lr_W: 6e-07 -> 1e-07", "alternate_lr_W: 6e-07 -> 1e-06"
    )
    assert errors_of(text, make_ctx()) == [
        "Iter 14: Mutation: says 'alternate_lr_W: 6e-07 -> 1e-06' but the config differs from the base config "
        "(parent root) by 'alternate_lr_W: 6e-07 -> 1e-07'"
    ]


def test_mutation_numbers_compare_numerically(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts, assemble_reply, "entries", "alternate_lr_W: 6e-07 -> 1e-07", "alternate_lr_W: 6.0E-7 -> 0.0000001"
    )
    assert errors_of(text, make_ctx()) == []


def test_replicate_must_use_the_robustness_form(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts, assemble_reply, "entries", "[none] — robustness re-run of Node 7", "[none] — baseline defaults"
    )
    assert errors_of(text, make_ctx()) == [
        "Iter 16: Mutation: says '[none] — baseline defaults' but expected "
        "'[none] — robustness re-run of Node 7' (it re-ran a config verbatim)"
    ]


def test_replicate_must_name_the_replicated_node(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "robustness re-run of Node 7", "robustness re-run of Node 8")
    assert len(errors_of(text, make_ctx())) == 1


def test_trajectory_must_agree_with_the_digest(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts,
        assemble_reply,
        "entries",
        "peak=0.932 at iter 2560, final=0.912, trend=decaying",
        "peak=0.95 at iter 1920, final=0.912, trend=rising",
    )
    assert errors_of(text, make_ctx()) == [
        "Iter 13: R2 trajectory: peak=0.95 but the digest has peak=0.9320",
        "Iter 13: R2 trajectory: peak at iter 1920 but the digest has iter 2560",
        "Iter 13: R2 trajectory: trend=rising but the digest has trend=decaying (rising/stable/decaying)",
    ]


def test_trajectory_na_is_rejected_for_a_measured_slot(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts,
        assemble_reply,
        "entries",
        "R2 trajectory: peak=0.570 at iter 2560, final=0.550, trend=decaying",
        "R2 trajectory: n/a",
    )
    assert len(errors_of(text, make_ctx())) == 1


def test_trajectory_peak_phase_must_match(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "at iter 2560 (W)", "at iter 2560 (V_rest)")
    assert errors_of(text, make_ctx()) == ["Iter 16: R2 trajectory: peak phase 'V_rest' but the digest has 'W'"]


def test_variance_update_must_agree_with_the_table(valid_parts, assemble_reply, make_ctx):
    line = next(ln for ln in valid_parts["entries"].splitlines() if ln.startswith("Variance update: C13"))
    wrong = "Variance update: C1 now has 2 runs, CV(conn_R2)=9.0%, CV(V_rest_R2)=0.0%"
    errors = errors_of(edited(valid_parts, assemble_reply, "entries", line, wrong), make_ctx())
    assert errors == [
        "Iter 13: Variance update: config id C1 but node 13 ran C13",
        "Iter 13: Variance update: 2 runs but C13 has 1",
        "Iter 13: Variance update: CV(conn_R2)=9.0% but the variance table has 0.0%",
    ]


def test_next_parent_id_plus_one_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts, assemble_reply, "entries", "Next: parent=13\n\n## Iter 14", "Next: parent=14\n\n## Iter 14"
    )
    assert errors_of(text, make_ctx()) == [
        "Iter 13: Next: parent=14 is the next slot of the same batch (id+1); name a finished node or root"
    ]


def test_next_parent_must_exist(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "entries", "Next: parent=root", "Next: parent=99")
    assert errors_of(text, make_ctx()) == ["Iter 16: Next: parent=99 is not an existing node"]


# ---------------------------------------------------------------------------------------------- memory


def test_controller_owned_memory_section_is_rejected(valid_parts, assemble_reply, make_ctx):
    memory = valid_parts["memory"] + "\n### Variance Estimates\n| made up |\n"
    errors = errors_of(assemble_reply({**valid_parts, "memory": memory}), make_ctx())
    assert errors == ["memory: section 'Variance Estimates' is controller-owned; leave it out"]


def test_unknown_memory_section_is_rejected(valid_parts, assemble_reply, make_ctx):
    memory = valid_parts["memory"] + "\n### Scratchpad\nnotes\n"
    errors = errors_of(assemble_reply({**valid_parts, "memory": memory}), make_ctx())
    assert len(errors) == 1 and errors[0].startswith("memory: unknown section 'Scratchpad'")


# ---------------------------------------------------------------------------------------------- proposals


@pytest.mark.fault("reply")
def test_missing_and_duplicate_slots_are_rejected(valid_parts, assemble_reply, make_ctx):
    configs = valid_parts["configs"].replace('slot="3"', 'slot="2"')
    errors = errors_of(assemble_reply({**valid_parts, "configs": configs}), make_ctx())
    assert errors == ["config slot 2: given twice", "config slot 3: missing (one config block per slot 0..3)"]


@pytest.mark.fault("reply")
def test_slot_beyond_the_batch_is_rejected(valid_parts, assemble_reply, make_ctx):
    configs = valid_parts["configs"] + '<config slot="4" parent="root" strategy="explore">\n</config>\n'
    errors = errors_of(assemble_reply({**valid_parts, "configs": configs}), make_ctx())
    assert errors == ["config slot 4: no such slot (the next batch has slots 0..3)"]


def test_parent_outside_the_current_block_is_rejected(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "configs", 'slot="1" parent="14"', 'slot="1" parent="5"')
    assert errors_of(text, make_ctx()) == ["config slot 1: parent=5 is not a node of block 2"]


def test_new_block_allows_only_root_parents(valid_parts, assemble_reply, make_ctx):
    ctx = make_ctx(next_iterations=[25, 26, 27, 28], next_starts_block=True)
    errors = errors_of(assemble_reply(valid_parts), ctx)
    assert (
        'config slot 0: parent=13 is not a node of block 3 (the next batch starts a new block: use parent="root")'
        in errors
    )
    assert 'config slot 2: replicate=13 must have parent="root" (got "13")' in errors


def test_replicate_needs_an_existing_node_and_an_empty_body(valid_parts, assemble_reply, make_ctx):
    configs = valid_parts["configs"].replace(
        'replicate="7" strategy="robustness-check">\n',
        'replicate="7" strategy="robustness-check">\ntraining:\n  n_alternations: 8\n',
    )
    configs = configs.replace('replicate="13"', 'replicate="99"')
    errors = errors_of(assemble_reply({**valid_parts, "configs": configs}), make_ctx())
    assert errors == [
        "config slot 2: replicate=99 is not an existing node",
        "config slot 3: replicate=7 re-runs node 7's config verbatim: the body must be empty",
    ]


def test_replicate_must_use_robustness_check_strategy(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts,
        assemble_reply,
        "configs",
        'replicate="7" strategy="robustness-check"',
        'replicate="7" strategy="exploit"',
    )
    assert errors_of(text, make_ctx()) == [
        "config slot 3: replicate=7 must use strategy=\"robustness-check\" (got 'exploit')"
    ]


@pytest.mark.fault("reply")
def test_overlay_violations_are_reported_per_slot(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts,
        assemble_reply,
        "configs",
        "  n_alternations: 8\n",
        "  n_alternations: 8\n  alternate_training: false\n  hidden_dim: 99\n",
    )
    assert errors_of(text, make_ctx()) == [
        "config slot 1: training.alternate_training: True -> False: blocked "
        "(alternate_training must stay true: it selects the alternating trainer)",
        "config slot 1: training.hidden_dim: unknown key (not a field of the training: schema)",
    ]


def test_baseline_batches_must_run_the_defaults(start_reply, start_ctx):
    text = start_reply.replace(
        '<config slot="1" parent="root" strategy="baseline">\n',
        '<config slot="1" parent="root" strategy="baseline">\ntraining:\n  n_alternations: 6\n',
    )
    assert errors_of(text, start_ctx) == [
        "config slot 1: block 1 batch 1 runs the base defaults unchanged in every slot "
        "(variance baseline, 3 batches); this config differs by 'n_alternations: 4 -> 6'"
    ]


def test_baseline_rule_applies_up_to_the_third_batch(start_reply, make_ctx, block1):
    ctx = make_ctx(batch_results=block1[4:8], all_results=block1[:8], next_iterations=[9, 10, 11, 12], block=1)
    text = start_reply.replace(
        'strategy="baseline">\n</config>', 'strategy="explore">\ntraining:\n  n_alternations: 6\n</config>', 1
    )
    errors = validate_reply(parse_reply(text).model_copy(update={"entries": [], "errors": []}), ctx)
    assert any("block 1 batch 3 runs the base defaults" in e for e in errors)


def test_two_replicates_required_until_top_configs_have_three_runs(valid_parts, assemble_reply, make_ctx):
    text = edited(
        valid_parts,
        assemble_reply,
        "configs",
        '<config slot="2" parent="13" replicate="13" strategy="robustness-check">\n',
        '<config slot="2" parent="13" strategy="explore">\ntraining:\n  n_alternations: 2\n',
    )
    assert errors_of(text, make_ctx()) == [
        "batch 5: 1 replicate slot(s) (re-running an existing config), at least 2 required "
        "(until the top 3 configs by conn_R2 mean each have >= 3 runs; now C13 has 1, C14 has 1)"
    ]


def test_one_replicate_suffices_once_top_configs_have_three_runs(
    valid_parts, assemble_reply, make_ctx, block1, batch4, result_factory
):
    c13, c14 = batch4[0].trainable, batch4[1].trainable
    more = [
        result_factory(i, c, conn=0.9, replicate_of=r)
        for i, c, r in ((17, c13, 13), (18, c13, 13), (19, c14, 14), (20, c14, 14))
    ]
    ctx = make_ctx(batch_results=[], all_results=[*block1, *batch4, *more], next_iterations=[21, 22, 23, 24])
    configs = valid_parts["configs"].replace(
        '<config slot="2" parent="13" replicate="13" strategy="robustness-check">\n',
        '<config slot="2" parent="13" strategy="explore">\ntraining:\n  n_alternations: 2\n',
    )
    text = assemble_reply({**valid_parts, "entries": "", "configs": configs})
    assert errors_of(text, ctx) == []
    no_replicate = configs.replace(
        'replicate="7" strategy="robustness-check">\n', 'strategy="explore">\ngraph_model:\n  n_layers: 4\n'
    )
    errors = errors_of(assemble_reply({**valid_parts, "entries": "", "configs": no_replicate}), ctx)
    assert errors == [
        "batch 6: 0 replicate slot(s) (re-running an existing config), at least 1 required "
        "(at least 1 per batch once the top 3 configs have >= 3 runs)"
    ]


def test_child_of_an_over_time_slot_may_not_grow(valid_parts, assemble_reply, make_ctx, batch4):
    batch4[0].over_time_limit = True
    text = edited(
        valid_parts, assemble_reply, "configs", "  alternate_vrest_ratio: 0.3\n", "graph_model:\n  hidden_dim: 128\n"
    )
    assert errors_of(text, make_ctx()) == [
        "config slot 0: graph_model.hidden_dim: 80 -> 128: the parent exceeded the time limit; "
        "do not grow sizes, layers or data_augmentation_loop"
    ]


def test_child_of_an_over_time_slot_may_shrink(valid_parts, assemble_reply, make_ctx, batch4):
    batch4[0].over_time_limit = True
    text = edited(
        valid_parts, assemble_reply, "configs", "  alternate_vrest_ratio: 0.3\n", "graph_model:\n  hidden_dim: 64\n"
    )
    assert errors_of(text, make_ctx()) == []


def test_resolve_proposals_plans_the_next_batch(valid_reply, make_ctx, base):
    planned = resolve_proposals(parse_reply(valid_reply), make_ctx())
    assert [(p.iteration, p.slot, p.parent, p.replicate_of, p.strategy) for p in planned] == [
        (17, 0, 13, None, "exploit"),
        (18, 1, 14, None, "explore"),
        (19, 2, 13, 13, "robustness-check"),
        (20, 3, "root", 7, "robustness-check"),
    ]
    assert planned[0].mutation == "alternate_vrest_ratio: 0.5 -> 0.3"
    assert planned[0].trainable["training"]["n_alternations"] == 6
    assert planned[3].trainable == base
    assert planned[3].mutation == "[none] — robustness re-run of Node 7"
    assert {p.batch for p in planned} == {5} and {p.block for p in planned} == {2}


def test_resolve_proposals_raises_with_every_error(valid_parts, assemble_reply, make_ctx):
    configs = valid_parts["configs"].replace("alternate_vrest_ratio: 0.3", "alternate_vrest_ratio: 1.5")
    with pytest.raises(ReplyRejected) as exc:
        resolve_proposals(parse_reply(assemble_reply({**valid_parts, "configs": configs})), make_ctx())
    assert exc.value.errors == ["config slot 0: training.alternate_vrest_ratio: 0.5 -> 1.5: must be <= 1"]


def test_empty_overlay_from_a_node_counts_as_its_replicate(valid_parts, assemble_reply, make_ctx):
    text = edited(valid_parts, assemble_reply, "configs", "training:\n  n_alternations: 8\n", "")
    planned = resolve_proposals(parse_reply(text), make_ctx())
    assert planned[1].replicate_of == 14
    assert planned[1].mutation == "[none] — robustness re-run of Node 14"


def test_proposals_are_ignored_when_the_run_is_over(valid_reply, make_ctx):
    assert resolve_proposals(parse_reply(valid_reply), make_ctx(next_iterations=[])) == []


def test_training_time_is_a_wall_clock_reading_checked_to_half_a_minute(valid_parts, assemble_reply, make_ctx):
    close = edited(valid_parts, assemble_reply, "entries", "training_time_min=12.5\n", "training_time_min=12.9\n")
    assert errors_of(close, make_ctx()) == []
    far = edited(valid_parts, assemble_reply, "entries", "training_time_min=12.5\n", "training_time_min=45\n")
    assert errors_of(far, make_ctx()) == ["Iter 13: Metrics: training_time_min=45 but measured 12.5"]
