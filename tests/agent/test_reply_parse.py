"""Reply parsing: every field of the log format, memory sections, config blocks, and safe YAML."""

from __future__ import annotations

import pytest

from agent.reply import parse_reply
from agent.reply_parse import MAX_CONFIG_BLOCK_BYTES, MAX_REPLY_CHARS, size_error


def test_entry_fields_are_parsed(valid_reply):
    reply = parse_reply(valid_reply)
    assert reply.errors == []
    e = reply.entries[0]
    assert (e.iteration, e.status, e.node_id, e.parent, e.strategy) == (13, "converged", 13, "root", "explore")
    assert e.config["n_alt"].value == 6 and e.config["lr_W"].value == 6e-4
    assert e.metrics["connectivity_R2"].value == 0.912 and len(e.metrics) == 7
    assert (e.trajectory.peak.value, e.trajectory.peak_iteration, e.trajectory.final.value, e.trajectory.trend) == (
        0.932,
        2560,
        0.912,
        "decaying",
    )
    assert e.embedding == "two loose clusters"
    assert e.mutation.kind == "changes" and e.mutation.changes[0].text() == "n_alternations: 4 -> 6"
    assert e.parent_rule == "root (new block)"
    assert e.observation == "R2 dips during V_rest-phases"
    assert (e.variance.config_id, e.variance.runs) == ("C13", 1)
    assert e.next_parent == 13


def test_entry_text_is_kept_verbatim_for_the_log(valid_reply):
    e = parse_reply(valid_reply).entries[1]
    assert e.text.startswith("## Iter 14: partial\nNode: id=14, parent=root")


def test_failed_entry_reads_na_lines(valid_reply):
    e = parse_reply(valid_reply).entries[2]
    assert e.metrics is None and e.trajectory is None and e.is_na("Metrics")
    assert (e.mutation.kind, e.mutation.replicate_of) == ("replicate", 3)


def test_trajectory_peak_phase_is_parsed(valid_reply):
    assert parse_reply(valid_reply).entries[3].trajectory.peak_phase == "W"


def test_markdown_decoration_is_tolerated():
    text = "<entries>\n**## Iter 5: [partial]**\n- **Node:** id=5, parent=root\n- Next: parent=root (keep)\n</entries>"
    e = parse_reply(text).entries[0]
    assert (e.status, e.node_id, e.next_parent) == ("partial", 5, "root")


def test_baseline_mutation_form_is_parsed():
    text = "<entries>\n## Iter 1: failed\nMutation: [none] -- baseline defaults\n</entries>"
    assert parse_reply(text).entries[0].mutation.kind == "baseline"


def test_multiple_changes_are_parsed():
    text = "<entries>\n## Iter 1: failed\nMutation: n_alternations: 4 -> 6; training.alternate_lr_W: 6e-07 -> 1e-07\n</entries>"
    changes = parse_reply(text).entries[0].mutation.changes
    assert [c.text() for c in changes] == ["n_alternations: 4 -> 6", "alternate_lr_W: 6e-07 -> 1e-07"]


@pytest.mark.fault("reply")
def test_malformed_lines_become_errors():
    text = (
        "<entries>\n## Iter 2: partial\nNode: 2 from root\nMetrics: connectivity_R2=high\n"
        "R2 trajectory: went up\nMutation: changed things\nVariance update: C1 has runs\nNext: 3\n</entries>"
    )
    errors = parse_reply(text).errors
    assert errors == [
        "Iter 2: Node: '2 from root' is not 'id=N, parent=P'",
        "Iter 2: Metrics: connectivity_R2: 'high' is not a number",
        "Iter 2: R2 trajectory: 'went up' is not 'peak=X at iter Y, final=Z, trend=T' (or 'n/a')",
        "Iter 2: Mutation: 'changed things' is not 'param: old -> new' "
        "(or '[none] — robustness re-run of Node X' / '[none] — baseline defaults')",
        "Iter 2: Variance update: 'C1 has runs' is not '[config_id] now has N runs, CV(conn_R2)=X%, CV(V_rest_R2)=Y%'",
        "Iter 2: Next: '3' is not 'parent=P'",
    ]


@pytest.mark.fault("reply")
def test_non_finite_numbers_are_rejected():
    text = "<entries>\n## Iter 2: partial\nMetrics: connectivity_R2=inf, tau_R2=NaN\n</entries>"
    assert parse_reply(text).errors == [
        "Iter 2: Metrics: connectivity_R2: 'inf' is not a finite number",
        "Iter 2: Metrics: tau_R2: 'NaN' is not a finite number",
    ]


def test_duplicate_line_is_an_error():
    text = "<entries>\n## Iter 2: partial\nNext: parent=1\nNext: parent=root\n</entries>"
    assert parse_reply(text).errors == ["Iter 2: 'Next:' line given twice"]


def test_memory_sections_are_parsed(valid_reply):
    memory = parse_reply(valid_reply).memory
    assert list(memory) == ["Knowledge Base", "Current Block"]
    assert memory["Current Block"] == "Block 2: hypothesis: more alternations help."


def test_memory_text_before_a_heading_is_an_error():
    assert parse_reply("<memory>\nloose words\n### Open Questions\nq\n</memory>").errors == [
        "memory: text before the first '### ' heading: 'loose words'"
    ]


def test_config_block_attributes_and_overlay(valid_reply):
    proposals = parse_reply(valid_reply).proposals
    assert [(p.slot, p.parent, p.replicate_of, p.strategy) for p in proposals] == [
        (0, 13, None, "exploit"),
        (1, 14, None, "explore"),
        (2, 13, 13, "robustness-check"),
        (3, "root", 7, "robustness-check"),
    ]
    assert proposals[0].overlay == {"training": {"alternate_vrest_ratio": 0.3}}
    assert proposals[2].overlay == {}


def test_config_block_in_a_code_fence_is_read():
    text = '<config slot="0" parent="root" strategy="explore">\n```yaml\ntraining:\n  n_alternations: 6\n```\n</config>'
    assert parse_reply(text).proposals[0].overlay == {"training": {"n_alternations": 6}}


def test_yaml_6e_minus_7_reads_as_a_float():
    text = '<config slot="0" parent="root" strategy="explore">\ntraining:\n  alternate_lr_W: 6e-7\n</config>'
    assert parse_reply(text).proposals[0].overlay == {"training": {"alternate_lr_W": 6e-7}}


@pytest.mark.fault("yaml")
def test_yaml_anchor_and_alias_are_rejected():
    text = (
        '<config slot="0" parent="root" strategy="explore">\n'
        "training: &t\n  n_alternations: 6\ngraph_model: *t\n</config>"
    )
    reply = parse_reply(text)
    assert reply.proposals[0].broken and reply.errors == [
        "config slot 0: line 1: key 'training': anchors are not allowed"
    ]


@pytest.mark.fault("yaml")
def test_yaml_tag_is_rejected():
    text = '<config slot="0" parent="root" strategy="explore">\ntraining: !!python/object:os.system\n  a: 1\n</config>'
    errors = parse_reply(text).errors
    assert len(errors) == 1 and "tag 'tag:yaml.org,2002:python/object:os.system' is not allowed" in errors[0]


@pytest.mark.fault("yaml")
def test_huge_config_block_is_rejected():
    body = "training:\n" + "".join(f"  k{i}: {i}\n" for i in range(MAX_CONFIG_BLOCK_BYTES // 8))
    text = f'<config slot="0" parent="root" strategy="explore">\n{body}</config>'
    size = len(body.encode())
    assert parse_reply(text).errors == [
        f"config slot 0: config block of {size:,} bytes, over the limit of {MAX_CONFIG_BLOCK_BYTES:,}"
    ]


@pytest.mark.fault("reply")
def test_huge_reply_is_rejected():
    reply = parse_reply("x" * (MAX_REPLY_CHARS + 1))
    assert reply.too_large and reply.errors == [size_error(MAX_REPLY_CHARS + 1)]
    assert f"{MAX_REPLY_CHARS + 1:,} characters, over the limit of {MAX_REPLY_CHARS:,}" in reply.errors[0]


@pytest.mark.fault("yaml")
def test_malformed_yaml_is_an_error():
    text = '<config slot="1" parent="root" strategy="explore">\ntraining: [unclosed\n</config>'
    errors = parse_reply(text).errors
    assert errors == [
        "config slot 1: line 1: key 'training': malformed YAML: expected ',' or ']', but got '<stream end>'"
    ]


@pytest.mark.fault("reply")
def test_bad_attributes_are_errors():
    text = '<config slot="x" parent="me" strategy="guess" colour="red">\n</config>'
    reply = parse_reply(text)
    assert reply.proposals == []
    assert reply.errors == [
        "config slot x: unknown attribute(s) colour",
        "config slot x: slot must be a non-negative integer, got 'x'",
        "config slot x: parent must be 'root' or a node id, got 'me'",
        "config slot x: strategy must be one of baseline, exploit, explore, robustness-check, got 'guess'",
    ]


@pytest.mark.fault("reply")
def test_unclosed_tags_are_errors():
    errors = parse_reply('<entries>\n## Iter 1: failed\n<config slot="0" parent="root" strategy="explore">\n').errors
    assert "<entries>: opened 1 time(s) but closed 0 time(s)" in errors
    assert any("no matching </config>" in e for e in errors)


def test_text_outside_the_parts_is_ignored(valid_reply):
    assert parse_reply("Some thoughts: Node: id=3\n" + valid_reply + "\nThanks!").errors == []
