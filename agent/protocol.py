"""The rules of the parallel protocol and the base instructions, each stated once, as data and pure functions.

The prompt's rule text (agent.prompts), the reply check (agent.reply_check), the config policy
(agent.config_policy), the offline policy (agent.llm.offline_policy) and the UCB tree (agent.tree) all read
from here, so a rule changed here changes what the LLM is told, what its reply is checked against and
what the deterministic policy does, together. Functions read the module's constants when called (a
patched constant takes effect everywhere). Defaults shared with the run config (block size, UCB c, time
limit, baseline batches) are those of ``experiment.config.ClaudeConfig``: the schema stays their one source.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any, Literal

from experiment.config import ClaudeConfig, TrainingConfig
from experiment.exploration import SlotResult
from memory.variance import VarianceRow, render_cv_estimates

Status = Literal["converged", "partial", "failed"]

# ----- defaults of the run config (one source: the schema) ----------------------------------------------------
_CLAUDE = ClaudeConfig.model_fields
N_ITER_BLOCK: int = _CLAUDE["n_iter_block"].default
UCB_C: float = _CLAUDE["ucb_c"].default
TIME_LIMIT_MIN: float = _CLAUDE["time_limit_min"].default
BASELINE_BATCHES: int = _CLAUDE["baseline_batches"].default

# ----- entry status (base instructions: converged > 0.8, partial 0.3 to 0.8, failed < 0.3) ---------------------
CONVERGED, PARTIAL = 0.8, 0.3


def classify_r2(r2: float, failed: bool = False) -> Status:
    """converged above CONVERGED, partial from PARTIAL to CONVERGED, failed below PARTIAL or when the slot failed."""
    if failed or r2 < PARTIAL:
        return "failed"
    return "converged" if r2 > CONVERGED else "partial"


def entry_status(result: SlotResult) -> Status:
    """A slot's entry status from its measured connectivity_R2 (a failed slot is ``failed``)."""
    return classify_r2(result.conn_r2, failed=result.status == "failed" or result.metrics is None)


def status_rule_text() -> str:
    """The status thresholds as the reply check states them."""
    return f"converged > {CONVERGED:g}, partial {PARTIAL:g}-{CONVERGED:g}, failed < {PARTIAL:g}"


# ----- replicate quota (parallel addendum) -----------------------------------------------------------------------
TOP_CONFIGS, TOP_MIN_RUNS = 3, 3
GROWTH_REPLICATES, STEADY_REPLICATES = 2, 1


def rank_configs(rows: Sequence[VarianceRow]) -> list[VarianceRow]:
    """Variance rows best first: by mean conn_R2, ties by first iteration."""
    return sorted(rows, key=lambda row: (-row.conn_mean, min(row.iterations, default=0)))


def short_top_configs(rows: Sequence[VarianceRow]) -> list[VarianceRow]:
    """Those of the top TOP_CONFIGS configs that have fewer than TOP_MIN_RUNS runs."""
    return [row for row in rank_configs(rows)[:TOP_CONFIGS] if row.runs < TOP_MIN_RUNS]


def replicates_required(rows: Sequence[VarianceRow]) -> int:
    """GROWTH_REPLICATES while a top config is short of runs, then STEADY_REPLICATES."""
    return GROWTH_REPLICATES if short_top_configs(rows) else STEADY_REPLICATES


# Stopping rule (parallel addendum): a config has enough replicates with >= ENOUGH_RUNS runs, the std of its
# CV(conn_R2) estimate (memory.variance's bootstrap) below CV_STD_MAX percentage points and a clear verdict.
ENOUGH_RUNS, CV_STD_MAX = 4, 2.0
CLEAR_VERDICTS = ("robust", "fragile")


# Evidence rules of free text (agent.data_claims): an Established Principle rests on configs with >= this many
# runs; an R2 phase-segment change within DROP_TOL of 0 counts as a drop or as none.
PRINCIPLE_MIN_RUNS = 3
DROP_TOL = 0.005


def enough_runs_mark(row: VarianceRow) -> str:
    """``yes`` when a config meets the stopping rule, else ``no: <what is missing>``."""
    missing = []
    if row.runs < ENOUGH_RUNS:
        missing.append(f"runs {row.runs} < {ENOUGH_RUNS}")
    if not math.isfinite(row.conn_cv_std):
        missing.append("CV std n/a")
    elif row.conn_cv_std >= CV_STD_MAX:
        missing.append(f"CV std {row.conn_cv_std:.1f} >= {CV_STD_MAX:g} pp")
    if row.verdict not in CLEAR_VERDICTS:
        missing.append(f"verdict {row.verdict}")
    return "yes" if not missing else "no: " + ", ".join(missing)


def has_enough_runs(row: VarianceRow) -> bool:
    """The config meets the stopping rule: stop replicating it."""
    return enough_runs_mark(row) == "yes"


def stopping_rule_text() -> str:
    """The stopping rule as the batch prompt states it under the CV estimates."""
    return (
        f"Enough runs (stop replicating): >= {ENOUGH_RUNS} runs, std of the CV(conn_R2) estimate < {CV_STD_MAX:g} "
        f"percentage points, and verdict {' or '.join(CLEAR_VERDICTS)}. The std and the 95% interval come from a "
        "seeded bootstrap over the config's runs."
    )


def cv_estimates_text(rows: Sequence[VarianceRow]) -> str:
    """The CV estimate table with the stopping rule's mark per config, and the rule, for the batch prompt."""
    marks = {row.config_id: enough_runs_mark(row) for row in rows}
    return render_cv_estimates(list(rows), marks) + "\n" + stopping_rule_text() + "\n"


def replicate_rule_text() -> str:
    """The replicate quota as the batch prompt states it."""
    return (
        f"{GROWTH_REPLICATES} until each of the top {TOP_CONFIGS} configs by mean conn_R2 has >= {TOP_MIN_RUNS} runs, "
        f"then {STEADY_REPLICATES}."
    )


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


# Config line of a log entry: label -> training key.
CONFIG_LINE_KEYS: tuple[tuple[str, str], ...] = (
    ("lr_W", "learning_rate_W_start"),
    ("lr", "learning_rate_start"),
    ("lr_emb", "learning_rate_embedding_start"),
    ("n_alt", "n_alternations"),
    ("vrest_ratio", "alternate_vrest_ratio"),
    ("alt_lr_W", "alternate_lr_W"),
    ("alt_lr_edge", "alternate_lr_edge"),
    ("alt_lr_update", "alternate_lr_update"),
    ("alt_lr_emb", "alternate_lr_embedding"),
)
# The same labels -> dotted config keys (what the reply check resolves a Config-line name to).
CONFIG_ALIASES: dict[str, str] = {label: f"training.{key}" for label, key in CONFIG_LINE_KEYS}

# ----- edit policy: what the LLM may change -------------------------------------------------------------------------
# Top-level keys owned by the controller, with the reason given to the LLM.
BLOCKED_TOP: dict[str, str] = {
    "dataset": "the dataset field routes the slot's data and is fixed per slot",
    "simulation": "simulation parameters are fixed",
    "claude": "exploration settings are controller-owned",
    "dispatch": "dispatch settings are controller-owned",
    "description": "the description is controller-owned",
}
# Keys inside the trainable sections that the LLM may not change.
BLOCKED_KEYS: dict[str, str] = {
    "training.alternate_training": "alternate_training must stay true: it selects the alternating trainer",
    "training.learning_rate_start": "active-phase learning rates are fixed",
    "training.learning_rate_W_start": "active-phase learning rates are fixed",
    "training.learning_rate_embedding_start": "active-phase learning rates are fixed",
    "training.seed": "seeds are controller-owned",
    "training.device": "device placement is controller-owned",
    "training.compile": "how the training step is compiled is controller-owned",
    "training.r2_async": "where the R2 checkpoints run is controller-owned",
}
# key -> (low, high): the protocol's sane ranges, on top of the schema's own bounds.
LR_KEYS = (
    "learning_rate_start",
    "learning_rate_W_start",
    "learning_rate_embedding_start",
    "alternate_lr_W",
    "alternate_lr_edge",
    "alternate_lr_update",
    "alternate_lr_embedding",
)
EXTRA_RANGES: dict[str, tuple[float, float]] = {
    **{f"training.{k}": (0.0, 1e-1) for k in LR_KEYS},
    **{f"training.{k}": (0.0, 1e5) for k in TrainingConfig.model_fields if k.startswith("coeff_")},
    "graph_model.hidden_dim": (1, 1024),
    "graph_model.hidden_dim_update": (1, 1024),
    "graph_model.n_layers": (1, 10),
    "graph_model.n_layers_update": (1, 10),
    "training.n_alternations": (1, 64),
    "training.alternate_vrest_ratio": (0.0, 1.0),
}
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
    shown = [f"`{n}`" for n in names if n not in coeffs] + (["`coeff_*`"] if coeffs else [])
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} {conjunction} {shown[-1]}"


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=120, initial_indent="   - ", subsequent_indent="     ", break_long_words=False)


def edit_policy_text() -> str:
    """The edit policy (blocked keys, ranges, coupled sizes, growth rule) as the reply format states it."""
    top = [f"`{k}:`" if k in ("simulation", "claude", "dispatch") else f"`{k}`" for k in BLOCKED_TOP]
    keys = [f"`{k.split('.', 1)[1]}`" for k in BLOCKED_KEYS]
    owned = [*top, *keys]
    groups: dict[tuple[float, float], list[str]] = {}
    for key, bounds in EXTRA_RANGES.items():
        groups.setdefault(bounds, []).append(key)
    ranges = "; ".join(f"{_names(keys, 'and')} from {low:g} to {high:g}" for (low, high), keys in groups.items())
    coupled = " and ".join(f"`{k}` = {offset} + embedding_dim" for k, offset in COUPLED.items())
    bullets = (
        f"Never touch {', '.join(owned[:-1])} or {owned[-1]}: the controller owns them.",
        f"Allowed ranges, on top of the schema's own bounds: {ranges}.",
        f"Coupled sizes: when `embedding_dim` changes, {coupled}.",
        f"A child of a node flagged OVER TIME LIMIT must not grow {_names(GROWTH_KEYS)}.",
    )
    return "\n".join(_bullet(b) for b in bullets)


def reply_format_values() -> dict[str, str]:
    """The rule text the reply format template (prompts/templates/reply_format.md) is filled with."""
    letters = "XYZABCDEFGHIJ"
    return {
        "status_rule": (
            f"`converged` when connectivity_R2 > {CONVERGED:g}, `partial` for {PARTIAL:g}-{CONVERGED:g}, "
            f"`failed` below {PARTIAL:g} or when the slot failed."
        ),
        "config_line": "Config: " + ", ".join(f"{label}={letters[k]}" for k, (label, _) in enumerate(CONFIG_LINE_KEYS)),
        "edit_policy": edit_policy_text(),
        "drop_tol": f"{DROP_TOL:g}",
        "principle_runs": str(PRINCIPLE_MIN_RUNS),
    }
