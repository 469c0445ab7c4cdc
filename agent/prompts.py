"""Prompt texts of the exploration: system text, PARALLEL START, per-batch prompt, re-ask.

Templates live in ``prompts/templates/`` (``string.Template`` ``$names``); instruction files in
``prompts/``. Every number the LLM must copy into its entries (metrics, trajectory, mutation,
variance update) is rendered here from the controller's records, so the validator can demand an
exact copy. Images are not part of the text: the prompt says which attached image is which slot's.
"""

from __future__ import annotations

import math
import re
import string
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent import protocol
from agent.profile import Profile, ProfileError, profile_path
from agent.protocol import config_line_keys, format_value
from agent.tree import best_node, render_ucb_scores, ucb_ranking
from experiment.config import ClaudeConfig
from experiment.exploration import Seeds, SlotResult, block_of, block_range
from experiment.records import ROLLOUT_CLAMP, SLOT_IMAGES, TEST_R2_FLOOR
from memory.documents import MemoryDocument
from memory.variance import VarianceRow, config_ids, render_variance_table, variance_table

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
TEMPLATES_DIR = PROMPTS_DIR / "templates"
REPLY_FORMAT = "reply_format.md"
METRIC_DIGITS = 4

# What each slot image shows, as the batch prompt states it (keys of experiment.records.SLOT_IMAGES).
IMAGE_DESCRIPTIONS: dict[str, str] = {
    "panel": (
        "the trained slot on one page: top row the embedding a coloured by true cell type, W* (y) against true W "
        "(x) with edges more than 5 off left out as in connectivity_R2, and conn_R2 at every R2 checkpoint with "
        "the W-phases shaded blue and the V_rest-phases orange; middle row learned against true tau and V_rest, "
        "and per cell type the median V_rest error against the median lever arm |mu - V_rest| / sigma of its "
        "training voltage (far from V_rest = V_rest only by extrapolation); bottom the training data as simulated "
        "(activity.png's traces: centre neuron of up to 12 types and the photoreceptor input, first 800 frames, "
        "each lane scaled to the range printed at its right, true V_rest dotted)."
    ),
    "activity": (
        "the slot's training data as simulated, before any training: the voltage of the centre neuron of up to "
        "12 cell types and the photoreceptor input over the first 800 frames. It depends only on the simulation "
        "(simulation.seed) and shows nothing about the trained model."
    ),
    "w_scatter": (
        "the trained model's corrected weights W* (y) against the true W (x), one dot per edge; edges more "
        "than 5 off are left out, as in connectivity_R2 (its value is in the title)."
    ),
    "rollout": (
        "the trained model's autonomous test rollout (dashed) against the true voltage (solid) for six neurons "
        "of different types, on held-out stimulus without noise; the title says when it diverged."
    ),
}


class PromptError(ValueError):
    """An instruction file or template is missing or malformed (one line naming the file)."""


class RunValues(BaseModel):
    """The run's effective numbers, as the controller enforces them: its config's ``claude:`` block, the batch
    size and ``--iterations``. The instruction pair is rendered with them, so the system text states these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_iterations: int = Field(ClaudeConfig.model_fields["n_iterations"].default, ge=1)
    n_slots: int = Field(ClaudeConfig.model_fields["n_slots"].default, ge=1)
    n_iter_block: int = Field(protocol.N_ITER_BLOCK, ge=1)
    baseline_batches: int = Field(protocol.BASELINE_BATCHES, ge=0)
    time_limit_min: float = Field(protocol.TIME_LIMIT_MIN, gt=0)
    ucb_c: float = Field(protocol.UCB_C, ge=0)
    trainer_iterations: int | None = Field(None, ge=1)  # --trainer-iterations: each slot's length, config aside

    @classmethod
    def of(
        cls,
        claude: ClaudeConfig,
        n_iterations: int | None = None,
        n_slots: int | None = None,
        trainer_iterations: int | None = None,
    ) -> RunValues:
        """From a run config's ``claude:`` block; ``--iterations``, the journal's batch size and
        ``--trainer-iterations`` win when given."""
        return cls(
            trainer_iterations=trainer_iterations,
            n_iterations=n_iterations or claude.n_iterations,
            n_slots=n_slots or claude.n_slots,
            n_iter_block=claude.n_iter_block,
            baseline_batches=claude.baseline_batches,
            time_limit_min=claude.time_limit_min,
            ucb_c=claude.ucb_c,
        )

    def placeholders(self, profile: Profile) -> dict[str, str]:
        """``{{name}}`` -> text for the instruction files: these run values and the profile's thresholds."""
        q, st = profile.replicates, profile.status
        n_batches = math.ceil(self.n_iterations / self.n_slots)
        per_block = self.n_iter_block / self.n_slots
        block_batches = f"{per_block:g} batch" + ("" if per_block == 1 else "es")
        baseline = f"{self.baseline_batches} batch" + ("" if self.baseline_batches == 1 else "es")
        values = {
            "n_iterations": self.n_iterations,
            "n_batches": n_batches,
            "n_slots": self.n_slots,
            "max_slot": self.n_slots - 1,
            "last_slot": f"{self.n_slots - 1:02d}",
            "n_iter_block": self.n_iter_block,
            "block_batches_text": block_batches,
            "baseline_batches": self.baseline_batches,
            "baseline_batches_text": baseline,
            "baseline_runs": self.baseline_batches * self.n_slots,
            "time_limit_min": f"{self.time_limit_min:g}",
            "ucb_c": f"{self.ucb_c:g}",
            "status_success": f"{st.success_above:g}",
            "status_partial": f"{st.partial_from:g}",
            "growth_replicates": q.growth,
            "steady_replicates": q.steady,
            "top_configs": q.top_configs,
            "top_min_runs": q.top_min_runs,
            **{f"constraint_{m}": f"{b:g}" for m, b in st.constraints.items()},
        }
        values["run_settings"] = (
            f"This run: {self.n_iterations} iterations in {n_batches} batches of {self.n_slots} slots; blocks of "
            f"{self.n_iter_block} iterations ({block_batches}); block 1 runs the base config unchanged for its first "
            f"{baseline} ({self.baseline_batches * self.n_slots} runs); a slot over {self.time_limit_min:g} minutes "
            f"is flagged OVER TIME LIMIT; UCB c = {self.ucb_c:g}. These are the numbers the controller enforces."
        )
        cut = self.n_iterations % self.n_iter_block
        if cut:
            last = math.ceil(self.n_iterations / self.n_iter_block)
            values["run_settings"] += (
                f" The run ends inside block {last}, after {cut} of its {self.n_iter_block} iterations: a block rule "
                "that needs more iterations than are left (3 runs of its best config, the carry-over) is kept as far "
                "as the run goes."
            )
        if self.trainer_iterations is not None:
            values["run_settings"] += (
                f" Each slot trains {self.trainer_iterations} iterations per epoch (`--trainer-iterations`), not the "
                "number the config's `data_augmentation_loop` formula gives."
            )
        return {k: str(v) for k, v in values.items()}


class Instructions(BaseModel):
    """The instruction pair, its profile, and the system text rendered with a run's values (identical across
    the run's calls)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base_path: str
    parallel_path: str
    base_template: str = Field(description="the base file as written ({{name}} placeholders)")
    parallel_template: str = Field(description="the parallel file as written ({{name}} placeholders)")
    base_text: str
    parallel_text: str
    system_text: str
    profile: Profile
    values: RunValues = RunValues()

    def for_run(self, values: RunValues) -> Instructions:
        """The same instructions rendered with a run's effective values."""
        if values == self.values:
            return self
        return _render_instructions(
            self.name,
            Path(self.base_path),
            Path(self.parallel_path),
            self.base_template,
            self.parallel_template,
            self.profile,
            values,
        )


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _render_text(text: str, values: dict[str, str], source: Path) -> str:
    """``{{name}}`` placeholders replaced; an unknown name is one PromptError naming the file."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise PromptError(f"{source}: placeholder {{{{{m.group(1)}}}}} has no value (known: {', '.join(values)})")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(sub, text)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"{path}: missing {what}") from None


def resolve_instruction_path(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else ``prompts/<name>`` (``.md`` added when missing)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".md" else f"{path.name}.md"
    candidate = PROMPTS_DIR / name
    if candidate.is_file():
        return candidate
    raise PromptError(f"{name_or_path}: instruction file not found (as a path or in {PROMPTS_DIR})")


def load_exploration_profile(base: Path) -> Profile:
    """The profile beside an instruction file (``<stem>.profile.yaml``); without one, the alternating profile."""
    path = profile_path(base)
    if not path.is_file():
        return protocol.default_profile()
    try:
        return protocol.load_profile(path)
    except ProfileError as err:
        raise PromptError(str(err)) from None


def run_profile(instructions: str | None) -> Profile | None:
    """The profile of a run that recorded ``instructions`` (its journal's start event); None (the alternating
    profile) when it recorded none or the file is gone since."""
    if not instructions:
        return None
    try:  # the profile file alone: the instruction texts are not read or rendered
        return load_exploration_profile(resolve_instruction_path(instructions))
    except PromptError:
        return None


def load_instructions(name_or_path: str | Path, values: RunValues | None = None) -> Instructions:
    """Base instructions, their ``<stem>_parallel.md`` addendum and ``<stem>.profile.yaml`` beside them, and the
    system text rendered with ``values`` (default: the protocol's defaults)."""
    base = resolve_instruction_path(name_or_path)
    if base.stem.endswith("_parallel"):
        raise PromptError(f"{base}: give the base instruction file, not the parallel addendum")
    parallel = base.with_name(f"{base.stem}_parallel.md")
    base_text = _read(base, "base instruction file")
    parallel_text = _read(parallel, "parallel instruction file (<stem>_parallel.md beside the base file)")
    profile = load_exploration_profile(base)
    return _render_instructions(base.name, base, parallel, base_text, parallel_text, profile, values or RunValues())


def _render_instructions(
    name: str,
    base: Path,
    parallel: Path,
    base_template: str,
    parallel_template: str,
    profile: Profile,
    values: RunValues,
) -> Instructions:
    placeholders = values.placeholders(profile)
    base_text = _render_text(base_template, placeholders, base)
    parallel_text = _render_text(parallel_template, placeholders, parallel)
    reply_format = _fill(REPLY_FORMAT, {**protocol.reply_format_values(profile), "n_slots": values.n_slots})
    system_text = "\n\n".join(t.strip("\n") for t in (base_text, parallel_text, reply_format)) + "\n"
    return Instructions(
        name=name,
        base_path=str(base),
        parallel_path=str(parallel),
        base_template=base_template,
        parallel_template=parallel_template,
        base_text=base_text,
        parallel_text=parallel_text,
        system_text=system_text,
        profile=profile,
        values=values,
    )


def _template(name: str) -> string.Template:
    return string.Template(_read(TEMPLATES_DIR / name, "prompt template"))


def _fill(name: str, values: dict[str, Any]) -> str:
    try:
        return _template(name).substitute(values)
    except (KeyError, ValueError) as err:
        raise PromptError(f"{TEMPLATES_DIR / name}: placeholder {err} has no value or is malformed") from None


# ----- value formatting ---------------------------------------------------------------------------
def config_line(trainable: dict[str, dict[str, Any]], profile: Profile | None = None) -> str:
    """The ``Config:`` line of a log entry from a trainable config (labels of the profile)."""
    training = trainable.get("training", {})
    parts = [
        f"{label}={format_value(training[key]) if key in training else '?'}" for label, key in config_line_keys(profile)
    ]
    return "Config: " + ", ".join(parts)


def metrics_line(result: SlotResult) -> str:
    """The ``Metrics:`` line with the measured values (``n/a`` for a failed slot)."""
    m = result.metrics if result.status == "completed" else None
    if m is None:
        return "Metrics: n/a"
    keys = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson")
    vals = [f"{k}={getattr(m, k):.{METRIC_DIGITS}f}" for k in keys]
    vals.append(f"training_time_min={m.training_time_min:.{METRIC_DIGITS}f}")
    return "Metrics: " + ", ".join(vals)


def rollout_lines(result: SlotResult) -> list[str]:
    """A ``Test rollout: DIVERGED`` line when the slot's autonomous test rollout diverged (else nothing)."""
    m = result.metrics if result.status == "completed" else None
    if m is None or not m.rollout_diverged:
        return []
    return [
        f"Test rollout: DIVERGED (the autonomous rollout reached the +-{ROLLOUT_CLAMP:g} voltage clamp; "
        f"test_R2 is floored at {TEST_R2_FLOOR:g})"
    ]


def trajectory_lines(result: SlotResult) -> list[str]:
    """The entry's ``R2 trajectory:`` line (``n/a`` without R2 log rows) plus a phase detail line."""
    d = result.trajectory
    if d is None:
        return ["R2 trajectory: n/a", "R2 phases: no R2 log rows were recorded"]
    d_ = METRIC_DIGITS
    line = f"R2 trajectory: peak={d.peak:.{d_}f} at iter {d.peak_iteration}, final={d.final:.{d_}f}, trend={d.trend}"
    if all(s.phase not in ("W", "V_rest") for s in d.segments):  # standard training: no phases to account for
        return [line, f"R2 points: {d.n_points} checkpoints, the last at iter {d.final_iteration} (one training phase)"]
    segs = " | ".join(f"{s.phase} {s.start_iteration}-{s.end_iteration} {s.r2_change:+.{d_}f}" for s in d.segments)
    detail = (
        f"R2 phases: peak in phase {d.peak_phase}, final at iter {d.final_iteration}, {d.n_points} points; "
        f"W-phases {d.w_phase_gain:+.{d_}f} in total, V_rest-phases {d.vrest_phase_change:+.{d_}f} in total; "
        f"segments: {segs}"
    )
    return [line, detail]


def variance_update_line(config_id: str, row: VarianceRow) -> str:
    return (
        f"Variance update: {config_id} now has {row.runs} runs, "
        f"CV(conn_R2)={row.conn_cv:.1f}%, CV(V_rest_R2)={row.vrest_cv:.1f}%"
    )


# ----- start prompt -------------------------------------------------------------------------------
class StartPromptInput(BaseModel):
    """Everything the PARALLEL START prompt shows."""

    model_config = ConfigDict(extra="forbid")

    run_name: str
    n_iterations: int = Field(ge=1)
    n_iter_block: int = Field(protocol.N_ITER_BLOCK, ge=1)
    n_slots: int = Field(4, ge=1)
    baseline_batches: int = Field(protocol.BASELINE_BATCHES, ge=0)
    base_config_name: str
    base_config_text: str
    config_files: list[str]
    memory_text: str
    user_input: str | None = None
    profile: Profile | None = Field(None, description="the exploration's profile (None: the alternating one)")

    @model_validator(mode="after")
    def _one_file_per_slot(self) -> StartPromptInput:
        if len(self.config_files) != self.n_slots:
            raise ValueError(f"config_files must list {self.n_slots} files, got {len(self.config_files)}")
        return self


def _user_input_block(text: str | None) -> str:
    if not text or not text.strip():
        return ""
    return (
        "\n## User input (user_input.md, written by a human for this batch)\n\n"
        f"{text.strip()}\n\n"
        "Follow it where it does not break the rules above, and say in Current Block how you acted on it.\n"
    )


def render_start_prompt(ctx: StartPromptInput) -> str:
    """The PARALLEL START prompt of a fresh run."""
    last = min(ctx.n_slots, ctx.n_iterations)
    seeds = "\n".join(
        f"- slot {s} (iteration {s + 1}): simulation.seed={sd.simulation}, training.seed={sd.training}"
        for s in range(last)
        for sd in [Seeds.for_slot(s + 1, s)]
    )
    return _fill(
        "start.md",
        {
            "run_name": ctx.run_name,
            "first": 1,
            "last": last,
            "n_iterations": ctx.n_iterations,
            "n_iter_block": ctx.n_iter_block,
            "max_slot": ctx.n_slots - 1,
            "n_slots": ctx.n_slots,
            "base_config_name": ctx.base_config_name,
            "base_config": ctx.base_config_text.strip("\n"),
            "config_files": "\n".join(f"- slot {s}: `{f}`" for s, f in enumerate(ctx.config_files)),
            "seeds": seeds,
            "baseline_batches": ctx.baseline_batches,
            "baseline_runs": ctx.baseline_batches * ctx.n_slots,
            "defaults_label": protocol.resolve(ctx.profile).defaults_label,
            "memory": ctx.memory_text.strip("\n"),
            "user_input": _user_input_block(ctx.user_input),
        },
    )


# ----- batch prompt -------------------------------------------------------------------------------
class BatchPromptInput(BaseModel):
    """Everything the per-batch prompt shows; ``results`` is the whole run so far, this batch included."""

    model_config = ConfigDict(extra="forbid")

    run_name: str
    results: list[SlotResult]
    batch_start: int = Field(ge=1, description="first iteration of the batch that just finished")
    n_iterations: int = Field(ge=1)
    n_iter_block: int = Field(protocol.N_ITER_BLOCK, ge=1)
    n_slots: int = Field(4, ge=1)
    baseline_batches: int = Field(protocol.BASELINE_BATCHES, ge=0)
    ucb_c: float = Field(protocol.UCB_C, ge=0)
    trainer_iterations: int | None = Field(None, ge=1)  # --trainer-iterations: each slot's length, config aside
    ucb_reward: Literal["node", "replicate_mean"] = "node"
    time_limit_min: float = Field(protocol.TIME_LIMIT_MIN, gt=0)
    memory_text: str
    user_input: str | None = None
    image_slots: list[int] | None = Field(
        None, description="slots whose panel.png is attached, in attachment order (default: completed slots)"
    )
    attached: list[tuple[int, str]] | None = Field(
        None, description="(slot, image kind) in attachment order; overrides image_slots (kinds: SLOT_IMAGES)"
    )
    profile: Profile | None = Field(None, description="the exploration's profile (None: the alternating one)")

    @model_validator(mode="after")
    def _batch_present(self) -> BatchPromptInput:
        its = {r.iteration for r in self.results}
        if self.batch_start not in its:
            raise ValueError(f"batch_start: iteration {self.batch_start} has no result")
        return self

    def batch(self) -> list[SlotResult]:
        last = self.batch_start + self.n_slots - 1
        return sorted((r for r in self.results if self.batch_start <= r.iteration <= last), key=lambda r: r.iteration)


def _slot_text(
    r: SlotResult, ids: dict[int, str], rows: dict[str, VarianceRow], limit: float, profile: Profile | None = None
) -> str:
    head = f"### Slot {r.slot} (iteration {r.iteration}) "
    head += "[COMPLETED]" if r.status == "completed" else f"[FAILED] {r.failure_reason or 'no reason recorded'}"
    minutes = r.metrics.training_time_min if r.metrics else 0.0
    time_flag = (
        [f"Training time: {minutes:.1f} min — OVER TIME LIMIT ({limit:g} min)"] if protocol.over_time(r, limit) else []
    )
    cid = ids[r.iteration]
    lines = [
        head,
        f"Entry status: {protocol.entry_status(r, profile)}",
        f"Node: id={r.iteration}, parent={r.parent}",
        f"Mode/Strategy: {r.strategy}",
        f"Config id: {cid}" + (f" (replicate of node {r.replicate_of})" if r.replicate_of is not None else ""),
        config_line(r.trainable, profile),
        f"Seeds: simulation.seed={r.seeds.simulation}, training.seed={r.seeds.training}",
        metrics_line(r),
        *rollout_lines(r),
        *time_flag,
        *trajectory_lines(r),
        *(["Failed slot: the variance table counts it as 0 for every metric."] if r.status == "failed" else []),
        f"Mutation: {r.mutation}",
        variance_update_line(cid, rows[cid]),
    ]
    return "\n".join(lines) + "\n"


def _images_text(ctx: BatchPromptInput, batch: list[SlotResult]) -> str:
    by_slot = {r.slot: r for r in batch}
    if ctx.attached is not None:
        attached = ctx.attached
    else:
        slots = ctx.image_slots if ctx.image_slots is not None else [r.slot for r in batch if r.status == "completed"]
        attached = [(s, "panel") for s in slots]
    if not attached:
        return "No images attached."
    lines = ["Attached images, in order:"]
    for k, (s, kind) in enumerate(attached, start=1):
        it = by_slot[s].iteration if s in by_slot else "?"
        lines.append(f"{k}. slot {s} (iteration {it}): {SLOT_IMAGES[kind]}")
    kinds = [kind for kind in SLOT_IMAGES if any(kind == a for _, a in attached)]
    lines += ["", "What they show:"] + [f"- {SLOT_IMAGES[kind]}: {IMAGE_DESCRIPTIONS[kind]}" for kind in kinds]
    return "\n".join(lines)


def _best_text(
    results: list[SlotResult], ids: dict[int, str], rows: dict[str, VarianceRow], profile: Profile | None = None
) -> str:
    best = best_node(results, profile)
    if best is None:
        return "No completed node yet."
    m = best.metrics
    assert m is not None
    row = rows[ids[best.iteration]]
    return (
        f"Node {best.iteration} (block {best.block}, config {row.config_id}): connectivity_R2={m.connectivity_R2:.4f}, "
        f"tau_R2={m.tau_R2:.4f}, V_rest_R2={m.V_rest_R2:.4f}, cluster_accuracy={m.cluster_accuracy:.4f}, "
        f"test_pearson={m.test_pearson:.4f}. Its config {row.config_id}: {row.runs} runs, "
        f"conn_R2 {row.conn_mean:.3f} +/- {row.conn_std:.3f}, verdict {row.verdict}."
    )


ELIDED = ("Variance Estimates", "UCB Ranking")


def memory_for_prompt(memory_text: str) -> str:
    """memory.md as the batch prompt shows it: the tables printed above are not repeated."""
    doc = MemoryDocument.parse(memory_text)
    for section in doc.sections:
        if section.level == 3 and section.title in ELIDED:
            section.body = "\n(the same table as above in this prompt)\n\n"
    return doc.render()


def _rules_text(ctx: BatchPromptInput, batch: list[SlotResult], rows: list[VarianceRow]) -> str:
    first, last = batch[0].iteration, batch[-1].iteration
    block = block_of(first, ctx.n_iter_block)
    _, block_last = block_range(block, ctx.n_iter_block)
    nxt_first = last + 1
    nxt_last = nxt_first + ctx.n_slots - 1
    ids = ", ".join(str(r.iteration) for r in batch)
    lines = [
        f"- Entries: one `## Iter N:` entry for each of iterations {ids}, in this order. Copy `Node:`, `Metrics:`, "
        "`R2 trajectory:`, `Mutation:` and `Variance update:` from the slot results above; the status word is "
        "the `Entry status` shown.",
        "- `Next: parent=P`: P is `root` or a node of this or an earlier batch, never the entry's id+1.",
    ]
    if nxt_first > ctx.n_iterations:
        lines.append(
            f"- This was the last batch of the run ({ctx.n_iterations} iterations): write the entries and the "
            "memory; still send the config blocks (they are recorded, not run)."
        )
    slot_map = ", ".join(f"slot {s} -> iteration {nxt_first + s}" for s in range(ctx.n_slots))
    lines.append(f"- Next batch: iterations {nxt_first}-{nxt_last} ({slot_map}).")
    batch_no = block_of(nxt_first, ctx.n_slots)  # a batch is a block of n_slots iterations
    if last >= block_last:
        lines.append(
            f'- The next batch starts block {block + 1}: a fresh tree. Every config must have `parent="root"`; '
            'write changes relative to the base config, or `replicate="X"` (empty body) to re-run node X\'s config.'
        )
        parents = "root"
    else:
        members = sorted(r.iteration for r in ctx.results if r.block == block)
        parents = "root or one of nodes " + ", ".join(str(i) for i in members)
        lines.append(f"- Next batch stays in block {block}: each config's parent is {parents}.")
    if protocol.is_baseline_batch(block_of(nxt_first, ctx.n_iter_block), batch_no, ctx.baseline_batches):
        lines.append(
            f"- Baseline: the next batch is batch {batch_no} of {ctx.baseline_batches} baseline batches: all "
            f'{ctx.n_slots} configs `parent="root"`, `strategy="baseline"`, empty body (defaults unchanged).'
        )
    else:
        need = protocol.replicates_required(rows, ctx.profile)
        lines.append(
            f"- Replicates: at least {need} of the {ctx.n_slots} configs are replicates "
            '(`replicate="X"`, `strategy="robustness-check"`, empty body) — '
            + protocol.replicate_rule_text(ctx.profile, rows)
        )
    slow = [r for r in batch if protocol.over_time(r, ctx.time_limit_min)]
    if slow:
        nodes = ", ".join(str(r.iteration) for r in slow)
        lines.append(f"- Over the time limit: node(s) {nodes}. " + protocol.growth_rule_text())
    return "\n".join(lines)


def render_batch_prompt(ctx: BatchPromptInput) -> str:
    """The per-batch prompt (PROTOCOL.md section 5): results, tree, variance, rules, memory."""
    batch = ctx.batch()
    first, last = batch[0].iteration, batch[-1].iteration
    block = block_of(first, ctx.n_iter_block)
    b_first, b_last = block_range(block, ctx.n_iter_block)
    ids = config_ids(ctx.results)
    table = variance_table(ctx.results)
    rows = {row.config_id: row for row in table}
    entries = ucb_ranking(ctx.results, block, ctx.ucb_c, ctx.ucb_reward, ctx.profile)
    block_its = [r.iteration for r in ctx.results if r.block == block]
    ucb = render_ucb_scores(entries, block, min(block_its), max(block_its), ctx.ucb_c).rstrip("\n")
    return _fill(
        "batch.md",
        {
            "run_name": ctx.run_name,
            "first": first,
            "last": last,
            "n_iterations": ctx.n_iterations,
            "block": block,
            "block_first": first - b_first + 1,
            "block_last": last - b_first + 1,
            "n_iter_block": ctx.n_iter_block,
            "block_end": ">>> BLOCK END <<<\n" if last >= b_last else "",
            "slots": "\n".join(_slot_text(r, ids, rows, ctx.time_limit_min, ctx.profile) for r in batch),
            "images": _images_text(ctx, batch),
            "ucb": ucb,
            "variance": render_variance_table(table) + "\n" + protocol.cv_estimates_text(table, ctx.profile),
            "best": _best_text(ctx.results, ids, rows, ctx.profile),
            "rules": _rules_text(ctx, batch, table),
            "memory": memory_for_prompt(ctx.memory_text).strip("\n"),
            "user_input": _user_input_block(ctx.user_input),
        },
    )


# ----- re-ask -------------------------------------------------------------------------------------
def render_reask_prompt(errors: list[str], previous_reply: str, answered_prompt: str) -> str:
    """A re-ask: the prompt the rejected reply answered (the request carries its images again), then the
    validator's exact errors and the rejected reply. Each API call is stateless, so the re-ask must hold the
    batch results the corrected reply has to restate."""
    if not errors:
        raise PromptError("render_reask_prompt: errors: at least one error is required")
    notice = _fill(
        "reask.md",
        {
            "errors": "\n".join(f"- {e}" for e in errors),
            "previous_reply": previous_reply.strip("\n"),
        },
    )
    return answered_prompt.rstrip("\n") + "\n\n---\n\n" + notice
