"""Metric claims in free text: a metric named with a number anywhere in an entry must be a measured value.

The context is the reply to batch 4 of tests/agent/conftest.py (nodes 13-16, block 1 = nodes 1-12 on the base
config C1); the valid reply is the offline policy's, whose Observation and Embedding lines cite metrics.
"""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.claims import (
    METRIC_ALIASES,
    ClaimFacts,
    check_entry_claims,
    find_claims,
    logical_lines,
    named_configs,
    named_nodes,
)
from agent.llm.offline_policy import OfflinePlanner
from agent.prompts import load_instructions
from agent.reply_check import ReplyContext
from helpers.replies import errors_of
from memory.variance import variance_table

PROPERTY = settings(
    max_examples=int(os.environ.get("CLAIMS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
R2_METRICS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson")
ALIASES = {m: sorted(a for a, v in METRIC_ALIASES.items() if v == m) for m in {*METRIC_ALIASES.values()}}
FORMS = ("{name}={x}", "{name} {x}", "{name}: {x}", "{name} of {x}", "{name} reached {x}", "{name} was {x}")
STRUCTURED = ("Node:", "Config:", "Metrics:", "R2 trajectory:", "Mutation:", "Variance update:")


class Quiet:
    """A context with a short repr (hypothesis prints strategy arguments)."""

    def __init__(self, ctx: ReplyContext) -> None:
        self.ctx = ctx

    def __repr__(self) -> str:
        return "ctx"


@pytest.fixture
def ctx(make_ctx) -> ReplyContext:
    return make_ctx()


@pytest.fixture
def reply(ctx: ReplyContext) -> str:
    text = OfflinePlanner(ctx).reply()
    assert errors_of(text, ctx) == []
    return text


def replace_line(text: str, startswith: str, iteration: int, new: str) -> str:
    """``text`` with the first line starting with ``startswith`` inside entry ``iteration`` replaced."""
    lines = text.splitlines()
    head = lines.index(next(ln for ln in lines if ln.startswith(f"## Iter {iteration}:")))
    at = next(i for i in range(head, len(lines)) if lines[i].startswith(startswith))
    lines[at] = new(lines[at]) if callable(new) else new
    return "\n".join(lines) + "\n"


def measured_values(ctx: ReplyContext, metric: str) -> list[float]:
    """Every value of ``metric`` anywhere in the run (nodes, trajectories, table means), failed runs as 0."""
    values = [0.0]
    for r in ctx.all_results:
        if r.metrics is not None:
            values.append(getattr(r.metrics, metric))
        if r.trajectory is not None:
            values += [r.trajectory.peak, r.trajectory.final]
    for row in variance_table(ctx.all_results):
        values += [row.conn_mean, row.tau_mean, row.vrest_mean, row.cluster_mean]
    return values


# ---------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("sentence", "metric", "value"),
    [
        ("connectivity_R2=0.912", "connectivity_R2", 0.912),
        ("conn_R2 0.912", "connectivity_R2", 0.912),
        ("R2: 0.912", "connectivity_R2", 0.912),
        ("connectivity R2 of 0.912", "connectivity_R2", 0.912),
        ("R2 peak 0.932", "connectivity_R2", 0.932),
        ("connectivity_R2 reached 0.9990 here", "connectivity_R2", 0.999),
        ("tau_R2 = 0.660", "tau_R2", 0.66),
        ("V_rest R2 0.165", "V_rest_R2", 0.165),
        ("cluster accuracy 50.0%", "cluster_accuracy", 0.5),
        ("Pearson r of 0.950", "test_pearson", 0.95),
        ("test R2: -43.332", "test_R2", -43.332),
        ("training time 12.5 min", "training_time_min", 12.5),
    ],
)
def test_each_accepted_form_is_read_as_a_claim(sentence: str, metric: str, value: float) -> None:
    claims = find_claims(sentence)
    assert [(c.metric, round(c.value, 6), c.is_cv) for c in claims] == [(metric, value, False)]


def test_cv_forms_are_cv_claims_in_percent() -> None:
    for sentence in ("CV(conn_R2)=31.9%", "conn_R2 CV 31.9%"):
        assert [(c.metric, c.value, c.is_cv) for c in find_claims(sentence)] == [("connectivity_R2", 31.9, True)]


@pytest.mark.parametrize(
    "sentence",
    [
        "converged when R2 > 0.8",
        "partial for conn_R2 0.3-0.8",
        "conn_R2 rose by 0.03",
        "conn_R2 improved 15%",
        "Δconn_R2 +0.03",
        "W-phases +0.4",
        "R2 2x higher",
        "R2 peak at 2560 (W phase)",
    ],
)
def test_thresholds_ranges_and_changes_are_not_claims(sentence: str) -> None:
    assert find_claims(sentence) == []


def test_from_x_to_y_claims_both_values() -> None:
    claims = find_claims("conn_R2 rose from 0.412 to 0.520")
    assert [(c.text, c.value) for c in claims] == [
        ("conn_R2 rose from 0.412", 0.412),
        ("conn_R2 rose from 0.412 to 0.520", 0.52),
    ]


def test_nodes_and_configs_named_in_a_sentence() -> None:
    assert named_nodes("better than Node 3 and nodes 4, 7; parent=2, iter 9") == {2, 3, 4, 7, 9}
    assert named_configs("C5 mean beats C12") == {"C5", "C12"}


# ---------------------------------------------------------------------------------------------- checking


@pytest.mark.fault("reply")
def test_made_up_figure_ending_an_observation_is_rejected_naming_iteration_line_and_number(reply, ctx) -> None:
    text = replace_line(reply, "Observation:", 14, lambda ln: ln + "; connectivity_R2 reached 0.9990 here")
    errors = errors_of(text, ctx)
    assert len(errors) == 1, errors
    assert errors[0].startswith("Iter 14: Observation: 'connectivity_R2 reached 0.9990' ")
    assert "node 14 has connectivity_R2=0.55" in errors[0]


@pytest.mark.fault("reply")
def test_extra_line_with_best_metrics_is_rejected_per_number(reply, ctx) -> None:
    text = replace_line(
        reply, "Parent rule:", 13, lambda ln: ln + "\nBest metrics: connectivity_R2=0.9500, V_rest_R2=0.9000"
    )
    errors = errors_of(text, ctx)
    assert [e.split(" states ")[0] for e in errors] == [
        "Iter 13: line 10 'Best metrics: connectivity_R2=0.9500,...': 'connectivity_R2=0.9500'",
        "Iter 13: line 10 'Best metrics: connectivity_R2=0.9500,...': 'V_rest_R2=0.9000'",
    ]


@pytest.mark.fault("reply")
@pytest.mark.parametrize("key", ["Embedding:", "Parent rule:", "Mode/Strategy:", "Next:"])
def test_claims_in_every_free_or_loosely_parsed_line_are_checked(reply, ctx, key: str) -> None:
    text = replace_line(reply, key, 13, lambda ln: ln + "; tau_R2 0.999")
    errors = errors_of(text, ctx)
    assert len(errors) == 1 and errors[0].startswith(f"Iter 13: {key} 'tau_R2 0.999' states a tau_R2"), errors


def test_a_named_node_a_named_config_and_the_parent_are_measured_values(reply, ctx) -> None:
    node3 = next(r for r in ctx.all_results if r.iteration == 3).metrics
    c1 = variance_table(ctx.all_results)[0]
    extra = (
        f"Compared: Node 3 had conn_R2 {node3.connectivity_R2:.3f} and V_rest_R2={node3.V_rest_R2:.4f}; "
        f"C1 mean tau_R2 {c1.tau_mean:.3f}, CV(conn_R2)={c1.conn_cv:.1f}%; R2 peak 0.932, final 0.912"
    )
    text = replace_line(reply, "Observation:", 13, lambda ln: ln + "\n" + extra)
    assert errors_of(text, ctx) == []


def test_a_node_value_without_naming_the_node_is_rejected(reply, ctx) -> None:
    node3 = next(r for r in ctx.all_results if r.iteration == 3).metrics
    text = replace_line(reply, "Observation:", 13, lambda ln: ln + f"; conn_R2 {node3.connectivity_R2:.3f}")
    assert len(errors_of(text, ctx)) == 1


@pytest.mark.fault("reply")
def test_a_number_is_checked_at_the_precision_it_is_printed_with(reply, ctx) -> None:
    text = replace_line(reply, "Observation:", 13, lambda ln: ln + "; tau_R2 0.65")  # measured 0.66 -> 0.65 off
    assert len(errors_of(text, ctx)) == 1
    for good in ("tau_R2 0.660", "tau_R2 ~0.66", "tau_R2 ≈ 0.7", "tau_R2 about 1"):
        text = replace_line(reply, "Observation:", 13, lambda ln, g=good: ln + "; " + g)
        assert errors_of(text, ctx) == [], good


def test_training_time_has_the_wall_clock_tolerance(reply, ctx) -> None:
    ok = replace_line(reply, "Observation:", 13, lambda ln: ln + "; training time 12.9 min")
    assert errors_of(ok, ctx) == []
    bad = replace_line(reply, "Observation:", 13, lambda ln: ln + "; training time 30 min")
    assert len(errors_of(bad, ctx)) == 1


def test_a_failed_node_counts_as_zero(reply, ctx) -> None:
    ok = replace_line(reply, "Observation:", 15, lambda ln: ln + "; conn_R2 0.000 as in the table")
    assert errors_of(ok, ctx) == []
    bad = replace_line(reply, "Observation:", 15, lambda ln: ln + "; conn_R2 0.700")
    errors = errors_of(bad, ctx)
    assert len(errors) == 1 and "node 15 failed" in errors[0]


# ---------------------------------------------------------------------------------------------- properties


@st.composite
def wrong_claims(draw: st.DrawFn, quiet: Quiet) -> tuple[str, str]:
    """(claim text, number text) of a number no node, trajectory or config of the run measured."""
    ctx = quiet.ctx
    metric = draw(st.sampled_from([*R2_METRICS, "training_time_min", "cv"]))
    form = draw(st.sampled_from(FORMS))
    if metric == "cv":
        cvs = [c for row in variance_table(ctx.all_results) for c in (row.conn_cv, row.tau_cv, row.vrest_cv)]
        x = draw(st.floats(0, 300).map(lambda v: round(v, 1)))
        assume(all(abs(x - c) > 1.0 for c in cvs))
        number = f"{x:.1f}%"
        return f"CV(conn_R2)={number}", number
    if metric == "training_time_min":
        x = draw(st.floats(20, 600).map(lambda v: round(v, 2)))
        number = f"{x:.2f}"
    else:
        x = draw(st.floats(-2, 2).map(lambda v: round(v, 4)))
        assume(all(abs(x - v) > 0.01 for v in measured_values(ctx, metric)))
        number = f"{x:.4f}"
    name = draw(st.sampled_from(ALIASES[metric]))
    return form.format(name=name, x=number), number


@pytest.mark.fault("reply")
@PROPERTY
@given(data=st.data())
def test_a_planted_wrong_number_in_any_line_is_rejected_naming_it(reply, ctx, data) -> None:
    claim, number = data.draw(wrong_claims(Quiet(ctx)))
    lines = reply.splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("## Iter ")]
    end = lines.index("</entries>")
    k = data.draw(st.integers(0, len(heads) - 1))
    first, last = heads[k], (heads[k + 1] if k + 1 < len(heads) else end) - 1
    while not lines[last].strip():
        last -= 1
    iteration = int(re.match(r"## Iter (\d+)", lines[first]).group(1))
    at = data.draw(st.integers(first + 1, last))
    if data.draw(st.booleans()) and not lines[at].startswith(STRUCTURED):
        lines[at] = f"{lines[at]}; {claim}"  # appended to a free-text line
    else:
        prefix = data.draw(st.sampled_from(["", "Best metrics: ", "Note: ", "- "]))
        lines.insert(at + 1, prefix + claim)  # a line outside the entry format
    errors = errors_of("\n".join(lines) + "\n", ctx)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"Iter {iteration}: ") and number in errors[0], errors


@st.composite
def right_claims(draw: st.DrawFn, quiet: Quiet, iteration: int) -> str:
    """A sentence restating a value the run measured for node ``iteration``, in a random accepted form."""
    ctx = quiet.ctx
    own = next(r for r in ctx.all_results if r.iteration == iteration)
    row = next(row for row in variance_table(ctx.all_results) if iteration in row.iterations)
    kind = draw(st.sampled_from(["own", "percent", "node", "mean", "cv", "peak"]))
    form = draw(st.sampled_from(FORMS))
    digits = draw(st.integers(3, 5))
    if kind == "node":
        node = draw(st.sampled_from([r for r in ctx.all_results if r.metrics is not None]))
        metric = draw(st.sampled_from(R2_METRICS))
        value = f"{getattr(node.metrics, metric):.{digits}f}"
        return f"Node {node.iteration} had " + form.format(name=draw(st.sampled_from(ALIASES[metric])), x=value)
    if kind == "mean":
        value = f"{row.vrest_mean:.{digits}f}"
        return f"{row.config_id} mean " + form.format(name=draw(st.sampled_from(ALIASES["V_rest_R2"])), x=value)
    if kind == "cv":
        return f"{row.config_id} CV({draw(st.sampled_from(ALIASES['connectivity_R2']))})={row.conn_cv:.1f}%"
    if kind == "peak":
        return form.format(name="R2 peak", x=f"{own.trajectory.peak:.{digits}f}")
    metric = draw(st.sampled_from(R2_METRICS))
    name = draw(st.sampled_from(ALIASES[metric]))
    value = getattr(own.metrics, metric)
    if kind == "percent":
        return form.format(name=name, x=f"{100 * value:.{digits - 1}f}%")
    return form.format(name=name, x=f"{value:.{digits}f}")


@pytest.mark.fault("reply")
@PROPERTY
@given(data=st.data())
def test_correct_numbers_in_other_accepted_forms_are_not_false_alarms(reply, ctx, data) -> None:
    text = reply
    for iteration in (13, 14, 16):  # the measured nodes of the batch
        own = next(r for r in ctx.all_results if r.iteration == iteration)
        name = data.draw(st.sampled_from(ALIASES["cluster_accuracy"]))
        form = data.draw(st.sampled_from(FORMS))
        embedding = form.format(name=name, x=f"{own.metrics.cluster_accuracy:.3f}")
        text = replace_line(text, "Embedding:", iteration, f"Embedding: types mostly mixed ({embedding})")
        sentences = [data.draw(right_claims(Quiet(ctx), iteration)) for _ in range(data.draw(st.integers(1, 3)))]
        if data.draw(st.booleans()):
            text = replace_line(text, "Observation:", iteration, lambda ln, s=sentences: ln + "; " + "; ".join(s))
        else:
            text = replace_line(text, "Parent rule:", iteration, lambda ln, s=sentences: ln + "\n" + "; ".join(s))
    assert errors_of(text, ctx) == []


def test_the_parent_is_implied_and_an_unnamed_other_node_is_not(block1, result_factory, base) -> None:
    child = result_factory(13, base, conn=0.52, parent=5, strategy="exploit")
    results = {r.iteration: r for r in [*block1, child]}
    facts = ClaimFacts(results=results, rows=variance_table(list(results.values())))
    parent_r2 = results[5].metrics.connectivity_R2
    other_r2 = results[6].metrics.connectivity_R2
    assert (
        check_entry_claims(
            13, f"## Iter 13: partial\nObservation: conn_R2 rose from {parent_r2:.3f} to 0.520", child, facts
        )
        == []
    )
    errors = check_entry_claims(13, f"## Iter 13: partial\nObservation: conn_R2 {other_r2:.3f}", child, facts)
    assert len(errors) == 1 and errors[0].startswith(f"Iter 13: Observation: 'conn_R2 {other_r2:.3f}' states")


# ---------------------------------------------------------------------------------------------- honest prose


def test_the_instructions_figures_reach_the_check_through_the_reply_context(reply, make_ctx) -> None:
    """The controller puts the instruction text in the ReplyContext; attributed figures of it are citable."""
    instructions = load_instructions("instruction_flyvis_62_1_gs_alternate.md")
    text = replace_line(
        reply, "Observation:", 14, lambda ln: ln + "; the lab reports standard conn_R2 of 0.955, far above this run"
    )
    ctx = make_ctx(instruction_text=instructions.base_text + "\n\n" + instructions.parallel_text)
    assert errors_of(text, ctx) == []
    (error,) = errors_of(text, make_ctx())  # no instruction text: 0.955 was never shown
    assert error.startswith("Iter 14: Observation: 'conn_R2 of 0.955' states a connectivity_R2")


def test_comparisons_and_predictions_are_not_claims() -> None:
    for sentence in (
        "half the runs fell below R2 0.3",
        "none reached at least conn_R2 0.9",
        "above conn_R2 0.8 only with n_alt 6",
        "expect conn_R2 0.95 from n_alt=8",
        "does V_rest_R2 0.5 need more epochs?",
    ):
        assert find_claims(sentence) == [], sentence
    assert [c.value for c in find_claims("V_rest_R2 ≈ 0")] == [0.0]
    assert [c.value for c in find_claims("conn_R2 ~0.93")] == [0.93]


@pytest.mark.fault("reply")
@PROPERTY
@given(data=st.data())
def test_a_planted_wrong_number_in_any_memory_section_is_rejected_naming_it(reply, ctx, data) -> None:
    claim, number = data.draw(wrong_claims(Quiet(ctx)))
    section = data.draw(
        st.sampled_from(["Knowledge Base", "Established Principles", "Open Questions", "Current Block"])
    )
    prefix = data.draw(st.sampled_from(["", "- ", "Note: ", "C1: "]))
    heading = f"### {section}\n\n"
    assert heading in reply
    text = reply.replace(heading, f"{heading}{prefix}{claim}\n", 1)
    errors = errors_of(text, ctx)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"memory: {section}: line 1 ") and number in errors[0], errors


def test_a_sentence_wrapped_across_lines_is_checked_as_one_sentence(reply, make_ctx) -> None:
    """A real model wraps long bullets; the attribution on the first line covers the figure on the next."""
    instructions = load_instructions("instruction_flyvis_62_1_gs_alternate.md")
    ctx = make_ctx(instruction_text=instructions.base_text + "\n\n" + instructions.parallel_text)
    wrapped = "- How wide is our spread? The lab reports standard training at\n  conn_R2 0.955 over its runs.\n"
    text = reply.replace("### Open Questions\n\n", f"### Open Questions\n\n{wrapped}", 1)
    assert errors_of(text, ctx) == []
    unattributed = "- How wide is our spread? Our runs sit\n  at conn_R2 0.955 in the end.\n"
    (error,) = errors_of(reply.replace("### Open Questions\n\n", f"### Open Questions\n\n{unattributed}", 1), ctx)
    assert error.startswith("memory: Open Questions: line 1 'How wide is our spread?") and "0.955" in error, error


def test_a_line_after_a_structured_entry_line_stands_alone(reply, ctx) -> None:
    """A Metrics line takes no continuation: a made-up number on the line after it is still checked."""
    text = replace_line(reply, "Metrics:", 13, lambda ln: ln + "\n  and tau_R2 0.123 besides")
    (error,) = errors_of(text, ctx)
    assert "'tau_R2 0.123' states a tau_R2" in error, error


def test_logical_lines_join_soft_wrapped_text_and_split_at_items() -> None:
    text = "### H\n- a one\n  two\n* b\n1. c\nKey: d\n  e\n\nplain\nwrapped\n| t | u |\nafter table\nends.\nNew one\nHeading:\n- x\n"
    assert list(logical_lines(text)) == [
        (1, "### H"),
        (2, "a one two"),
        (4, "b"),
        (5, "1. c"),
        (6, "Key: d e"),
        (9, "plain wrapped"),
        (11, "| t | u |"),
        (12, "after table ends."),
        (14, "New one"),
        (15, "Heading:"),
        (16, "x"),
    ]
