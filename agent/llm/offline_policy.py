"""The offline policy: a deterministic stand-in for the LLM that follows the parallel addendum.

It plays the run's profile (``ReplyContext.profile``; None: the alternating one): its status words, Config
line, locked keys and explorable values. Block 1 runs the defaults unchanged for ``baseline_batches`` batches;
afterwards each batch is exploit (highest-UCB node, one-parameter mutation from the profile's explorable
values), exploit (second UCB
node, or the same parent with another parameter), replicate (a promising config with < 3 runs)
and replicate (the best config), dropping to one replicate once the top 3 configs have >= 3 runs.
Its replies pass the same validation as the LLM's: it is the demo's default and the baseline the
LLM is measured against.
"""

from __future__ import annotations

from typing import Any

from agent import protocol
from agent.config_policy import Trainable, apply_overlay, diff_trainable, overlay_between
from agent.llm.base import LLMRequest
from agent.profile import Profile
from agent.prompts import config_line, metrics_line, trajectory_lines, variance_update_line
from agent.protocol import format_value
from agent.reply_check import ReplyContext
from agent.tree import UcbEntry, node_score, ucb_ranking
from experiment.exploration import ROOT, Parent, SlotResult, block_of
from memory.variance import VarianceRow, config_ids, config_key, variance_table

ExploreRanges = tuple[tuple[str, tuple[float | int | bool, ...]], ...]


def explore_ranges(profile: Profile | None = None, *, dotted: bool = False) -> ExploreRanges:
    """The profile's explorable keys the schema knows, with the values the policies try, in the profile's order
    (bare training keys unless ``dotted``; graph_model keys only when ``dotted``)."""
    items = protocol.resolve(profile).explore.items()
    if dotted:
        return tuple((key, spec.values) for key, spec in items)
    return tuple((key.split(".", 1)[1], spec.values) for key, spec in items if key.startswith("training."))


# The alternating profile's explorable parameters, in the order of the addendum's suggested block partition.
EXPLORE_RANGES: ExploreRanges = explore_ranges(protocol.ALTERNATE)


class Proposal:
    """One planned slot of the next batch, before it is written as a ``<config>`` block."""

    def __init__(
        self,
        slot: int,
        parent: Parent,
        strategy: str,
        overlay: dict[str, dict[str, Any]] | None = None,
        replicate_of: int | None = None,
    ) -> None:
        self.slot, self.parent, self.strategy = slot, parent, strategy
        self.overlay, self.replicate_of = overlay or {}, replicate_of

    def render(self) -> str:
        attrs = f'slot="{self.slot}" parent="{self.parent}"'
        if self.replicate_of is not None:
            attrs += f' replicate="{self.replicate_of}"'
        attrs += f' strategy="{self.strategy}"'
        body = "".join(
            f"{section}:\n" + "".join(f"  {k}: {format_value(v)}\n" for k, v in values.items())
            for section, values in self.overlay.items()
            if values
        )
        return f"<config {attrs}>\n{body}</config>"


def offline_policy(request: LLMRequest) -> str:
    """The reply for one request; the state comes from ``request.context['reply_context']``."""
    ctx = ReplyContext.model_validate(request.context["reply_context"])
    return OfflinePlanner(ctx).reply()


class OfflinePlanner:
    """Builds one reply from the controller's records (pure: same context, same text)."""

    def __init__(self, ctx: ReplyContext) -> None:
        self.ctx = ctx
        self.results = sorted(ctx.all_results, key=lambda r: r.iteration)
        self.by_id = {r.iteration: r for r in self.results}
        self.rows = variance_table(self.results) if self.results else []
        self.ids = config_ids(self.results) if self.results else {}
        self.row_of = {row.config_id: row for row in self.rows}
        self.seen = {config_key(r.trainable) for r in self.results}
        self.block = ctx.block
        self.profile = protocol.resolve(ctx.profile)
        self.explore = explore_ranges(ctx.profile, dotted=True)
        self.ranking: list[UcbEntry] = (
            ucb_ranking(self.results, self.block, ctx.ucb_c, profile=ctx.profile) if ctx.batch_results else []
        )

    # ------------------------------------------------------------------ reply
    def reply(self) -> str:
        parts = []
        if not self.ctx.is_start:
            parts.append("<entries>\n" + "\n\n".join(self.entry(r) for r in self._batch()) + "\n</entries>")
        parts.append("<memory>\n" + self.memory() + "\n</memory>")
        if self.ctx.next_iterations:
            parts.extend(p.render() for p in self.proposals())
        return "\n\n".join(parts) + "\n"

    def _batch(self) -> list[SlotResult]:
        return sorted(self.ctx.batch_results, key=lambda r: r.iteration)

    # ------------------------------------------------------------------ entries
    def entry(self, r: SlotResult) -> str:
        cid = self.ids[r.iteration]
        row = self.row_of[cid]
        lines = [
            f"## Iter {r.iteration}: {protocol.entry_status(r, self.ctx.profile)}",
            f"Node: id={r.iteration}, parent={r.parent}",
            f"Mode/Strategy: {r.strategy}",
            config_line(r.trainable, self.ctx.profile),
            metrics_line(r),
            trajectory_lines(r)[0],
            f"Embedding: {self._embedding_note(r)}",
            f"Mutation: {r.mutation}",
            f"Parent rule: {self._parent_rule(r)}",
            f"Observation: {self._observation(r, row)}",
            variance_update_line(cid, row),
            f"Next: parent={self._next_parent(r)}",
        ]
        return "\n".join(lines)

    def _embedding_note(self, r: SlotResult) -> str:
        if r.metrics is None:
            return "n/a (slot failed)"
        acc = r.metrics.cluster_accuracy
        quality = "well separated" if acc > 0.8 else "partly separated" if acc > 0.5 else "mostly mixed"
        return f"types {quality} (cluster_accuracy {acc:.3f})"

    def _parent_rule(self, r: SlotResult) -> str:
        if r.replicate_of is not None:
            return f"replicate of node {r.replicate_of} to build its variance estimate"
        if r.parent == ROOT:
            return "block start: root (base config or best config carried over)"
        return f"highest-UCB parent {r.parent} at proposal time"

    def _observation(self, r: SlotResult, row: VarianceRow) -> str:
        if r.status == "failed" or r.metrics is None:
            return f"slot failed ({r.failure_reason or 'no reason'}); counted as 0 in the variance table"
        d = r.trajectory
        traj = (
            f"R2 peak {d.peak:.3f} (phase {d.peak_phase}), final {d.final:.3f}, {d.trend}; "
            f"W-phases {d.w_phase_gain:+.3f}, V_rest-phases {d.vrest_phase_change:+.3f}"
            if d is not None
            else "no R2 trajectory"
        )
        return f"{traj}; config {row.config_id} mean conn_R2 {row.conn_mean:.3f} over {row.runs} runs ({row.verdict})"

    def _next_parent(self, r: SlotResult) -> Parent:
        batch_ids = {x.iteration for x in self._batch()}
        for e in self.ranking:
            if e.node != r.iteration + 1 or r.iteration + 1 not in batch_ids:
                return e.node
        return ROOT

    # ------------------------------------------------------------------ proposals
    def proposals(self) -> list[Proposal]:
        ctx = self.ctx
        n = len(ctx.next_iterations)
        if self._is_baseline_batch():
            return [Proposal(s, ROOT, "baseline") for s in range(n)]
        replicates = self._replicate_picks()
        n_rep = min(len(replicates), protocol.replicates_required(self.rows, self.ctx.profile), n)
        n_exploit = n - n_rep
        props = self._exploit_proposals(n_exploit)
        for k, node in enumerate(replicates[:n_rep]):
            slot = n_exploit + k
            parent: Parent = node if self._in_next_block(node) else ROOT
            props.append(Proposal(slot, parent, "robustness-check", replicate_of=node))
        return props

    def _is_baseline_batch(self) -> bool:
        """Block 1's first ``baseline_batches`` batches run the base config unchanged."""
        ctx = self.ctx
        return protocol.is_baseline_batch(
            block_of(ctx.next_iterations[0], ctx.n_iter_block), ctx.next_batch, ctx.baseline_batches
        )

    def _exploit_proposals(self, n: int) -> list[Proposal]:
        """Slots 0..n-1: one-parameter mutations of the best parents (UCB order inside a block)."""
        taken: set[str] = set()
        parents = self._exploit_parents(n)
        return [
            self._mutate(slot, parents[slot][0], parents[slot][1], taken, "exploit" if slot < 2 else "explore")
            for slot in range(n)
        ]

    def _in_next_block(self, node: int) -> bool:
        if self.ctx.next_starts_block:
            return False
        return self.by_id[node].block == block_of(self.ctx.next_iterations[0], self.ctx.n_iter_block)

    def _representative(self, row: VarianceRow) -> int:
        """The node to replicate for a config: its latest run in the current block, else its latest run."""
        in_block = [i for i in row.iterations if self._in_next_block(i)]
        return max(in_block) if in_block else max(row.iterations)

    def _replicate_picks(self) -> list[int]:
        """Slot 3's best config and slot 2's most promising under-sampled config (slot order kept)."""
        ranked = protocol.rank_configs(self.rows, self.ctx.profile)
        if not ranked:
            return []
        best = ranked[0]
        min_runs = self.profile.replicates.top_min_runs
        needy = [r for r in ranked if r.runs < min_runs and r.config_id != best.config_id]
        second = needy[0] if needy else (ranked[1] if len(ranked) > 1 else best)
        return [self._representative(second), self._representative(best)]

    def _exploit_parents(self, n: int) -> list[tuple[Parent, Trainable]]:
        """Parents for the exploit/explore slots: UCB order inside a block, best configs at a block start."""
        if self.ctx.next_starts_block or not self.ranking:
            ranked = protocol.rank_configs(self.rows, self.ctx.profile)
            cfgs = [self.by_id[row.iterations[0]].trainable for row in ranked] or [self.ctx.base_trainable]
            return [(ROOT, cfgs[min(k, len(cfgs) - 1)]) for k in range(n)]
        nodes = [e.node for e in self.ranking if self.by_id[e.node].status == "completed"] or [
            e.node for e in self.ranking
        ]
        return [(nodes[min(k, len(nodes) - 1)], self.by_id[nodes[min(k, len(nodes) - 1)]].trainable) for k in range(n)]

    def _mutate(self, slot: int, parent: Parent, parent_cfg: Trainable, taken: set[str], strategy: str) -> Proposal:
        """The first untried one-parameter change from the explore ranges (relative to ``parent_cfg``)."""
        base_overlay = self._overlay_from_root(parent_cfg) if parent == ROOT else {}
        for dotted, values in self.explore:
            section, _, key = dotted.partition(".")
            current = parent_cfg.get(section, {})
            for value in values:
                if key in current and _same(current[key], value):
                    continue
                overlay = _merge(base_overlay, {section: {key: value}})
                child = apply_overlay(self._start_cfg(parent), overlay, f"offline slot {slot}", self.ctx.profile)
                ckey = config_key(child)
                if ckey in self.seen or ckey in taken:
                    continue
                taken.add(ckey)
                return Proposal(slot, parent, strategy, overlay)
        # Everything in range was tried from here: re-run the parent config instead.
        return Proposal(slot, parent, strategy, base_overlay)

    def _start_cfg(self, parent: Parent) -> Trainable:
        return self.ctx.base_trainable if parent == ROOT else self.by_id[int(parent)].trainable

    def _overlay_from_root(self, cfg: Trainable) -> dict[str, dict[str, Any]]:
        return overlay_between(self.ctx.base_trainable, cfg)

    # ------------------------------------------------------------------ memory
    def memory(self) -> str:
        sections = {
            "Knowledge Base": self._knowledge_base(),
            "Established Principles": self._principles(),
            "Falsified Hypotheses": self._falsified(),
            "Open Questions": self._open_questions(),
            "Current Block": self._current_block(),
        }
        if self.ctx.next_starts_block and self.results:
            sections["Previous Block Summary"] = self._block_summary()
        return "\n\n".join(f"### {name}\n\n{body}" for name, body in sections.items())

    def _knowledge_base(self) -> str:
        if not self.results:
            return (
                f"No results yet. Block 1 runs the {self.profile.defaults_label} unchanged in all "
                f"{len(self.ctx.next_iterations) or 4} slots for {self.ctx.baseline_batches} batches to measure the "
                "variance baseline."
            )
        lines = [
            "| Parameter change (vs base) | Config | Runs | conn_R2 mean | V_rest_R2 mean | Verdict |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            cfg = self.by_id[row.iterations[0]].trainable
            change = "; ".join(ch.text() for ch in diff_trainable(self.ctx.base_trainable, cfg)) or "(base defaults)"
            lines.append(
                f"| {change} | {row.config_id} | {row.runs} | {row.conn_mean:.3f} | {row.vrest_mean:.3f} "
                f"| {row.verdict} |"
            )
        return "\n".join(lines)

    def _principles(self) -> str:
        robust = [r for r in self.rows if r.verdict == "robust"]
        if not robust:
            return "- None established yet (a config needs >= 3 runs within the robustness thresholds)."
        return "\n".join(f"- {r.config_id} is robust: conn_R2 {r.conn_mean:.3f} +/- {r.conn_std:.3f}" for r in robust)

    def _falsified(self) -> str:
        fragile = [r for r in self.rows if r.verdict == "fragile"]
        if not fragile:
            return "- None yet."
        return "\n".join(
            f"- {r.config_id} is not reliable: CV(conn_R2) {r.conn_cv:.1f}%, conn_R2 {r.conn_mean:.3f}" for r in fragile
        )

    def _open_questions(self) -> str:
        return "\n".join(f"- {q}" for q in self.profile.open_questions) or "- None yet."

    def _current_block(self) -> str:
        nxt = self.ctx.next_iterations
        if not nxt:
            return "Run complete."
        block = block_of(nxt[0], self.ctx.n_iter_block)
        if block == 1 and self.ctx.next_batch <= self.ctx.baseline_batches:
            hypothesis = f"baseline: measure the run-to-run variance of the {self.profile.defaults_label}"
        else:
            hypothesis = self._hypothesis(block)
        done = [r for r in self.results if r.block == block]
        best = max(done, key=lambda r: (node_score(r, self.ctx.profile), -r.iteration), default=None)
        lines = [
            f"Block {block}; next iterations {nxt[0]}-{nxt[-1]}.",
            f"Hypothesis: {hypothesis}.",
            f"Iterations in this block so far: {len(done)}.",
        ]
        primary = self.profile.primary_metric
        constraints = self.profile.status.constraints.items()
        kept = [r for r in done if all((protocol.metric_values(r) or {}).get(m, 0.0) > b for m, b in constraints)]
        if best is not None and best in kept:
            value = getattr(best.metrics, primary) if best.metrics is not None else 0.0
            lines.append(f"Best node in block: {best.iteration} ({protocol.metric_label(primary)} {value:.3f}).")
        return "\n".join(lines)

    def _hypothesis(self, block: int) -> str:
        """The Current Block hypothesis after the baseline batches."""
        names = [key.split(".", 1)[1] for key, _ in self.explore] or ["(none)"]
        name = names[(block - 2) % len(names)] if block > 1 else names[0]
        return f"one-parameter mutations from the best nodes (first untried: {name} and the explore ranges)"

    def _block_summary(self) -> str:
        block = self.ctx.block
        done = [r for r in self.results if r.block == block]
        best = max(done, key=lambda r: (node_score(r, self.ctx.profile), -r.iteration))
        failed = sum(1 for r in done if r.status == "failed")
        return (
            f"Block {block}: {len(done)} iterations, {failed} failed; best node {best.iteration} "
            f"(conn_R2 {best.conn_r2:.3f}, mutation {best.mutation})."
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    try:
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)), abs(float(b)))
    except (TypeError, ValueError):
        return a == b


def _merge(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in a.items()}
    for section, values in b.items():
        out.setdefault(section, {}).update(values)
    return out
