"""The rules of the parallel protocol and of an exploration's profile, each stated once, as data and pure functions.

The prompt's rule text (agent.prompts), the reply check (agent.reply_check), the config policy
(agent.config_policy), the offline policy (agent.llm.offline_policy) and the UCB tree (agent.tree) all read
from here, so a rule changed here changes what the LLM is told, what its reply is checked against and
what the deterministic policy does, together. Functions read the module's constants when called (a
patched constant takes effect everywhere). Defaults shared with the run config (block size, UCB c, time
limit, baseline batches) are those of ``experiment.config.ClaudeConfig``: the schema stays their one source.

An exploration's own rules (status words, thresholds and hard constraints, locked and explorable keys, replicate
quota, Config-line labels) come from its profile (``agent.profile``, ``prompts/instruction_X.profile.yaml``).
Every function takes ``profile``; None means the alternating profile, whose values are also this module's
constants (CONVERGED, PARTIAL, BLOCKED_KEYS, ...) read from its profile file at import.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.profile import PROFILE_SUFFIX, VARIANCE_COLUMN, Profile
from agent.profile import load_profile_file as _load_profile_file
from experiment.config import ClaudeConfig, TrainingConfig
from experiment.exploration import SlotResult
from memory.variance import VarianceRow, render_cv_estimates

Status = str  # a profile's status word; the alternating profile's are converged / partial / failed
PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
ALTERNATE_PROFILE = PROMPTS_DIR / f"instruction_flyvis_62_1_gs_alternate{PROFILE_SUFFIX}"
ALTERNATE: Profile = _load_profile_file(ALTERNATE_PROFILE)

# ----- defaults of the run config (one source: the schema) ----------------------------------------------------
_CLAUDE = ClaudeConfig.model_fields
N_ITER_BLOCK: int = _CLAUDE["n_iter_block"].default
UCB_C: float = _CLAUDE["ucb_c"].default
TIME_LIMIT_MIN: float = _CLAUDE["time_limit_min"].default
BASELINE_BATCHES: int = _CLAUDE["baseline_batches"].default

# ----- entry status (alternating profile: converged > 0.8, partial 0.3 to 0.8, failed < 0.3) -------------------
CONVERGED, PARTIAL = ALTERNATE.status.success_above, ALTERNATE.status.partial_from


def default_profile() -> Profile:
    """The alternating profile as this module's constants state it now (a patched constant takes effect)."""
    status = {"success_above": CONVERGED, "partial_from": PARTIAL}
    quota = {"top_configs": TOP_CONFIGS, "top_min_runs": TOP_MIN_RUNS, "growth": GROWTH_REPLICATES}
    quota["steady"] = STEADY_REPLICATES
    quota.update(stop_min_runs=ENOUGH_RUNS, stop_cv_std_max=CV_STD_MAX)
    profile = ALTERNATE.model_copy(
        update={
            "status": ALTERNATE.status.model_copy(update=status),
            "replicates": ALTERNATE.replicates.model_copy(update=quota),
        }
    )
    return ALTERNATE if profile == ALTERNATE else profile


def resolve(profile: Profile | None) -> Profile:
    """The given profile, or the alternating one; a profile read from the alternating file follows this
    module's constants too, so one patched threshold changes every reader."""
    if profile is None or profile.model_copy(update={"source": ALTERNATE.source}) == ALTERNATE:
        return default_profile()
    return profile


def load_profile(path: str | Path) -> Profile:
    """Read a profile file (agent.profile), the alternating one as this module's constants state it."""
    return resolve(_load_profile_file(path))


def metric_values(result: SlotResult) -> dict[str, float] | None:
    """A slot's measured metrics by name (None when the slot failed)."""
    if result.status == "failed" or result.metrics is None:
        return None
    return {k: float(v) for k, v in result.metrics.model_dump().items() if isinstance(v, int | float)}


def entry_status(result: SlotResult, profile: Profile | None = None) -> Status:
    """A slot's entry status under the profile's rule (a failed slot has the lowest word)."""
    return resolve(profile).classify(metric_values(result))


def reward(result: SlotResult, profile: Profile | None = None) -> float:
    """What the tree and the policies maximise: the primary metric, 0 when a hard constraint fails."""
    return resolve(profile).reward(metric_values(result))


def _constraint_text(profile: Profile) -> str:
    return "".join(f" and {m} > {b:g}" for m, b in profile.status.constraints.items())


def status_rule_text(profile: Profile | None = None) -> str:
    """The status thresholds as the reply check states them."""
    p = resolve(profile)
    s, w, c = p.status, p.status.words, _constraint_text(p)
    if not s.constraints:
        return (
            f"{w[0]} > {s.success_above:g}, {w[1]} {s.partial_from:g}-{s.success_above:g}, {w[2]} < {s.partial_from:g}"
        )
    return (
        f"{w[0]}: {s.metric} > {s.success_above:g}{c}; {w[1]}: {s.metric} {s.partial_from:g}-{s.success_above:g}{c}; "
        f"{w[2]}: {s.metric} < {s.partial_from:g} or a constraint broken (profile {p.name})"
    )


# ----- replicate quota (parallel addendum) -----------------------------------------------------------------------
TOP_CONFIGS, TOP_MIN_RUNS = ALTERNATE.replicates.top_configs, ALTERNATE.replicates.top_min_runs
GROWTH_REPLICATES, STEADY_REPLICATES = ALTERNATE.replicates.growth, ALTERNATE.replicates.steady


METRIC_LABEL = {"connectivity_R2": "conn_R2"}  # how prompts name a metric (others: their own name)


def metric_label(metric: str) -> str:
    return METRIC_LABEL.get(metric, metric)


def _row_mean(row: VarianceRow, metric: str) -> float:
    return row.mean(VARIANCE_COLUMN[metric])


# Stopping rule (parallel addendum): a config has enough replicates with >= ENOUGH_RUNS runs, the std of the
# CV estimate of the profile's primary metric (memory.variance's bootstrap) below CV_STD_MAX percentage points
# and a clear verdict. The constants are the alternating profile's (conn_R2); other profiles state their own.
ENOUGH_RUNS, CV_STD_MAX = ALTERNATE.replicates.stop_min_runs, ALTERNATE.replicates.stop_cv_std_max
CLEAR_VERDICTS = ("robust", "fragile")


# Evidence rules of free text (agent.data_claims): an Established Principle rests on configs with >= this many
# runs; an R2 phase-segment change within DROP_TOL of 0 counts as a drop or as none.
PRINCIPLE_MIN_RUNS = 3
DROP_TOL = 0.005


def enough_runs_mark(row: VarianceRow, profile: Profile | None = None) -> str:
    """``yes`` when a config meets the profile's stopping rule, else ``no: <what is missing>``."""
    p = resolve(profile)
    min_runs, cv_std_max = p.replicates.stop_min_runs, p.replicates.stop_cv_std_max
    est = row.cv_estimate(p.primary_column)
    missing = []
    if row.runs < min_runs:
        missing.append(f"runs {row.runs} < {min_runs}")
    if not math.isfinite(est.std):
        missing.append("CV std n/a")
    elif est.std >= cv_std_max:
        missing.append(f"CV std {est.std:.1f} >= {cv_std_max:g} pp")
    if row.verdict not in CLEAR_VERDICTS:
        missing.append(f"verdict {row.verdict}")
    return "yes" if not missing else "no: " + ", ".join(missing)


def has_enough_runs(row: VarianceRow, profile: Profile | None = None) -> bool:
    """The config meets the stopping rule: stop replicating it."""
    return enough_runs_mark(row, profile) == "yes"


def stopping_rule_text(profile: Profile | None = None) -> str:
    """The stopping rule as the batch prompt states it under the CV estimates."""
    p = resolve(profile)
    return (
        f"Enough runs (stop replicating): >= {p.replicates.stop_min_runs} runs, std of the "
        f"CV({metric_label(p.primary_metric)}) estimate < {p.replicates.stop_cv_std_max:g} percentage points, and "
        f"verdict {' or '.join(CLEAR_VERDICTS)}. The std and the 95% interval come from a seeded bootstrap over "
        "the config's runs."
    )


def cv_estimates_text(rows: Sequence[VarianceRow], profile: Profile | None = None) -> str:
    """The CV estimate table of the primary metric with the stopping rule's mark per config, and the rule, for
    the batch prompt."""
    p = resolve(profile)
    marks = {row.config_id: enough_runs_mark(row, p) for row in rows}
    table = render_cv_estimates(list(rows), marks, p.primary_column, metric_label(p.primary_metric))
    return table + "\n" + stopping_rule_text(p) + "\n"


def rank_configs(rows: Sequence[VarianceRow], profile: Profile | None = None) -> list[VarianceRow]:
    """Variance rows best first: configs whose means meet the hard constraints, then by mean of the primary
    metric, ties by first iteration."""
    p = resolve(profile)
    cons = p.status.constraints

    def key(row: VarianceRow) -> tuple[bool, float, int]:
        broken = any(not _row_mean(row, m) > b for m, b in cons.items())
        return broken, -_row_mean(row, p.primary_metric), min(row.iterations, default=0)

    return sorted(rows, key=key)


def short_top_configs(rows: Sequence[VarianceRow], profile: Profile | None = None) -> list[VarianceRow]:
    """Those of the top ``top_configs`` configs that have fewer than ``top_min_runs`` runs."""
    q = resolve(profile).replicates
    return [row for row in rank_configs(rows, profile)[: q.top_configs] if row.runs < q.top_min_runs]


def replicates_required(rows: Sequence[VarianceRow], profile: Profile | None = None) -> int:
    """``growth`` replicates while a top config is short of runs, then ``steady``."""
    q = resolve(profile).replicates
    return q.growth if short_top_configs(rows, profile) else q.steady


def replicate_rule_text(profile: Profile | None = None, rows: Sequence[VarianceRow] | None = None) -> str:
    """The replicate quota as the batch prompt states it; with the variance ``rows``, the top configs now."""
    p = resolve(profile)
    q, label = p.replicates, metric_label(p.primary_metric)
    text = (
        f"{q.growth} until each of the top {q.top_configs} configs by mean {label} has >= {q.top_min_runs} runs, "
        f"then {q.steady}."
    )
    if rows:
        top = ", ".join(
            f"{r.config_id} ({r.runs} run{'s' if r.runs != 1 else ''})" for r in rank_configs(rows, p)[: q.top_configs]
        )
        text += f" The top configs now: {top}."
    return text


# ----- blocks and baseline -------------------------------------------------------------------------------------------
def is_baseline_batch(block: int, batch: int, baseline_batches: int) -> bool:
    """Block 1's first ``baseline_batches`` batches run the base config unchanged in every slot."""
    return block == 1 and batch <= baseline_batches


# ----- time limit ----------------------------------------------------------------------------------------------------
def over_time(result: SlotResult, limit: float) -> bool:
    """The slot was stopped at, or trained longer than, the time limit (minutes)."""
    minutes = result.metrics.training_time_min if result.metrics is not None else 0.0
    return result.over_time_limit or minutes > limit


# ----- values and the Config line of a log entry ---------------------------------------------------------------------
def format_value(value: Any) -> str:
    """Shortest exact text of a config value: ``repr`` for floats, ``str`` otherwise."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ----- edit policy: what the LLM may change -------------------------------------------------------------------------
# Top-level keys owned by the controller, with the reason given to the LLM.
BLOCKED_TOP: dict[str, str] = {
    "dataset": "the dataset field routes the slot's data and is fixed per slot",
    "simulation": "simulation parameters are fixed",
    "claude": "exploration settings are controller-owned",
    "dispatch": "dispatch settings are controller-owned",
    "description": "the description is controller-owned",
}
# Keys inside the trainable sections that the controller owns in every exploration.
CONTROLLER_KEYS: dict[str, str] = {
    "training.seed": "seeds are controller-owned",
    "training.device": "device placement is controller-owned",
    "training.compile": "how the training step is compiled is controller-owned",
    "training.r2_async": "where the R2 checkpoints run is controller-owned",
}
# key -> (low, high): sane ranges of every exploration, on top of the schema's own bounds (a profile adds its own).
LR_KEYS = (
    "learning_rate_start",
    "learning_rate_W_start",
    "learning_rate_embedding_start",
    "alternate_lr_W",
    "alternate_lr_edge",
    "alternate_lr_update",
    "alternate_lr_embedding",
)
COMMON_RANGES: dict[str, tuple[float, float]] = {
    **{f"training.{k}": (0.0, 1e-1) for k in LR_KEYS},
    **{f"training.{k}": (0.0, 1e5) for k in TrainingConfig.model_fields if k.startswith("coeff_")},
    "graph_model.hidden_dim": (1, 1024),
    "graph_model.hidden_dim_update": (1, 1024),
    "graph_model.n_layers": (1, 10),
    "graph_model.n_layers_update": (1, 10),
}


def blocked_keys(profile: Profile | None = None) -> dict[str, str]:
    """Trainable keys the LLM may not change: the profile's locked keys, then the controller's."""
    return {**resolve(profile).locked, **CONTROLLER_KEYS}


def extra_ranges(profile: Profile | None = None) -> dict[str, tuple[float, float]]:
    """The ranges every exploration keeps, then the profile's (its explorable keys' ranges included)."""
    own = resolve(profile).all_ranges()
    return {**{k: v for k, v in COMMON_RANGES.items() if k not in own}, **own}


# The alternating profile's tables, as constants (what the tests and older callers read).
BLOCKED_KEYS: dict[str, str] = blocked_keys(ALTERNATE)
EXTRA_RANGES: dict[str, tuple[float, float]] = extra_ranges(ALTERNATE)
# Coupled sizes: key -> offset added to embedding_dim.
COUPLED: dict[str, int] = {"input_size": 1, "input_size_update": 3}
# Keys a child of an over-time slot may not increase (they grow training time).
GROWTH_KEYS = (
    "graph_model.hidden_dim",
    "graph_model.hidden_dim_update",
    "graph_model.n_layers",
    "graph_model.n_layers_update",
    "graph_model.embedding_dim",
    "training.data_augmentation_loop",
)


def growth_rule_text() -> str:
    """The over-time growth rule as the batch prompt states it (every GROWTH_KEYS name)."""
    names = [key.split(".", 1)[1] for key in GROWTH_KEYS]
    return f"A child of them must not grow {', '.join(names[:-1])} or {names[-1]}; reduce complexity instead."


def _names(keys: Sequence[str], conjunction: str = "or") -> str:
    """```a`, `b` or `c``` from dotted keys (sections dropped; every ``coeff_`` key as ``coeff_*``)."""
    names = [key.split(".", 1)[1] for key in keys]
    coeffs = [n for n in names if n.startswith("coeff_")]
    coeffs = coeffs if len(coeffs) > 1 else []
    shown = [f"`{n}`" for n in names if n not in coeffs] + (["`coeff_*`"] if coeffs else [])
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} {conjunction} {shown[-1]}"


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=120, initial_indent="   - ", subsequent_indent="     ", break_long_words=False)


def edit_policy_text(profile: Profile | None = None) -> str:
    """The edit policy (blocked keys, ranges, coupled sizes, growth rule) as the reply format states it."""
    p = resolve(profile)
    alternating = p.name == ALTERNATE.name
    top = [f"`{k}:`" if k in ("simulation", "claude", "dispatch") else f"`{k}`" for k in BLOCKED_TOP]
    keys = [f"`{k.split('.', 1)[1]}`" for k in (blocked_keys(p) if alternating else CONTROLLER_KEYS)]
    owned = [*top, *keys]
    groups: dict[tuple[float, float], list[str]] = {}
    for key, bounds in extra_ranges(p).items():
        groups.setdefault(bounds, []).append(key)
    ranges = "; ".join(f"{_names(keys, 'and')} from {low:g} to {high:g}" for (low, high), keys in groups.items())
    coupled = " and ".join(f"`{k}` = {offset} + embedding_dim" for k, offset in COUPLED.items())
    bullets = [
        f"Never touch {', '.join(owned[:-1])} or {owned[-1]}: the controller owns them.",
        f"Allowed ranges, on top of the schema's own bounds: {ranges}.",
        f"Coupled sizes: when `embedding_dim` changes, {coupled}.",
        f"A child of a node flagged OVER TIME LIMIT must not grow {_names(GROWTH_KEYS)}.",
    ]
    if not alternating and p.locked:
        reasons: dict[str, list[str]] = {}
        for key, why in p.locked.items():
            reasons.setdefault(why, []).append(f"`{key.split('.', 1)[1]}`")
        bullets.append(
            f"Locked by the {p.name} profile (a change is rejected): "
            + "; ".join(f"{', '.join(ks)}: {why}" for why, ks in reasons.items())
            + "."
        )
    explorable = [f"`{k.split('.', 1)[1]}`" for k in p.explore]
    if not alternating and explorable:
        bullets.append(f"Explorable in the {p.name} profile: {', '.join(explorable)}.")
    return "\n".join(_bullet(b) for b in bullets)


def config_line_keys(profile: Profile | None = None) -> tuple[tuple[str, str], ...]:
    """(label, bare training key) of the Config line of a log entry (keys the schema knows)."""
    return tuple((label, key.split(".", 1)[1]) for label, key in resolve(profile).config_line)


def config_aliases(profile: Profile | None = None) -> dict[str, str]:
    """Config-line label -> dotted config key (what the reply check resolves a Config-line name to)."""
    return {label: key for label, key in resolve(profile).config_line}


# Config line of the alternating profile: label -> training key, and label -> dotted key.
CONFIG_LINE_KEYS: tuple[tuple[str, str], ...] = config_line_keys(ALTERNATE)
CONFIG_ALIASES: dict[str, str] = config_aliases(ALTERNATE)


def status_words_text(profile: Profile | None = None) -> str:
    return "/".join(resolve(profile).status.words)


def reply_format_values(profile: Profile | None = None) -> dict[str, str]:
    """The rule text the reply format template (prompts/templates/reply_format.md) is filled with."""
    p = resolve(profile)
    letters = "XYZABCDEFGHIJ"
    s, w = p.status, p.status.words
    cons = "".join(f" and {m} > {b:g}" for m, b in s.constraints.items())
    broken = " or a hard constraint is broken" if s.constraints else ""
    status_rule = (
        f"`{w[0]}` when {s.metric} > {s.success_above:g}{cons}, `{w[1]}` for {s.partial_from:g}-{s.success_above:g}"
        f"{cons}, `{w[2]}` below {s.partial_from:g}{broken} or when the slot failed."
    )
    explorable = list(p.explore.items())
    if p.name == ALTERNATE.name or not explorable:
        example = "training:\n  n_alternations: 6"
    else:
        key, spec = explorable[0]
        section, _, name = key.partition(".")
        value = spec.values[0]
        example = f"{section}:\n  {name}: {str(value).lower() if isinstance(value, bool) else format_value(value)}"
    return {
        "config_example": example,
        "status_words": status_words_text(p),
        "status_rule": status_rule,
        "config_line": "Config: "
        + ", ".join(f"{label}={letters[k % len(letters)]}" for k, (label, _) in enumerate(config_line_keys(p))),
        "edit_policy": edit_policy_text(p),
        "drop_tol": f"{DROP_TOL:g}",
        "principle_runs": str(PRINCIPLE_MIN_RUNS),
    }
