"""Config policy: what the LLM may edit, how overlays apply, mutation text, and slot config files."""

from __future__ import annotations

import math

import pytest

from agent.config_policy import (
    EditRejected,
    apply_overlay,
    base_trainable,
    check_edit,
    diff_trainable,
    format_mutation,
    growth_errors,
    load_slot_template,
    normalize_trainable,
    render_slot_config,
    write_slot_config,
)
from experiment.exploration import Seeds
from experiment.yaml_io import load_yaml_text

SRC = "slot 1"


# ---------------------------------------------------------------------------------------------- blocked keys


def test_active_phase_learning_rate_is_blocked_with_old_and_new(base):
    errors = check_edit(base, {"training": {"learning_rate_W_start": 1e-3}}, SRC)
    assert errors == [
        "slot 1: training.learning_rate_W_start: 0.0006 -> 0.001: blocked (active-phase learning rates are fixed)"
    ]


@pytest.mark.parametrize("key", ["learning_rate_start", "learning_rate_embedding_start"])
def test_other_active_phase_learning_rates_are_blocked(base, key):
    assert "blocked" in check_edit(base, {"training": {key: 0.01}}, SRC)[0]


@pytest.mark.fault("reply")
def test_simulation_edit_is_blocked(base):
    assert check_edit(base, {"simulation": {"n_frames": 1000}}, "config slot 1") == [
        "config slot 1: simulation.n_frames: blocked (simulation parameters are fixed)"
    ]


@pytest.mark.fault("reply")
def test_dataset_edit_is_blocked(base):
    assert check_edit(base, {"dataset": "elsewhere"}, SRC) == [
        "slot 1: dataset: blocked (the dataset field routes the slot's data and is fixed per slot)"
    ]


@pytest.mark.parametrize("top", ["claude", "dispatch", "description"])
@pytest.mark.fault("reply")
def test_controller_sections_are_blocked(base, top):
    errors = check_edit(base, {top: {"n_slots": 8} if top != "description" else "x"}, SRC)
    assert len(errors) == 1 and "blocked" in errors[0]


@pytest.mark.fault("reply")
def test_alternate_training_must_stay_true(base):
    assert check_edit(base, {"training": {"alternate_training": False}}, SRC) == [
        "slot 1: training.alternate_training: True -> False: blocked "
        "(alternate_training must stay true: it selects the alternating trainer)"
    ]


@pytest.mark.fault("reply")
def test_seed_is_blocked(base):
    assert check_edit(base, {"training": {"seed": 7}}, SRC) == [
        "slot 1: training.seed: blocked (seeds are controller-owned)"
    ]


@pytest.mark.parametrize("key", ["compile", "r2_async"])
def test_how_the_trainer_runs_is_blocked(base, key):
    errors = check_edit(base, {"training": {key: "on" if key == "r2_async" else "default"}}, SRC)
    assert len(errors) == 1 and f"training.{key}: " in errors[0] and "blocked (" in errors[0]


def test_restating_a_blocked_value_unchanged_is_allowed(base):
    assert check_edit(base, {"training": {"alternate_training": True, "learning_rate_W_start": 6e-4}}, SRC) == []


@pytest.mark.fault("reply")
def test_nested_mapping_under_a_blocked_key_is_blocked(base):
    errors = check_edit(base, {"training": {"learning_rate_W_start": {"value": 1e-3}}}, SRC)
    assert errors == [
        "slot 1: training.learning_rate_W_start: 0.0006 -> a mapping: blocked (active-phase learning rates are fixed)"
    ]


@pytest.mark.fault("reply")
def test_dotted_top_level_key_reaching_a_blocked_field_is_blocked(base):
    errors = check_edit(base, {"training.learning_rate_start": 0.01, "simulation.extent": 3}, SRC)
    assert errors == [
        "slot 1: training.learning_rate_start: 0.0012 -> 0.01: blocked (active-phase learning rates are fixed)",
        "slot 1: simulation.extent: blocked (simulation parameters are fixed)",
    ]


def test_every_violation_is_reported(base):
    overlay = {
        "dataset": "x",
        "simulation": {"n_frames": 10, "extent": 2},
        "training": {"learning_rate_W_start": 1e-3, "n_alternations": "six"},
        "graph_model": {"hidden_dim": 5000},
    }
    assert len(check_edit(base, overlay, SRC)) == 6


# ---------------------------------------------------------------------------------------------- keys and values


def test_unknown_key_is_rejected(base):
    assert check_edit(base, {"training": {"n_alternation": 6}}, SRC) == [
        "slot 1: training.n_alternation: unknown key (not a field of the training: schema)"
    ]


def test_unknown_top_level_section_is_rejected(base):
    assert check_edit(base, {"model": {"hidden_dim": 6}}, SRC) == [
        "slot 1: model: unknown key (only training: and graph_model: keys may change)"
    ]


def test_string_number_is_rejected(base):
    assert check_edit(base, {"training": {"alternate_lr_W": "6e-7"}}, SRC) == [
        "slot 1: training.alternate_lr_W: 6e-07 -> 6e-7: must be a number, got string '6e-7'"
    ]


def test_bool_is_not_a_number(base):
    assert check_edit(base, {"training": {"coeff_W_L1": True}}, SRC) == [
        "slot 1: training.coeff_W_L1: 3.3e-05 -> True: must be a number, got bool True"
    ]


def test_float_for_an_int_field_is_rejected(base):
    assert check_edit(base, {"training": {"n_alternations": 6.0}}, SRC) == [
        "slot 1: training.n_alternations: 4 -> 6.0: must be an integer, got float 6.0"
    ]


def test_int_for_a_float_field_is_accepted(base):
    assert apply_overlay(base, {"training": {"coeff_edge_diff": 500}}, SRC)["training"]["coeff_edge_diff"] == 500.0


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.fault("yaml")
def test_non_finite_numbers_are_rejected(base, value):
    errors = check_edit(base, {"training": {"coeff_W_L2": value}}, SRC)
    assert len(errors) == 1 and "must be finite" in errors[0]


@pytest.mark.fault("yaml")
def test_yaml_non_finite_literal_is_rejected(base):
    overlay = load_yaml_text("training:\n  alternate_lr_edge: .inf\n")
    assert "must be finite" in check_edit(base, overlay, SRC)[0]


def test_literal_field_accepts_only_its_choices(base):
    assert check_edit(base, {"graph_model": {"w_init_mode": "ones"}}, SRC) == [
        "slot 1: graph_model.w_init_mode: zeros -> ones: must be one of zeros, randn_scaled, got string 'ones'"
    ]


def test_alternate_first_phase_is_explorable_with_its_two_choices(base):
    assert check_edit(base, {"training": {"alternate_first_phase": "V_rest"}}, SRC) == []
    assert check_edit(base, {"training": {"alternate_first_phase": "both"}}, SRC) == [
        "slot 1: training.alternate_first_phase: W -> both: must be one of W, V_rest, got string 'both'"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "rule"),
    [
        ("training", "alternate_lr_W", 0.2, "must be in [0.0, 0.1]"),
        ("training", "alternate_lr_edge", -1e-7, "must be >= 0"),
        ("training", "coeff_edge_diff", 2e5, "must be in [0.0, 100000.0]"),
        ("graph_model", "hidden_dim", 2048, "must be <= 1024"),
        ("graph_model", "n_layers", 11, "must be <= 10"),
        ("training", "n_alternations", 65, "must be <= 64"),
        ("training", "alternate_vrest_ratio", 1.2, "must be <= 1"),
    ],
)
def test_values_outside_sane_ranges_are_rejected(base, section, key, value, rule):
    errors = check_edit(base, {section: {key: value}}, SRC)
    assert len(errors) == 1 and errors[0].endswith(rule), errors


def test_embedding_dim_alone_names_the_coupled_keys(base):
    assert check_edit(base, {"graph_model": {"embedding_dim": 4}}, SRC) == [
        "slot 1: graph_model.embedding_dim: 2 -> 4: coupled graph_model.input_size must change too: "
        "input_size = 1 + embedding_dim = 5, got 3",
        "slot 1: graph_model.embedding_dim: 2 -> 4: coupled graph_model.input_size_update must change too: "
        "input_size_update = 3 + embedding_dim = 7, got 5",
    ]


def test_coupled_size_alone_is_rejected(base):
    assert check_edit(base, {"graph_model": {"input_size": 4}}, SRC) == [
        "slot 1: graph_model.input_size: 3 -> 4: must equal 1 + embedding_dim = 3"
    ]


def test_embedding_dim_with_its_coupled_sizes_is_allowed(base):
    child = apply_overlay(base, {"graph_model": {"embedding_dim": 4, "input_size": 5, "input_size_update": 7}}, SRC)
    assert (child["graph_model"]["embedding_dim"], child["graph_model"]["input_size"]) == (4, 5)


def test_non_mapping_overlay_is_rejected(base):
    assert check_edit(base, ["training"], SRC) == ["slot 1: <root>: must be a mapping of sections, got a list"]


def test_empty_section_changes_nothing(base):
    assert apply_overlay(base, {"training": None}, SRC) == base


# ---------------------------------------------------------------------------------------------- apply and diff


def test_apply_overlay_raises_with_all_errors(base):
    with pytest.raises(EditRejected) as exc:
        apply_overlay(base, {"dataset": "x", "training": {"seed": 1}}, SRC)
    assert len(exc.value.errors) == 2


def test_apply_overlay_leaves_the_parent_untouched(base):
    before = normalize_trainable(base)
    apply_overlay(base, {"training": {"n_alternations": 8}}, SRC)
    assert base == before


def test_normalized_trainable_has_no_seed_and_every_field(base):
    assert "seed" not in base["training"]
    assert set(base["graph_model"]) >= {"hidden_dim", "w_init_mode", "input_size_update"}


def test_diff_treats_int_and_float_as_equal(base):
    raw = {"training": {**base["training"], "coeff_edge_diff": 750}, "graph_model": base["graph_model"]}
    assert diff_trainable(base, raw) == []


def test_format_mutation_uses_schema_order_and_shortest_repr(base):
    child = apply_overlay(
        base, {"graph_model": {"hidden_dim": 64}, "training": {"alternate_lr_W": 1e-7, "n_alternations": 6}}, SRC
    )
    assert (
        format_mutation(base, child) == "n_alternations: 4 -> 6; alternate_lr_W: 6e-07 -> 1e-07; hidden_dim: 80 -> 64"
    )


def test_format_mutation_baseline_and_replicate_forms(base):
    assert format_mutation(base, base) == "[none] — baseline defaults"
    assert format_mutation(base, base, parent_id=9) == "[none] — robustness re-run of Node 9"
    assert format_mutation(base, base, replicate_of=3) == "[none] — robustness re-run of Node 3"


def test_format_mutation_writes_bools_with_str(base):
    child = apply_overlay(base, {"graph_model": {"lin_edge_positive": False}}, SRC)
    assert format_mutation(base, child) == "lin_edge_positive: True -> False"


def test_growth_errors_flag_only_increases(base):
    child = apply_overlay(base, {"graph_model": {"hidden_dim": 128, "n_layers": 2}}, SRC)
    assert growth_errors(base, child, SRC) == [
        "slot 1: graph_model.hidden_dim: 80 -> 128: the parent exceeded the time limit; "
        "do not grow sizes, layers or data_augmentation_loop"
    ]


# ---------------------------------------------------------------------------------------------- slot files


def test_slot_config_keeps_comments_and_key_order(template, base):
    child = apply_overlay(base, {"training": {"n_alternations": 6}}, SRC)
    text = render_slot_config(template.text, "flyvis_62_1_gs_alternate", 2, 14, child)
    assert "# active-phase learning rates: strictly optimal, never edited" in text
    assert "extent: 8                 # 217 columns, 13,741 neurons, 434,112 edges" in text
    assert "learning_rate_W_start: 6.0E-4" in text  # untouched scalars keep their spelling
    keys = [ln.split(":")[0] for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert keys == ["description", "dataset", "simulation", "graph_model", "training", "claude", "dispatch"]


def test_slot_config_sets_dataset_and_seeds(template, base):
    data = load_yaml_text(render_slot_config(template.text, "run", 3, 14, base))
    seeds = Seeds.for_slot(14, 3)
    assert data["dataset"] == "run_03"
    assert (
        (data["simulation"]["seed"], data["training"]["seed"]) == (seeds.simulation, seeds.training) == (14003, 14503)
    )


def test_slot_config_applies_the_trainable(template, base, tmp_path):
    child = apply_overlay(base, {"training": {"alternate_lr_W": 1e-7, "n_iterations": 300}}, SRC)
    config = write_slot_config(template.text, "run", 0, 5, child, tmp_path / "run_00.yaml")
    assert base_trainable(config) == child
    text = (tmp_path / "run_00.yaml").read_text()
    assert "alternate_lr_W: 1.0e-07" in text  # a dot in the mantissa: YAML 1.1 readers see a float too
    assert [p.name for p in tmp_path.iterdir()] == ["run_00.yaml"]  # atomic: no temp file left behind


def test_slot_config_float_reads_as_float_in_yaml_1_1(template, base):
    yaml11 = pytest.importorskip("yaml")
    child = apply_overlay(base, {"training": {"alternate_lr_W": 1e-7}}, SRC)
    data = yaml11.safe_load(render_slot_config(template.text, "run", 0, 5, child))
    assert data["training"]["alternate_lr_W"] == 1e-7


def test_load_slot_template_rejects_a_bad_base_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: x\ntraining:\n  n_alternation: 4\n")
    with pytest.raises(ValueError, match=r"bad.yaml: training.n_alternation"):
        load_slot_template(path)


def test_coupled_violation_is_reported_with_other_violations(base):
    errors = check_edit(base, {"graph_model": {"embedding_dim": 4}, "training": {"seed": 1}}, SRC)
    assert len(errors) == 3


def test_key_appended_at_section_end_keeps_the_blank_line_before_the_next_section(template, base):
    text = template.text.replace("  device: auto\n", "")
    child = normalize_trainable({**base, "training": {**base["training"], "device": "cpu"}})
    out = render_slot_config(text, "run", 0, 1, child)
    assert "  device: cpu\n\nclaude:" in out


def test_base_without_sections_gets_only_what_differs(base):
    child = apply_overlay(base_trainable({"dataset": "x"}), {"training": {"n_alternations": 6}}, SRC)
    out = render_slot_config("# minimal\ndataset: x  # route\n", "run", 1, 2, child)
    assert (
        out
        == "# minimal\ndataset: run_01 # route\nsimulation:\n  seed: 2001\ntraining:\n  n_alternations: 6\n  seed: 2501\n"
    )
