"""Check a parsed reply against what the controller measured and against the protocol's rules.

Every check of PROTOCOL.md section 4 and the parallel addendum's strategy rules: the entries must
restate the measured numbers and the recorded tree, the memory update may touch only the LLM's
sections, and the proposed configs must obey the config policy and the replicate/baseline rules.
All problems are returned (not only the first), each as one self-contained line for the LLM.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from agent import protocol
from agent.claims import CV_TOL, ClaimFacts, metric_tolerance, reference_figures
from agent.config_policy import (
    BASELINE_MUTATION,
    SECTIONS,
    EditRejected,
    Trainable,
    apply_overlay,
    diff_trainable,
    format_mutation,
    growth_errors,
    is_number,
    normalize_trainable,
    replicate_mutation,
)
from agent.data_claims import check_entry, check_memory
from agent.profile import Profile
from agent.protocol import config_aliases, format_value
from agent.reply_parse import (
    CONTROLLER_SECTIONS,
    ENTRY_KEYS,
    LLM_SECTIONS,
    TRENDS,
    ChangeClaim,
    ConfigProposal,
    IterEntry,
    Printed,
    Reply,
    ReplyRejected,
    parse_number,
    parse_reply,
    shorten,
)
from experiment.config import ConfigError, parse_experiment
from experiment.exploration import ROOT, Parent, SlotResult, block_of
from experiment.records import METRIC_KEYS
from memory.documents import MemoryDocument, MemoryDocumentError
from memory.variance import VarianceRow, config_key, variance_table

TRAJECTORY_TOL = 5e-3  # metric tolerances (METRIC_TOL, TIME_TOL_MIN, CV_TOL) live in agent.claims
MUTATION_RTOL = 1e-6
FAILED_REQUIRED = ("Node", "Mode/Strategy", "Mutation", "Observation", "Next")


class ReplyContext(BaseModel):
    """What the controller knows when it checks a reply."""

    model_config = ConfigDict(extra="forbid")

    is_start: bool = Field(description="PARALLEL START: no batch has run yet")
    batch_results: list[SlotResult] = Field(default_factory=list, description="the batch that just finished")
    all_results: list[SlotResult] = Field(default_factory=list, description="every result of the run so far")
    next_iterations: list[int] = Field(description="iterations of the next batch, slot order (empty: run over)")
    next_starts_block: bool = Field(description="the next batch opens a new block (all parents root)")
    block: int = Field(1, ge=1, description="block of the finished batch (1 at START)")
    base_trainable: Trainable = Field(description="normalised trainable of the base config (parent 'root')")
    ucb_c: float = protocol.UCB_C
    n_iter_block: int = Field(protocol.N_ITER_BLOCK, ge=1)
    baseline_batches: int = Field(protocol.BASELINE_BATCHES, ge=0)
    time_limit_min: float = Field(protocol.TIME_LIMIT_MIN, gt=0)
    variance_rows: list[VarianceRow] | None = Field(None, description="None: computed from all_results")
    instruction_text: str = Field(
        "", description="the instructions the LLM read (base + addendum): their figures are citable when attributed"
    )
    profile: Profile | None = Field(None, description="the exploration's profile (None: the alternating one)")

    _table: list[VarianceRow] | None = PrivateAttr(None)  # variance_table(all_results), once per context

    def rows(self) -> list[VarianceRow]:
        """The variance table of the run so far (given, or computed once per context)."""
        if self.variance_rows is not None:
            return self.variance_rows
        if self._table is None:
            self._table = variance_table(self.all_results)
        return self._table

    @property
    def next_batch(self) -> int:
        return max((r.batch for r in self.all_results), default=0) + 1

    @property
    def next_block(self) -> int:
        return block_of(self.next_iterations[0], self.n_iter_block) if self.next_iterations else self.block


class PlannedSlot(BaseModel):
    """A validated proposal, ready for the controller to write and dispatch."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    slot: int
    batch: int
    block: int
    parent: Parent
    replicate_of: int | None
    strategy: str
    trainable: Trainable
    mutation: str


# ---------------------------------------------------------------------------------------------- helpers


def _num(x: float) -> str:
    return f"{x:.6g}"


def _value_matches(text: str, actual: Any) -> bool:
    """A printed Mutation value against a config value: numbers numerically (rel 1e-6), bools by word."""
    t = text.strip().strip("'\"")
    if isinstance(actual, bool):
        return t.lower() in ("true", "false") and (t.lower() == "true") == actual
    if is_number(actual):
        num = parse_number(t)
        return isinstance(num, Printed) and math.isclose(num.value, actual, rel_tol=MUTATION_RTOL, abs_tol=1e-12)
    return t == format_value(actual)


def _trainable_of(parent: Parent, known: dict[int, SlotResult], base: Trainable) -> Trainable | None:
    if parent == ROOT:
        return base
    node = known.get(int(parent))
    return node.trainable if node is not None else None


def _parent_desc(parent: Parent) -> str:
    return "the base config (parent root)" if parent == ROOT else f"parent {parent}"


# ---------------------------------------------------------------------------------------------- entries


def _check_entry_set(reply: Reply, ctx: ReplyContext) -> list[str]:
    if ctx.is_start:
        if reply.entries:
            return ["<entries>: the PARALLEL START reply has no finished iterations; leave out '## Iter' entries"]
        return []
    expected = sorted(r.iteration for r in ctx.batch_results)
    span = f"{expected[0]}-{expected[-1]}" if expected else "none"
    if not reply.has_entries_block:
        return [f"<entries>: missing; write one '## Iter N:' entry for each of iterations {span}"]
    errors, seen = [], []
    for e in reply.entries:
        if e.iteration in seen:
            errors.append(f"Iter {e.iteration}: entry given twice")
        elif e.iteration not in expected:
            errors.append(f"Iter {e.iteration}: not an iteration of this batch (expected {span})")
        else:
            seen.append(e.iteration)
    errors.extend(f"Iter {i}: entry missing" for i in expected if i not in seen)
    if not errors and seen != expected:
        errors.append(f"<entries>: entries must be in iteration order ({', '.join(map(str, expected))})")
    return errors


def _check_lines(e: IterEntry, r: SlotResult) -> list[str]:
    required = FAILED_REQUIRED if r.status == "failed" else tuple(ENTRY_KEYS.values())
    return [f"Iter {e.iteration}: missing '{k}:' line" for k in required if k not in e.lines]


def _check_status(e: IterEntry, r: SlotResult, profile: Profile | None = None) -> list[str]:
    p = protocol.resolve(profile)
    want = protocol.entry_status(r, p)
    words = [w.lower() for w in p.status.words]
    if e.status == want.lower():
        return []
    if e.status not in words:
        return [
            f"Iter {e.iteration}: status '{shorten(e.status)}' is not one of {'/'.join(p.status.words)}; "
            f"measured '{want}'"
        ]
    if r.status == "failed" or r.metrics is None:
        return [f"Iter {e.iteration}: status '{shorten(e.status)}' but the slot failed; write '{p.status.words[2]}'"]
    measured = [p.status.metric, *(m for m in p.status.constraints if m != p.status.metric)]
    values = ", ".join(f"{m}={_num(getattr(r.metrics, m))}" for m in measured)
    return [
        f"Iter {e.iteration}: status '{shorten(e.status)}' but measured {values} "
        f"is '{want}' ({protocol.status_rule_text(p)})"
    ]


def _check_node(e: IterEntry, r: SlotResult, ctx: ReplyContext) -> list[str]:
    where, errors = f"Iter {e.iteration}", []
    if e.node_id is not None and e.node_id != r.iteration:
        errors.append(f"{where}: Node: id={e.node_id} but this entry is node {r.iteration}")
    if e.parent is not None and e.parent != r.parent:
        errors.append(f"{where}: Node: parent={e.parent} but the slot was proposed with parent={r.parent}")
    elif e.parent not in (None, ROOT) and block_of(int(e.parent), ctx.n_iter_block) != r.block:
        errors.append(f"{where}: Node: parent={e.parent} is not a node of block {r.block}")
    if e.strategy is not None and not e.strategy.startswith(r.strategy.lower()):
        errors.append(
            f"{where}: Mode/Strategy: says '{shorten(e.strategy)}' but the slot was proposed as '{r.strategy}'"
        )
    return errors


def _check_config_line(e: IterEntry, r: SlotResult, profile: Profile | None = None) -> list[str]:
    if e.config is None:
        return []
    where, errors, aliases = f"Iter {e.iteration}: Config", [], config_aliases(profile)
    errors.extend(f"{where}: {alias} missing" for alias in aliases if alias not in e.config)
    for name, printed in e.config.items():
        key = aliases.get(name) or next((f"{s}.{name}" for s in SECTIONS if name in r.trainable.get(s, {})), "")
        section, _, field = key.partition(".")
        actual = r.trainable.get(section, {}).get(field) if key else None
        if not key or not (is_number(actual) or isinstance(actual, bool)):
            errors.append(f"{where}: '{name}' is not a numeric or true/false parameter of the config")
        elif isinstance(actual, bool):
            if printed.value != float(actual):
                errors.append(f"{where}: {name}={bool(printed.value)} but the config has {actual}")
        elif abs(printed.value - actual) > printed.half_unit + MUTATION_RTOL * abs(actual):
            errors.append(f"{where}: {name}={printed.text} but the config has {format_value(actual)}")
    return errors


def _check_metrics(e: IterEntry, r: SlotResult) -> list[str]:
    where = f"Iter {e.iteration}: Metrics"
    if r.metrics is None:
        if e.metrics:
            return [f"{where}: the slot failed and nothing was measured; write 'Metrics: n/a'"]
        return []
    if e.metrics is None:
        return [f"{where}: n/a but the slot was measured; copy the measured values"] if "Metrics" in e.lines else []
    measured = r.metrics.model_dump()
    errors = [f"{where}: {k} missing" for k in METRIC_KEYS if k not in e.metrics]
    for key, printed in e.metrics.items():
        if key not in measured:
            errors.append(f"{where}: '{key}' is not a measured metric (hallucinated metric)")
        elif abs(printed.value - measured[key]) > metric_tolerance(key, measured[key], printed.half_unit):
            errors.append(f"{where}: {key}={printed.text} but measured {_num(measured[key])}")
    return errors


def _norm_phase(text: str) -> str:
    return text.lower().replace("-phase", "").replace(" phase", "").replace("phase", "").strip()


def _check_trajectory(e: IterEntry, r: SlotResult) -> list[str]:
    where, d, claim = f"Iter {e.iteration}: R2 trajectory", r.trajectory, e.trajectory
    if e.is_na("R2 trajectory"):
        if d is None or r.status == "failed":
            return []
        return [f"{where}: n/a but the digest is peak={d.peak:.3f} at iter {d.peak_iteration}, final={d.final:.3f}"]
    if claim is None:
        return []
    if d is None:
        return [f"{where}: no R2 log was recorded for this slot; write 'R2 trajectory: n/a'"]
    errors = []
    if abs(claim.peak.value - d.peak) > TRAJECTORY_TOL:
        errors.append(f"{where}: peak={claim.peak.text} but the digest has peak={d.peak:.4f}")
    if claim.peak_iteration != d.peak_iteration:
        errors.append(f"{where}: peak at iter {claim.peak_iteration} but the digest has iter {d.peak_iteration}")
    if claim.peak_phase is not None and _norm_phase(claim.peak_phase) != _norm_phase(d.peak_phase):
        errors.append(f"{where}: peak phase '{claim.peak_phase}' but the digest has '{d.peak_phase}'")
    if abs(claim.final.value - d.final) > TRAJECTORY_TOL:
        errors.append(f"{where}: final={claim.final.text} but the digest has final={d.final:.4f}")
    if claim.trend != d.trend:
        allowed = "/".join(TRENDS)
        errors.append(f"{where}: trend={claim.trend} but the digest has trend={d.trend} ({allowed})")
    return errors


def expected_mutation(r: SlotResult, known: dict[int, SlotResult], base: Trainable) -> str | None:
    """The Mutation value a node's entry must carry (None when its parent is unknown)."""
    if r.replicate_of is not None:
        return replicate_mutation(r.replicate_of)
    parent = _trainable_of(r.parent, known, base)
    if parent is None:
        return None
    return format_mutation(parent, r.trainable, parent_id=r.parent)


def _changes_match(claims: list[ChangeClaim], parent: Trainable, child: Trainable) -> bool:
    changes = diff_trainable(parent, child)
    if len(claims) != len(changes):
        return False
    unmatched = list(claims)
    for ch in changes:
        hit = next(
            (
                c
                for c in unmatched
                if c.param == ch.name and _value_matches(c.old, ch.old) and _value_matches(c.new, ch.new)
            ),
            None,
        )
        if hit is None:
            return False
        unmatched.remove(hit)
    return True


def _check_mutation(e: IterEntry, r: SlotResult, known: dict[int, SlotResult], base: Trainable) -> list[str]:
    where, claim = f"Iter {e.iteration}: Mutation", e.mutation
    want = expected_mutation(r, known, base)
    if claim is None or want is None:
        return [] if want is not None else [f"{where}: parent {r.parent} of node {r.iteration} is unknown"]
    if want.startswith("[none]"):
        ok = (claim.kind == "replicate" and replicate_mutation(claim.replicate_of or 0) == want) or (
            claim.kind == "baseline" and want == BASELINE_MUTATION
        )
        if ok:
            return []
        why = "it re-ran a config verbatim" if want != BASELINE_MUTATION else "it ran the base config unchanged"
        return [f"{where}: says '{claim.text}' but expected '{want}' ({why})"]
    parent = _trainable_of(r.parent, known, base) or base
    if claim.kind == "changes" and _changes_match(claim.changes, parent, r.trainable):
        return []
    return [f"{where}: says '{claim.text}' but the config differs from {_parent_desc(r.parent)} by '{want}'"]


def _row_of(iteration: int, rows: list[VarianceRow]) -> VarianceRow | None:
    return next((row for row in rows if iteration in row.iterations), None)


def _check_variance(e: IterEntry, r: SlotResult, rows: list[VarianceRow]) -> list[str]:
    claim, where = e.variance, f"Iter {e.iteration}: Variance update"
    row = _row_of(r.iteration, rows)
    if claim is None or row is None:
        return []
    errors = []
    if claim.config_id != row.config_id:
        errors.append(f"{where}: config id {claim.config_id} but node {r.iteration} ran {row.config_id}")
    if claim.runs != row.runs:
        errors.append(f"{where}: {claim.runs} runs but {row.config_id} has {row.runs}")
    for label, printed, actual in (
        ("CV(conn_R2)", claim.cv_conn, row.conn_cv),
        ("CV(V_rest_R2)", claim.cv_vrest, row.vrest_cv),
    ):
        if math.isfinite(actual) and abs(printed.value - actual) > CV_TOL:
            errors.append(f"{where}: {label}={printed.text}% but the variance table has {actual:.1f}%")
    return errors


def _check_next(e: IterEntry, batch: set[int], known: dict[int, SlotResult]) -> list[str]:
    p, where = e.next_parent, f"Iter {e.iteration}: Next"
    if p is None or p == ROOT:
        return []
    if p == e.iteration + 1 and p in batch:
        return [f"{where}: parent={p} is the next slot of the same batch (id+1); name a finished node or root"]
    if p not in known:
        return [f"{where}: parent={p} is not an existing node"]
    return []


def claim_facts(ctx: ReplyContext) -> ClaimFacts:
    """What the free-text claims of a reply (entries and memory) may restate."""
    known = {r.iteration: r for r in ctx.all_results}
    known.update({r.iteration: r for r in ctx.batch_results})
    return ClaimFacts(
        results=known,
        rows=ctx.rows() if known else [],
        batch=sorted(r.iteration for r in ctx.batch_results),
        references=reference_figures(ctx.instruction_text),
        primary=protocol.resolve(ctx.profile).primary_metric,
        constraints=dict(protocol.resolve(ctx.profile).status.constraints),
    )


def _check_entries(reply: Reply, ctx: ReplyContext, facts: ClaimFacts) -> list[str]:
    errors = _check_entry_set(reply, ctx)
    known = facts.results
    batch = set(facts.batch)
    rows = facts.rows if ctx.batch_results else []
    by_iter: dict[int, IterEntry] = {}
    for e in reply.entries:
        by_iter.setdefault(e.iteration, e)
    for r in sorted(ctx.batch_results, key=lambda r: r.iteration):
        e = by_iter.get(r.iteration)
        if e is None:
            continue
        errors += _check_lines(e, r)
        errors += _check_status(e, r, ctx.profile)
        errors += _check_node(e, r, ctx)
        errors += _check_config_line(e, r, ctx.profile)
        errors += _check_metrics(e, r)
        errors += _check_trajectory(e, r)
        errors += _check_mutation(e, r, known, ctx.base_trainable)
        errors += _check_variance(e, r, rows)
        errors += _check_next(e, batch, known)
        errors += check_entry(e.iteration, e.text, r, facts)
    return errors


def _check_memory(reply: Reply, facts: ClaimFacts) -> list[str]:
    """Section names, each body against memory.md's own rules (so an accepted update always applies), and the
    claims of its text as in an entry."""
    errors = []
    for name, content in reply.memory.items():
        if name in CONTROLLER_SECTIONS:
            errors.append(f"memory: section '{name}' is controller-owned; leave it out")
        elif name not in LLM_SECTIONS:
            errors.append(f"memory: unknown section '{shorten(name)}' (yours are: {', '.join(LLM_SECTIONS)})")
        else:
            try:
                MemoryDocument.parse("").replace_llm_sections({name: content})
            except MemoryDocumentError as err:
                errors.append(shorten(str(err), 300))
            else:
                errors += check_memory(name, content, facts)
    return errors


# ---------------------------------------------------------------------------------------------- proposals


def _resolve_one(
    p: ConfigProposal, ctx: ReplyContext, known: dict[int, SlotResult], block_nodes: set[int]
) -> tuple[PlannedSlot | None, list[str]]:
    label, iteration = f"config slot {p.slot}", ctx.next_iterations[p.slot]
    errors = []
    if p.parent != ROOT:
        if p.parent not in known:
            errors.append(f"{label}: parent={p.parent} is not an existing node")
        elif p.parent not in block_nodes:
            hint = ' (the next batch starts a new block: use parent="root")' if ctx.next_starts_block else ""
            errors.append(f"{label}: parent={p.parent} is not a node of block {ctx.next_block}{hint}")
    if p.replicate_of is not None:
        return _resolve_replicate(p, ctx, known, block_nodes, errors)
    if p.strategy == "robustness-check" and p.overlay:
        errors.append(f'{label}: a robustness-check re-runs a config verbatim: write replicate="X" and an empty body')
    parent_tr = _trainable_of(p.parent, known, ctx.base_trainable)
    if errors or parent_tr is None or p.overlay is None:
        return None, errors
    try:
        trainable = apply_overlay(parent_tr, p.overlay, label, ctx.profile)
        parse_experiment({"dataset": f"slot_{p.slot:02d}", **trainable}, label)
    except EditRejected as err:
        return None, err.errors
    except ConfigError as err:
        return None, str(err).splitlines()
    if p.parent != ROOT and protocol.over_time(known[int(p.parent)], ctx.time_limit_min):
        errors += growth_errors(parent_tr, trainable, label)
    replicate_of = int(p.parent) if p.parent != ROOT and not diff_trainable(parent_tr, trainable) else None
    mutation = format_mutation(parent_tr, trainable, parent_id=p.parent)
    planned = PlannedSlot(
        iteration=iteration,
        slot=p.slot,
        batch=ctx.next_batch,
        block=ctx.next_block,
        parent=p.parent,
        replicate_of=replicate_of,
        strategy=p.strategy,
        trainable=trainable,
        mutation=mutation,
    )
    return (None if errors else planned), errors


def _resolve_replicate(
    p: ConfigProposal, ctx: ReplyContext, known: dict[int, SlotResult], block_nodes: set[int], errors: list[str]
) -> tuple[PlannedSlot | None, list[str]]:
    label, x = f"config slot {p.slot}", p.replicate_of
    assert x is not None
    if x not in known:
        return None, [*errors, f"{label}: replicate={x} is not an existing node"]
    if p.overlay:
        errors.append(f"{label}: replicate={x} re-runs node {x}'s config verbatim: the body must be empty")
    want_parent: Parent = x if x in block_nodes else ROOT
    if p.parent != want_parent:
        errors.append(f'{label}: replicate={x} must have parent="{want_parent}" (got "{p.parent}")')
    if p.strategy != "robustness-check":
        errors.append(f"{label}: replicate={x} must use strategy=\"robustness-check\" (got '{p.strategy}')")
    if errors:
        return None, errors
    planned = PlannedSlot(
        iteration=ctx.next_iterations[p.slot],
        slot=p.slot,
        batch=ctx.next_batch,
        block=ctx.next_block,
        parent=want_parent,
        replicate_of=x,
        strategy=p.strategy,
        trainable=normalize_trainable(known[x].trainable, label),
        mutation=replicate_mutation(x),
    )
    return planned, []


def _slot_errors(reply: Reply, n: int) -> tuple[dict[int, ConfigProposal], list[str]]:
    by_slot: dict[int, ConfigProposal] = {}
    errors = []
    for p in reply.proposals:
        if p.slot >= n:
            errors.append(f"config slot {p.slot}: no such slot (the next batch has slots 0..{n - 1})")
        elif p.slot in by_slot:
            errors.append(f"config slot {p.slot}: given twice")
        else:
            by_slot[p.slot] = p
    errors.extend(
        f"config slot {s}: missing (one config block per slot 0..{n - 1})" for s in range(n) if s not in by_slot
    )
    return by_slot, errors


def _strategy_errors(planned: list[PlannedSlot], ctx: ReplyContext, known: dict[int, SlotResult]) -> list[str]:
    batch = ctx.next_batch
    if protocol.is_baseline_batch(ctx.next_block, batch, ctx.baseline_batches):
        base_key = config_key(ctx.base_trainable)
        return [
            f"config slot {s.slot}: block 1 batch {batch} runs the base defaults unchanged in every slot "
            f"(variance baseline, {ctx.baseline_batches} batches); this config differs by "
            f"'{format_mutation(ctx.base_trainable, s.trainable)}'"
            for s in planned
            if config_key(s.trainable) != base_key
        ]
    existing = {config_key(r.trainable) for r in known.values()}
    n_rep = sum(config_key(s.trainable) in existing for s in planned)
    rows = ctx.rows()
    short = protocol.short_top_configs(rows, ctx.profile)
    need = min(protocol.replicates_required(rows, ctx.profile), len(planned))
    if n_rep >= need:
        return []
    prof = protocol.resolve(ctx.profile)
    q, label = prof.replicates, protocol.metric_label(prof.primary_metric)
    if short:
        why = f"until the top {q.top_configs} configs by {label} mean each have >= {q.top_min_runs} runs; now "
        why += ", ".join(f"{row.config_id} has {row.runs}" for row in short)
    else:
        why = f"at least {q.steady} per batch once the top {q.top_configs} configs have >= {q.top_min_runs} runs"
    return [
        f"batch {batch}: {n_rep} replicate slot(s) (re-running an existing config), at least {need} required ({why})"
    ]


def _resolve(reply: Reply, ctx: ReplyContext) -> tuple[list[PlannedSlot], list[str]]:
    n = len(ctx.next_iterations)
    if n == 0:
        return [], []  # the run is over: proposals are ignored
    known = {r.iteration: r for r in ctx.all_results}
    known.update({r.iteration: r for r in ctx.batch_results})
    block_nodes = (
        set() if ctx.next_starts_block else {i for i in known if block_of(i, ctx.n_iter_block) == ctx.next_block}
    )
    by_slot, errors = _slot_errors(reply, n)
    planned = []
    for s in sorted(by_slot):
        p = by_slot[s]
        if p.broken:
            continue
        slot_plan, errs = _resolve_one(p, ctx, known, block_nodes)
        errors += errs
        if slot_plan is not None:
            planned.append(slot_plan)
    if len(planned) == n:
        errors += _strategy_errors(planned, ctx, known)
    return planned, errors


# ---------------------------------------------------------------------------------------------- API


def _check(reply: Reply, ctx: ReplyContext) -> tuple[list[PlannedSlot], list[str]]:
    """The planned slots and every problem of a parsed reply, from one pass over it."""
    errors = list(reply.errors)
    if reply.too_large:
        return [], errors  # not read: one size error, no "missing" errors about parts never looked at
    facts = claim_facts(ctx)
    errors += _check_entries(reply, ctx, facts)
    errors += _check_memory(reply, facts)
    planned, config_errors = _resolve(reply, ctx)
    return planned, errors + config_errors


def validate_reply(reply: Reply, ctx: ReplyContext) -> list[str]:
    """Every problem of a parsed reply (parse errors included); an empty list means accepted."""
    return _check(reply, ctx)[1]


def resolve_proposals(reply: Reply, ctx: ReplyContext) -> list[PlannedSlot]:
    """The next batch's slots from a reply; raises ReplyRejected with every error when it is not valid."""
    planned, errors = _check(reply, ctx)
    if errors:
        raise ReplyRejected(errors)
    return planned


def check_reply(text: str, ctx: ReplyContext) -> tuple[Reply, list[PlannedSlot]]:
    """Parse, validate and resolve a reply text in one call; raises ReplyRejected."""
    reply = parse_reply(text)
    return reply, resolve_proposals(reply, ctx)
