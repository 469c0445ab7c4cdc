"""An exploration's protocol profile: the machine-readable rules beside its instruction pair.

Each exploration is ``prompts/instruction_X.md`` + ``prompts/instruction_X_parallel.md`` (the prose the LLM
reads) and ``prompts/instruction_X.profile.yaml`` (what the controller enforces): the status rule with its
metric, thresholds and hard constraints, the locked keys, the explorable keys with their values and ranges, the
replicate quota and the Config-line labels. ``agent.protocol`` turns a profile into prompt text, checks and
policy choices; this module only reads and validates the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiment.config import GraphModelConfig, TrainingConfig
from experiment.yaml_io import YamlError, load_yaml_text
from memory.variance import METRIC_COLUMNS

PROFILE_SUFFIX = ".profile.yaml"
Metric = Literal["connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson"]
SECTIONS: dict[str, type[BaseModel]] = {"training": TrainingConfig, "graph_model": GraphModelConfig}
# Metric -> short name of its variance-table columns (memory.variance.VarianceRow: <short>_mean).
VARIANCE_COLUMN: dict[str, str] = {metric: short for short, metric in METRIC_COLUMNS.items()}


class ProfileError(ValueError):
    """A profile file is missing a field or breaks a rule (one line naming the file and the field)."""


def schema_has(key: str) -> bool:
    """``section.name`` is a field of today's trainable schema."""
    section, _, name = key.partition(".")
    return section in SECTIONS and name in SECTIONS[section].model_fields


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusRule(_Model):
    """Entry status from measured metrics: ``words[0]`` above ``success_above``, ``words[1]`` from
    ``partial_from``, ``words[2]`` below it; any failed hard constraint (metric <= bound) gives ``words[2]``."""

    metric: Metric
    words: tuple[str, str, str]
    success_above: float = Field(ge=0, le=1)
    partial_from: float = Field(ge=0, le=1)
    constraints: dict[Metric, float] = Field(default_factory=dict, description="metric -> it must be above")

    @model_validator(mode="after")
    def _ordered(self) -> StatusRule:
        if self.partial_from > self.success_above:
            raise ValueError("partial_from must be <= success_above")
        if len({w.lower() for w in self.words}) != 3:
            raise ValueError("words must be three different status words")
        return self


class Replicates(_Model):
    """Replicate quota: ``growth`` replicate slots per batch while one of the ``top_configs`` best configs
    has fewer than ``top_min_runs`` runs, then ``steady``. Stopping rule: a config has enough runs with
    ``stop_min_runs`` runs or more and a CV estimate of the primary metric whose bootstrap std is below
    ``stop_cv_std_max`` percentage points (plus a clear verdict, agent.protocol)."""

    top_configs: int = Field(3, ge=1)
    top_min_runs: int = Field(3, ge=1)
    growth: int = Field(2, ge=0)
    steady: int = Field(1, ge=0)
    stop_min_runs: int = Field(4, ge=2)
    stop_cv_std_max: float = Field(2.0, gt=0)


class Explorable(_Model):
    """A key the LLM may change: the values the offline and Optuna policies try, and its allowed range."""

    values: tuple[float | int | bool, ...] = Field(min_length=1)
    range: tuple[int | float, int | float] | None = None

    @model_validator(mode="after")
    def _in_range(self) -> Explorable:
        if self.range is not None:
            low, high = self.range
            bad = [v for v in self.values if not isinstance(v, bool) and not low <= v <= high]
            if low > high or bad:
                raise ValueError(f"values {bad} lie outside range [{low:g}, {high:g}]")
        return self


class Profile(_Model):
    """The rules of one exploration (see the module docstring)."""

    name: str = Field(min_length=1)
    title: str = Field(description="what the exploration is after, one line")
    defaults_label: str = Field(description="how prompts name the base config, e.g. 'alternate defaults'")
    primary_metric: Metric
    status: StatusRule
    replicates: Replicates = Replicates()
    locked: dict[str, str] = Field(default_factory=dict, description="training/graph_model key -> reason")
    explore: dict[str, Explorable] = Field(default_factory=dict, description="key -> values tried, range")
    ranges: dict[str, tuple[int | float, int | float]] = Field(default_factory=dict, description="key -> (low, high)")
    config_line: tuple[tuple[str, str], ...] = Field(min_length=1, description="(label, training key)")
    open_questions: tuple[str, ...] = ()
    source: str = Field("", description="the file this profile was read from")

    @field_validator("locked", "explore", "ranges")
    @classmethod
    def _sections(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if k.partition(".")[0] not in SECTIONS or not k.partition(".")[2]]
        if bad:
            raise ValueError(f"keys must read training.<name> or graph_model.<name>, got {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        both = sorted(set(self.locked) & set(self.explore))
        if both:
            raise ValueError(f"locked and explorable at once: {', '.join(both)}")
        for what, keys in (("locked", self.locked), ("explore", self.explore), ("ranges", self.ranges)):
            unknown = [k for k in keys if not schema_has(k)]
            if unknown:
                raise ValueError(f"{what} keys unknown to the schema: {', '.join(unknown)}")
        for label, key in self.config_line:
            if not schema_has(key):
                raise ValueError(f"config_line {label}: {key} is not a training.<name> or graph_model.<name> key")
        if self.primary_metric not in VARIANCE_COLUMN:
            raise ValueError(f"primary_metric must be one of the variance table's: {', '.join(VARIANCE_COLUMN)}")
        if self.primary_metric != self.status.metric:
            raise ValueError("primary_metric must be the status rule's metric")
        return self

    # ------------------------------------------------------------------ status
    def classify(self, values: dict[str, float] | None) -> str:
        """The status word of measured metrics (None: the slot failed)."""
        rule = self.status
        if values is None or any(not values.get(m, 0.0) > bound for m, bound in rule.constraints.items()):
            return rule.words[2]
        v = values.get(rule.metric, 0.0)
        if not math.isfinite(v) or v < rule.partial_from:
            return rule.words[2]
        return rule.words[0] if v > rule.success_above else rule.words[1]

    def reward(self, values: dict[str, float] | None) -> float:
        """What the tree and the policies maximise: the primary metric, 0 when a hard constraint fails."""
        if values is None or any(not values.get(m, 0.0) > b for m, b in self.status.constraints.items()):
            return 0.0
        v = values.get(self.primary_metric, 0.0)
        return v if math.isfinite(v) else 0.0

    @property
    def primary_column(self) -> str:
        """The primary metric's short name in the variance table (conn, tau, vrest, cluster)."""
        return VARIANCE_COLUMN[self.primary_metric]

    # ------------------------------------------------------------------ keys
    def all_ranges(self) -> dict[str, tuple[int | float, int | float]]:
        """``ranges`` plus the range of every explorable key."""
        out = dict(self.ranges)
        for key, spec in self.explore.items():
            if spec.range is not None:
                out.setdefault(key, spec.range)
        return out


def profile_path(instruction_path: str | Path) -> Path:
    """``prompts/instruction_X.profile.yaml`` beside ``prompts/instruction_X.md``."""
    path = Path(instruction_path)
    return path.with_name(path.stem + PROFILE_SUFFIX)


def parse_profile(data: Any, source: str) -> Profile:
    """A validated profile from parsed YAML; ProfileError names the file and the first bad field."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: must be a mapping of profile fields")
    try:
        return Profile.model_validate({**data, "source": source})
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        raise ProfileError(f"{source}: {loc}: {e['msg'].removeprefix('Value error, ')}") from None


def load_profile_file(path: str | Path) -> Profile:
    """Read and validate one ``*.profile.yaml``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileError(f"{path}: cannot read profile: {err.strerror or err}") from None
    try:
        data = load_yaml_text(text, str(path))
    except YamlError as err:
        raise ProfileError(str(err)) from None
    return parse_profile(data, str(path))
