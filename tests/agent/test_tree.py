"""UCB tree: visits, scores, per-block isolation, ordering, ucb_scores.txt format."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.tree import best_node, render_ucb_scores, ucb_ranking, visit_counts
from experiment.exploration import block_of, block_range
from helpers.results import default_trainable, scenario, slot_result


def test_four_root_nodes_give_the_protocol_check_value():
    results = [slot_result(i, conn=0.949 if i == 1 else 0.5) for i in range(1, 5)]
    entries = ucb_ranking(results, block=1, c=1.414)
    assert entries[0].node == 1
    assert f"{entries[0].ucb:.3f}" == "2.363"


def test_block_of_and_block_range_agree():
    assert block_of(1, 12) == 1 and block_of(12, 12) == 1 and block_of(13, 12) == 2
    assert block_range(2, 12) == (13, 24)
    with pytest.raises(ValueError, match="must be >= 1"):
        block_of(0, 12)


def test_failed_node_scores_zero_reward_and_prints_failed():
    results = [slot_result(1, conn=0.9), slot_result(2, failed=True)]
    entries = {e.node: e for e in ucb_ranking(results, 1, 1.414)}
    assert entries[2].r2 == 0.0 and entries[2].failed
    text = render_ucb_scores(list(entries.values()), 1, 1, 2, 1.414)
    line = next(x for x in text.splitlines() if x.startswith("Node 2:"))
    assert line.startswith("Node 2: UCB=1.000, parent=root, visits=1, R2=0.000, Pearson=0.000, Cluster=0.000")
    assert line.endswith("Mutation=[none] — baseline defaults [FAILED]")


def test_ucb_scores_header_and_line_format():
    results = [slot_result(3, conn=0.9), slot_result(7, conn=0.951, parent=3, mutation="n_alternations: 4 -> 6")]
    entries = ucb_ranking(results, 1, 1.414)
    text = render_ucb_scores(entries, 1, 3, 7, 1.414)
    lines = text.splitlines()
    assert lines[0] == "=== UCB Scores (block 1, iters 3-7, N=2, c=1.414) ==="
    assert lines[1] == ""
    assert lines[2] == (
        "Node 7: UCB=1.951, parent=3, visits=1, R2=0.951, Pearson=0.980, Cluster=0.850, "
        "tau_R2=0.950, V_rest_R2=0.500, Mutation=n_alternations: 4 -> 6"
    )


def test_replicate_mean_reward_averages_the_config_over_the_whole_run():
    results = [slot_result(1, conn=0.8), slot_result(13, conn=1.0)]  # same config, different blocks
    node = ucb_ranking(results, 2, 1.0, reward="node")[0]
    mean = ucb_ranking(results, 2, 1.0, reward="replicate_mean")[0]
    assert node.reward == pytest.approx(1.0)
    assert mean.reward == pytest.approx(0.9)
    assert mean.r2 == pytest.approx(1.0)  # the printed R2 stays the node's own


def test_best_node_is_highest_completed_conn_r2():
    assert best_node(scenario()).iteration == 13
    assert best_node([slot_result(1, failed=True)]) is None


# ----- properties -----------------------------------------------------------------------------------
@st.composite
def forests(draw, first: int = 1, max_nodes: int = 12):
    """A block's nodes: each parent is root or an earlier node of the block."""
    n = draw(st.integers(1, max_nodes))
    parents: dict[int, int | str] = {}
    for k in range(n):
        node = first + k
        choice = draw(st.integers(-1, k - 1)) if k else -1
        parents[node] = "root" if choice < 0 else first + choice
    return parents


def _descendants(parents: dict[int, int | str], u: int) -> int:
    count = 0
    for v in parents:
        p = parents[v]
        while p != "root":
            if p == u:
                count += 1
                break
            p = parents[p]
    return count


@settings(max_examples=60, deadline=None)
@given(forests())
def test_visits_are_one_plus_descendants(parents):
    visits = visit_counts(parents)
    assert all(visits[u] == 1 + _descendants(parents, u) for u in parents)


@settings(max_examples=40, deadline=None)
@given(forests(first=13), forests(first=1), forests(first=25), st.lists(st.floats(0, 1), min_size=36, max_size=36))
def test_other_blocks_never_change_a_blocks_scores(block2, block1, block3, r2s):
    def build(parents, block):
        return [
            slot_result(i, conn=r2s[(i - 1) % 36], parent=p, block=block, trainable=default_trainable(n_alternations=i))
            for i, p in parents.items()
        ]

    own = build(block2, 2)
    alone = ucb_ranking(own, 2, 1.414)
    mixed = ucb_ranking(build(block1, 1) + own + build(block3, 3), 2, 1.414)
    assert alone == mixed


@settings(max_examples=40, deadline=None)
@given(forests(), st.lists(st.sampled_from([0.0, 0.5, 0.9, 0.95]), min_size=12, max_size=12))
def test_ranking_is_best_first_with_ties_by_id(parents, r2s):
    results = [slot_result(i, conn=r2s[i - 1], parent=p) for i, p in parents.items()]
    entries = ucb_ranking(results, 1, 1.414)
    keys = [(-e.ucb, e.node) for e in entries]
    assert keys == sorted(keys)
    n = len(parents)
    assert all(math.isclose(e.ucb, e.reward + 1.414 * math.sqrt(n) / (1 + e.visits)) for e in entries)
