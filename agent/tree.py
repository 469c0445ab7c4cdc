"""The per-block UCB exploration tree (PROTOCOL.md section 6).

Nodes are iterations; edges are the parents each entry declared (``SlotResult.parent``). Only the
nodes of one block take part: ``visits(u) = 1 + descendants of u within the block`` and
``UCB(u) = R2(u) + c * sqrt(N) / (1 + visits(u))`` with N the block's node count. A parent outside
the block (or ``root``) makes the node a root of the block's tree.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agent.profile import Profile
from agent.protocol import UCB_C
from agent.protocol import reward as profile_reward
from experiment.exploration import ROOT, Parent, SlotResult
from memory.variance import config_key

Reward = Literal["node", "replicate_mean"]


class UcbEntry(BaseModel):
    """One node's line of the UCB ranking."""

    model_config = ConfigDict(extra="forbid")

    node: int
    parent: Parent
    visits: int
    ucb: float
    reward: float
    r2: float
    pearson: float
    cluster: float
    tau: float
    vrest: float
    mutation: str
    failed: bool = False


def visit_counts(nodes: dict[int, Parent]) -> dict[int, int]:
    """visits(u) = 1 + number of descendants of u, over the given node -> parent map.

    Parents not in the map count as ``root``. Each node adds one visit to itself and to every
    ancestor; a cycle (impossible with valid replies) is cut where it closes.
    """
    visits = dict.fromkeys(nodes, 1)
    for node in nodes:
        seen = {node}
        parent = nodes[node]
        while parent != ROOT and parent in nodes and parent not in seen:
            visits[parent] += 1
            seen.add(parent)
            parent = nodes[parent]
    return visits


def node_score(r: SlotResult, profile: Profile | None = None) -> float:
    """A node's R2 in the tree: connectivity_R2 (alternating), else the profile's reward (primary metric, 0 when
    a hard constraint fails)."""
    return r.conn_r2 if profile is None else profile_reward(r, profile)


def _replicate_means(results: list[SlotResult], profile: Profile | None = None) -> dict[str, float]:
    """Mean node score per config key over the whole run (failed runs count 0)."""
    sums: dict[str, list[float]] = {}
    for r in results:
        sums.setdefault(config_key(r.trainable), []).append(node_score(r, profile))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def ucb_ranking(
    results: list[SlotResult],
    block: int,
    c: float = UCB_C,
    reward: Reward = "node",
    profile: Profile | None = None,
) -> list[UcbEntry]:
    """UCB entries of the block's nodes, best first (ties by node id).

    ``results`` may hold the whole run: only nodes with ``block == block`` are scored, and the
    ``replicate_mean`` reward averages conn_R2 over every run (any block) with the node's config.
    """
    members = sorted((r for r in results if r.block == block), key=lambda r: r.iteration)
    if not members:
        return []
    nodes = {r.iteration: r.parent for r in members}
    visits = visit_counts(nodes)
    explore = c * math.sqrt(len(members))
    means = _replicate_means(results, profile) if reward == "replicate_mean" else {}
    entries = []
    for r in members:
        value = means[config_key(r.trainable)] if reward == "replicate_mean" else node_score(r, profile)
        m = r.metrics if r.status == "completed" else None
        entries.append(
            UcbEntry(
                node=r.iteration,
                parent=r.parent,
                visits=visits[r.iteration],
                ucb=value + explore / (1 + visits[r.iteration]),
                reward=value,
                r2=r.conn_r2,
                pearson=m.test_pearson if m else 0.0,
                cluster=m.cluster_accuracy if m else 0.0,
                tau=m.tau_R2 if m else 0.0,
                vrest=m.V_rest_R2 if m else 0.0,
                mutation=r.mutation,
                failed=r.status == "failed",
            )
        )
    return sorted(entries, key=lambda e: (-e.ucb, e.node))


def render_ucb_line(e: UcbEntry) -> str:
    """``Node 7: UCB=2.968, parent=3, visits=1, R2=0.951, ..., Mutation=...`` (``[FAILED]`` when failed)."""
    mutation = f"{e.mutation} [FAILED]" if e.failed else e.mutation
    return (
        f"Node {e.node}: UCB={e.ucb:.3f}, parent={e.parent}, visits={e.visits}, R2={e.r2:.3f}, "
        f"Pearson={e.pearson:.3f}, Cluster={e.cluster:.3f}, tau_R2={e.tau:.3f}, V_rest_R2={e.vrest:.3f}, "
        f"Mutation={mutation}"
    )


def render_ucb_scores(entries: list[UcbEntry], block: int, first_iter: int, last_iter: int, c: float) -> str:
    """The ``ucb_scores.txt`` text: header, blank line, one line per node best first."""
    header = f"=== UCB Scores (block {block}, iters {first_iter}-{last_iter}, N={len(entries)}, c={c:g}) ==="
    return "\n".join([header, "", *(render_ucb_line(e) for e in entries)]) + "\n"


def block_span(results: list[SlotResult], block: int) -> tuple[int, int]:
    """First and last iteration that ran in the block (its nodes so far)."""
    its = [r.iteration for r in results if r.block == block]
    if not its:
        raise ValueError(f"block_span: block {block} has no nodes")
    return min(its), max(its)


def best_node(results: list[SlotResult], profile: Profile | None = None) -> SlotResult | None:
    """The completed node with the highest score (connectivity_R2, or the profile's reward) in the whole run
    (ties: lowest iteration)."""
    done = [r for r in results if r.status == "completed" and r.metrics is not None]
    if not done:
        return None
    return min(done, key=lambda r: (-node_score(r, profile), r.iteration))
